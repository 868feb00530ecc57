"""``/tags``: create and list one's tags, tag one's articles, read a resource's tags, list
the resources under one of one's tags.

Every route acts for the logged-in caller (the tag service's ``uid``); answers are built by
:mod:`gateway.presenters`. The tag service (docs/tag.md) refuses a bad name, an unknown biz,
too many tags, a bad cursor (code 4 with its message), someone else's article or tag (code 4:
"only the article's author may tag it", "no tag 7 among yours"), an unpublished article
(code 4), and is code 5 when it or the article service behind it is unavailable
(:mod:`gateway.errors`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from gateway import presenters
from gateway.deps import LOGGED_IN, NOT_LOGGED_IN, PrincipalDep, RuntimeDep
from gateway.envelope import Result
from gateway.schemas import INT64_MAX, DecimalInt
from gateway.schemas.tags import (
    DEFAULT_BIZ,
    MAX_CURSOR_CHARS,
    AttachTagsRequest,
    CreatedTagView,
    CreateTagRequest,
    ResourceTagsView,
    TaggedResourcePageView,
    TagView,
)
from webook.tag.v1 import tag_pb2

router = APIRouter(prefix="/tags", tags=["tags"], dependencies=LOGGED_IN, responses=NOT_LOGGED_IN)


@router.post(
    "/create",
    summary="Create a tag",
    description="Idempotent: a name the caller already has answers that tag, `created` false. "
    "The name is trimmed; 1 to 32 characters; a user's number of tags is limited.",
)
async def create_tag(
    body: CreateTagRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Result[CreatedTagView]:
    """The caller's tag of that name."""
    reply = await runtime.stubs.tag.CreateTag(
        tag_pb2.CreateTagRequest(uid=principal.uid, name=body.name), timeout=runtime.grpc_timeout
    )
    return Result(data=presenters.created_tag(reply))


@router.get("/mine", summary="The caller's tags, by name")
async def my_tags(principal: PrincipalDep, runtime: RuntimeDep) -> Result[list[TagView]]:
    """Every tag of the caller."""
    reply = await runtime.stubs.tag.ListUserTags(
        tag_pb2.ListUserTagsRequest(uid=principal.uid), timeout=runtime.grpc_timeout
    )
    return Result(data=[presenters.tag_view(tag) for tag in reply.tags])


@router.post(
    "/attach",
    summary="Replace the tags of one's article",
    description="`tagIds` becomes the resource's whole tag set ([] removes every tag). Only "
    "the author of a published article may tag it, with their own tags; the same set again "
    "changes nothing.",
)
async def attach_tags(
    body: AttachTagsRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Result[ResourceTagsView]:
    """The resource's new tag set."""
    reply = await runtime.stubs.tag.AttachTags(
        tag_pb2.AttachTagsRequest(
            uid=principal.uid, biz=body.biz, biz_id=body.bizId, tag_ids=body.tagIds
        ),
        timeout=runtime.grpc_timeout,
    )
    return Result(data=presenters.resource_tags(reply.resource))


@router.get(
    "/resource",
    summary="The tags of a resource",
    description="Any logged-in user may read them; `version` 0 and no tags: never tagged.",
)
async def resource_tags(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    bizId: Annotated[DecimalInt, Query(gt=0, le=INT64_MAX, description="E.g. the article id.")],
    biz: Annotated[str, Query(min_length=1, max_length=32)] = DEFAULT_BIZ,
) -> Result[ResourceTagsView]:
    """The resource's whole tag set."""
    reply = await runtime.stubs.tag.GetResourceTags(
        tag_pb2.GetResourceTagsRequest(uid=principal.uid, biz=biz, biz_id=bizId),
        timeout=runtime.grpc_timeout,
    )
    return Result(data=presenters.resource_tags(reply.resource))


@router.get(
    "/{tagId}/resources",
    summary="The resources under one of the caller's tags",
    description="Newest tagging first. For the next page pass `nextCursor` as `cursor`; an "
    "empty `nextCursor` means the last page. Someone else's tag is not found (code 4).",
)
async def tagged_resources(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    tagId: Annotated[DecimalInt, Path(gt=0, le=INT64_MAX, description="One of the caller's tags.")],
    cursor: Annotated[
        str,
        Query(
            max_length=MAX_CURSOR_CHARS,
            description="The previous page's nextCursor; empty or absent = the first page.",
        ),
    ] = "",
    limit: Annotated[DecimalInt, Query(ge=1, le=100, description="Resources per page.")] = 20,
) -> Result[TaggedResourcePageView]:
    """A page of the resources under the tag and the cursor of the next one."""
    reply = await runtime.stubs.tag.ListResourcesByTag(
        tag_pb2.ListResourcesByTagRequest(
            uid=principal.uid, tag_id=tagId, cursor=cursor, limit=limit
        ),
        timeout=runtime.grpc_timeout,
    )
    return Result(data=presenters.tagged_resource_page(reply))
