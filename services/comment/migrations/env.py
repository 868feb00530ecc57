"""Alembic environment of the comment service (run through :mod:`kit.migrations`)."""

from kit.migrations import run_env
from services.comment.repository.dao import Base

run_env(Base.metadata)
