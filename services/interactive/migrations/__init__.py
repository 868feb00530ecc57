"""Alembic migrations of the interactive service."""
