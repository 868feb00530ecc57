"""Alembic environment of the reward service (run through :mod:`kit.migrations`)."""

from kit.migrations import run_env
from services.reward.repository.dao import Base

run_env(Base.metadata)
