"""Alembic environment of the feed service (run through :mod:`kit.migrations`)."""

from kit.migrations import run_env
from services.feed.repository.dao import Base

run_env(Base.metadata)
