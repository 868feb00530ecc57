"""Adapters of the sms service's ports: send records in SQL, codes in Redis."""

from __future__ import annotations

from services.sms.repository.cache import RedisCodeStore
from services.sms.repository.dao import Base, SqlSendRecordRepository, SqlUnitOfWork

__all__ = ["Base", "RedisCodeStore", "SqlSendRecordRepository", "SqlUnitOfWork"]
