"""gRPC servicer of ``webook.tag.v1.TagService``: proto ↔ domain translation only.

Every method makes exactly one :class:`~services.tag.service.TagService` call, which checks
the request (:mod:`services.tag.domain`) before anything else; refusals are
:class:`kit.errors.AppError` subclasses (:mod:`services.tag.errors`) that the server's
error interceptor turns into status codes with a ``google.rpc.ErrorInfo`` reason. Every
request from the gateway carries the caller's ``uid``, which the gateway sets from the
session; ``ListTagSets`` acts for no user (the search service's rebuild calls it).
"""

from __future__ import annotations

from typing import Any

import grpc

from services.tag.events import resource_to_proto, tag_to_proto
from services.tag.service import TagService
from webook.tag.v1 import tag_pb2, tag_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class TagServicer(tag_pb2_grpc.TagServiceServicer):
    """Serves the tag service's RPCs on top of :class:`TagService`."""

    def __init__(self, service: TagService) -> None:
        self._service = service

    async def CreateTag(
        self, request: tag_pb2.CreateTagRequest, context: Context
    ) -> tag_pb2.CreateTagResponse:
        """The caller's tag of that name, created if new."""
        tag, created = await self._service.create_tag(request.uid, request.name)
        return tag_pb2.CreateTagResponse(tag=tag_to_proto(tag), created=created)

    async def ListUserTags(
        self, request: tag_pb2.ListUserTagsRequest, context: Context
    ) -> tag_pb2.ListUserTagsResponse:
        """The caller's tags, by name."""
        tags = await self._service.list_user_tags(request.uid)
        return tag_pb2.ListUserTagsResponse(tags=[tag_to_proto(tag) for tag in tags])

    async def AttachTags(
        self, request: tag_pb2.AttachTagsRequest, context: Context
    ) -> tag_pb2.AttachTagsResponse:
        """Replace the tag set of the caller's resource."""
        resource = await self._service.attach_tags(
            request.uid, request.biz, request.biz_id, list(request.tag_ids)
        )
        return tag_pb2.AttachTagsResponse(resource=resource_to_proto(resource))

    async def GetResourceTags(
        self, request: tag_pb2.GetResourceTagsRequest, context: Context
    ) -> tag_pb2.GetResourceTagsResponse:
        """A resource's tag set."""
        resource = await self._service.get_resource_tags(request.uid, request.biz, request.biz_id)
        return tag_pb2.GetResourceTagsResponse(resource=resource_to_proto(resource))

    async def ListTagSets(
        self, request: tag_pb2.ListTagSetsRequest, context: Context
    ) -> tag_pb2.ListTagSetsResponse:
        """A page of every tag set of one kind of resource, in id order."""
        sets = await self._service.list_tag_sets(request.biz, request.after_biz_id, request.limit)
        return tag_pb2.ListTagSetsResponse(resources=[resource_to_proto(s) for s in sets])

    async def ListResourcesByTag(
        self, request: tag_pb2.ListResourcesByTagRequest, context: Context
    ) -> tag_pb2.ListResourcesByTagResponse:
        """A page of the resources under one of the caller's tags."""
        page = await self._service.list_resources_by_tag(
            request.uid, request.tag_id, request.cursor, request.limit
        )
        return tag_pb2.ListResourcesByTagResponse(
            resources=[
                tag_pb2.TaggedResource(biz=r.biz, biz_id=r.biz_id, tagged_ms=r.tagged_ms)
                for r in page.resources
            ],
            next_cursor=page.next_cursor,
        )
