"""Alembic environment of the account service (run through :mod:`kit.migrations`)."""

from kit.migrations import run_env
from services.account.repository.dao import Base

run_env(Base.metadata)
