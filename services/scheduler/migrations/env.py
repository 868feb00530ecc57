"""Alembic environment of the scheduler service (run through :mod:`kit.migrations`)."""

from kit.migrations import run_env
from services.scheduler.repository.dao import Base

run_env(Base.metadata)
