"""Tests of kit/migrator: modes, double write, validator and fixer on real databases."""
