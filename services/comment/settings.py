"""Settings of the comment service process (environment prefix ``WEBOOK_COMMENT_``).

Besides the common gRPC service settings (:class:`kit.config.GrpcServiceSettings`) the
service reads:

- ``WEBOOK_COMMENT_DATABASE_URL``: SQLAlchemy async URL, SQLite file by default;
- ``WEBOOK_COMMENT_FIRST_PAGE_CACHE_TTL_SECONDS``: lifetime of a cached first page
  (default 60; writes invalidate it, the TTL bounds a stale re-fill);
- ``WEBOOK_COMMENT_ARTICLE_TIMEOUT_SECONDS``: deadline of the article service's answer to
  "is this article published?" before a new comment (default 0.5; failing, the comment
  fails closed with UNAVAILABLE);
- ``WEBOOK_COMMENT_PUBLISHED_CACHE_TTL_SECONDS``: how long a "published" answer is trusted
  in process (default 5: an article withdrawn that recently may still take a comment) and
  ``WEBOOK_COMMENT_PUBLISHED_CACHE_ENTRIES``, for how many articles at most (10 000).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from clients.article import ArticleTargetsSettings
from kit.config import GrpcServiceSettings


class CommentSettings(GrpcServiceSettings, ArticleTargetsSettings):
    """Validated configuration of ``python -m services.comment``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_COMMENT_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/comment.db"
    first_page_cache_ttl_seconds: int = Field(default=60, ge=1)
