"""Alembic migrations of the article service."""
