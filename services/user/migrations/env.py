"""Alembic environment of the user service (run through :mod:`kit.migrations`)."""

from kit.migrations import run_env
from services.user.repository.dao import Base

run_env(Base.metadata)
