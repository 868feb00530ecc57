"""Alembic migrations of the sms service."""
