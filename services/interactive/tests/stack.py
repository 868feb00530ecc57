"""What the integration tests' ``interactive_stack`` fixture hands to a test."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.interactive.service import InteractiveService


@dataclass
class InteractiveStack:
    """A service wired to real SQL and Redis, with handles for looking behind its back."""

    service: InteractiveService
    engine: AsyncEngine
    redis: aioredis.Redis
