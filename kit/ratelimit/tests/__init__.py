"""Tests of kit.ratelimit."""
