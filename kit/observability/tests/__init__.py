"""Tests of the observability set-up."""
