"""Alembic environment of the payment service (run through :mod:`kit.migrations`)."""

from kit.migrations import run_env
from services.payment.repository.dao import Base

run_env(Base.metadata)
