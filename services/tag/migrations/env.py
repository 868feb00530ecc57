"""Alembic environment of the tag service (run through :mod:`kit.migrations`)."""

from kit.migrations import run_env
from services.tag.repository.dao import Base

run_env(Base.metadata)
