"""What the integration tests' ``article_stack`` fixture hands to a test."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.article.service import ArticleService
from services.article.tests.fakes import FakeAuthors, FakePopularity, RecordedEvents


@dataclass
class ArticleStack:
    """A service wired to real SQL and Redis, with handles for looking behind its back."""

    service: ArticleService
    engine: AsyncEngine
    redis: aioredis.Redis
    authors: FakeAuthors
    popularity: FakePopularity
    events: RecordedEvents
