"""Tests of the follow service."""
