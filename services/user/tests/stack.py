"""What the integration tests' ``user_stack`` fixture hands to a test."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.user.service import UserService


@dataclass
class UserStack:
    """A service wired to real SQL and Redis, with handles for looking behind its back."""

    service: UserService
    engine: AsyncEngine
    redis: aioredis.Redis
