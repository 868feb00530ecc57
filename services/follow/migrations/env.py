"""Alembic environment of the follow service (run through :mod:`kit.migrations`)."""

from kit.migrations import run_env
from services.follow.repository.dao import Base

run_env(Base.metadata)
