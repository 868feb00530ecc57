"""Reward service: readers reward articles' authors (``python -m services.reward``)."""
