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

Live (also settable in etcd, ``webookctl config set comment <field> <json>``, applied within a
second, :mod:`kit.liveconfig`): ``first_page_cache_ttl_seconds`` (read at each cache write),
besides the common ``log_level`` and ``trace_sample_ratio``. Restart-only: the database URL,
ports and addresses (pools and listeners are opened at start), and the article settings of
:class:`clients.article.ArticleTargetsSettings` (the client and its in-process cache are
built at start).
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from clients.article import ArticleTargetsSettings
from kit.config import GrpcServiceSettings
from kit.liveconfig import live_field


class CommentSettings(GrpcServiceSettings, ArticleTargetsSettings):
    """Validated configuration of ``python -m services.comment``."""

    model_config = SettingsConfigDict(env_prefix="WEBOOK_COMMENT_", extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///.run/comment.db"
    first_page_cache_ttl_seconds: int = live_field(60, ge=1)
