"""Adapters of the sms service's ports: send records in SQL, codes and the daily budget in
Redis."""

from __future__ import annotations

from services.sms.repository.budget import RedisDailyBudget
from services.sms.repository.cache import RedisCodeStore
from services.sms.repository.dao import Base, SqlSendRecordRepository, SqlUnitOfWork

__all__ = [
    "Base",
    "RedisCodeStore",
    "RedisDailyBudget",
    "SqlSendRecordRepository",
    "SqlUnitOfWork",
]
