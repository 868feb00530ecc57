"""Alembic environment of the article service (run through :mod:`kit.migrations`)."""

from kit.migrations import run_env
from services.article.repository.dao import Base

run_env(Base.metadata)
