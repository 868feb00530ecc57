"""Follow service: who follows whom, and counts (``python -m services.follow``)."""
