"""Tests of the reward service."""
