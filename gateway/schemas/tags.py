"""Models of the ``/tags`` routes: the fields of ``webook.tag.v1`` in camelCase, as the rest
of the API (``bizId`` is ``biz_id``, ``ctimeMs`` is ``ctime_ms``).

The gateway checks shapes and bounds; the tag service owns the rules (a name is trimmed and
NFC-normalised, then 1..32 characters without control characters; only articles are tagged,
by their author; a resource carries at most 20 tags by default) and answers refusals the
gateway passes on as code 4. Times are Unix milliseconds, as the service gives them.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, Field

from gateway.schemas import INT64_MAX, RequestModel

NAME_MAX_CHARS: Final = 32
# Room for surrounding whitespace the service trims before it counts.
_MAX_RAW_NAME_CHARS: Final = NAME_MAX_CHARS * 4
MAX_TAG_IDS: Final = 100
"""The most tag ids one attach may name (the service's own limit, 20 by default, is lower)."""
MAX_CURSOR_CHARS: Final = 256
DEFAULT_BIZ: Final = "article"

TagId = Annotated[int, Field(gt=0, le=INT64_MAX)]


class CreateTagRequest(RequestModel):
    """A new tag of the caller (or the caller's tag of that name, if it exists)."""

    name: str = Field(
        min_length=1,
        max_length=_MAX_RAW_NAME_CHARS,
        description="1..32 characters after trimming; unique among the caller's tags.",
    )


class AttachTagsRequest(RequestModel):
    """The whole new tag set of one of the caller's resources."""

    biz: str = Field(default=DEFAULT_BIZ, min_length=1, max_length=32, examples=["article"])
    bizId: int = Field(gt=0, le=INT64_MAX, description="The resource, e.g. the article id.")
    tagIds: list[TagId] = Field(
        max_length=MAX_TAG_IDS,
        description="The caller's tags the resource carries from now on (duplicates ignored); "
        "[] removes every tag. Required, so that a forgotten field never clears the set.",
    )


class TagView(BaseModel):
    """One tag of a user."""

    id: int
    uid: int = Field(description="The owner.")
    name: str
    ctimeMs: int = Field(description="When it was created, Unix milliseconds.")


class CreatedTagView(BaseModel):
    """The tag of ``/tags/create``."""

    tag: TagView
    created: bool = Field(description="False when the caller had a tag of that name already.")


class ResourceTagsView(BaseModel):
    """The whole tag set of one resource."""

    biz: str
    bizId: int
    uid: int = Field(description="The owner, who tagged it; 0 if never tagged.")
    tags: list[TagView] = Field(description="Sorted by name.")
    version: int = Field(description="Grows by one with each change; 0: never tagged.")
    utimeMs: int = Field(description="When the set last changed, Unix milliseconds.")


class TaggedResourceView(BaseModel):
    """A resource under a tag."""

    biz: str
    bizId: int
    taggedMs: int = Field(description="When the tag was put on it, Unix milliseconds.")


class TaggedResourcePageView(BaseModel):
    """A page of the resources under one of the caller's tags, newest tagging first."""

    resources: list[TaggedResourceView]
    nextCursor: str = Field(
        description="Pass as `cursor` for the next page; empty on the last page."
    )
