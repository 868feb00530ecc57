"""Alembic environment of the interactive service (run through :mod:`kit.migrations`)."""

from kit.migrations import run_env
from services.interactive.repository.dao import Base

run_env(Base.metadata)
