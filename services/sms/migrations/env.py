"""Alembic environment of the sms service (version table ``alembic_version_sms``)."""

from kit.migrations import run_env
from services.sms.repository.dao import Base

run_env(Base.metadata)
