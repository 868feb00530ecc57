"""Request and response models of ``/articles`` (field names exactly as the original backend's)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from gateway.schemas import INT64_MAX, RequestModel

ArticleId = Annotated[int, Field(ge=1, le=INT64_MAX)]
# Limits of the edge; the article service enforces its own too.
MAX_TITLE_CHARS = 256
MAX_CONTENT_CHARS = 200_000


class EditArticleRequest(RequestModel):
    """Save a draft (``id`` 0 or absent creates one) or save-and-publish."""

    id: Annotated[int, Field(ge=0, le=INT64_MAX)] = 0
    title: Annotated[str, Field(min_length=1, max_length=MAX_TITLE_CHARS)]
    content: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]


class WithdrawRequest(RequestModel):
    """Withdraw one of the caller's published articles."""

    id: ArticleId


class ListRequest(RequestModel):
    """A page of the caller's own articles, newest first."""

    offset: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    limit: Annotated[int, Field(ge=1, le=100)] = 10


class LikeRequest(RequestModel):
    """Like (``like: true``) or cancel a like of a published article; idempotent."""

    id: ArticleId
    like: bool


class CollectRequest(RequestModel):
    """Collect a published article into collection ``cid`` (0 = the default collection)."""

    id: ArticleId
    cid: Annotated[int, Field(ge=0, le=INT64_MAX)] = 0


class ArticleListItem(BaseModel):
    """One of the author's articles in a list."""

    id: int
    title: str
    abstract: str
    status: int = Field(description="1 draft, 2 published, 3 private (withdrawn)")
    ctime: str
    utime: str


class ArticleDetail(BaseModel):
    """The author's view of their own article."""

    id: int
    title: str
    content: str
    status: int
    ctime: str
    utime: str


class PublishedArticle(BaseModel):
    """The reader's view of a published article, with its interaction counts."""

    model_config = ConfigDict(populate_by_name=True)

    id: int
    title: str
    content: str
    author: str
    ctime: str
    utime: str
    readCnt: int
    likeCnt: int
    collectCnt: int
    liked: bool
    collected: bool
