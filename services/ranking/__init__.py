"""Ranking service: the hot articles of the last days (``python -m services.ranking``)."""
