"""Tests of the tag service."""
