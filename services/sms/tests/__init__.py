"""Tests of the sms service."""
