"""Use cases of the comment service and the ports they need.

:class:`CommentService` validates input with :mod:`services.comment.domain`, checks the
thread rules (a reply's parent exists, belongs to the same object, and its thread is the
one named) and the author rule of deletion, and works through a :class:`UnitOfWork`: one
transaction per write, in which the repository also keeps the per-object count and the
thread's reply count. A transaction that hits a deadlock or lock timeout
(:class:`kit.sql.WriteConflict`) is retried a few times with a jittered back-off
(:func:`kit.sql.retry_on_conflict`) before answering ``COMMENT_CONCURRENT_CONFLICT``.

Only what exists can be commented on: a new comment names a kind of object of
:data:`~services.comment.domain.KNOWN_BIZ` (else ``COMMENT_INVALID_BIZ``) and an object its
owner says exists (:class:`Targets`; an article must be published, so not a draft nor a
withdrawn one, else ``COMMENT_TARGET_NOT_FOUND``). A reply names the same object as the
comment it answers (checked in the transaction), so it passes the same check. When the owner
cannot answer, the comment fails closed with ``COMMENT_TARGET_UNAVAILABLE`` (UNAVAILABLE,
retry). Listing, counting and deleting ask nothing: comments of a withdrawn article stay
listable and deletable by their authors.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

from clients.article import Targets, TargetsUnavailable
from kit.sql import UnitOfWork as SqlUnitOfWorkProtocol
from kit.sql import WriteConflict as WriteConflict
from kit.sql import retry_on_conflict
from services.comment.domain import (
    Comment,
    NewComment,
    check_cursor,
    check_known_target,
    check_target,
    check_uid,
    clean_content,
    normalize_biz_ids,
    page_size,
    replies_per_comment,
)
from services.comment.errors import (
    CommentInvalidArgument,
    CommentNotFound,
    CommentPermissionDenied,
    CommentUnavailable,
    Reason,
)

T = TypeVar("T")

_WRITE_ATTEMPTS = 5


class CommentRepository(Protocol):
    """Comments and their counts, inside one unit of work."""

    async def get(self, comment_id: int, *, for_update: bool = False) -> Comment | None:
        """One comment (``for_update`` locks it until the transaction ends)."""
        ...

    async def add(self, comment: NewComment, *, now_ms: int) -> Comment:
        """Store ``comment`` and count it (object count, and its thread's reply count)."""
        ...

    async def delete_subtree(self, comment: Comment, *, now_ms: int) -> int:
        """Delete ``comment`` and its replies below it, uncount them; how many went."""
        ...

    async def page(
        self, biz: str, biz_id: int, *, min_id: int, limit: int, per_root: int
    ) -> list[Comment]:
        """Top-level comments newest first, each with its first ``per_root`` replies."""
        ...

    async def replies(self, root_id: int, *, max_id: int, limit: int) -> list[Comment]:
        """Replies of one thread after ``max_id``, oldest first."""
        ...

    async def counts(self, biz: str, biz_ids: list[int]) -> dict[int, int]:
        """Comment counts of these objects (0 for those without comments)."""
        ...


class UnitOfWork(SqlUnitOfWorkProtocol, Protocol):
    """One transaction; rolled back on exit unless committed."""

    @property
    def comments(self) -> CommentRepository:
        """The repository bound to this transaction."""
        ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _too_many_conflicts() -> CommentUnavailable:
    return CommentUnavailable(
        Reason.CONCURRENT_CONFLICT, "too many concurrent writes, please retry"
    )


class CommentService:
    """The comment use cases.

    Args:
        unit_of_work: makes a new :class:`UnitOfWork` per use case.
        targets: says whether the object of a new comment exists.
    """

    def __init__(self, unit_of_work: Callable[[], UnitOfWork], *, targets: Targets) -> None:
        self._uow = unit_of_work
        self._targets = targets

    async def _require_target(self, biz: str, biz_id: int) -> None:
        try:
            found = await self._targets.exists(biz, biz_id)
        except TargetsUnavailable as exc:
            raise CommentUnavailable(
                Reason.TARGET_UNAVAILABLE,
                f"cannot check that this {biz} exists now; try again",
                metadata={"biz": biz, "biz_id": str(biz_id)},
            ) from exc
        if not found:
            raise CommentNotFound(
                Reason.TARGET_NOT_FOUND,
                f"no such {biz}, or it is not published",
                metadata={"biz": biz, "biz_id": str(biz_id)},
            )

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        return await retry_on_conflict(
            attempt, exhausted=_too_many_conflicts, attempts=_WRITE_ATTEMPTS
        )

    async def create(
        self, *, uid: int, biz: str, biz_id: int, content: str, root_id: int, parent_id: int
    ) -> Comment:
        """Post a top-level comment (``parent_id == 0``) or a reply to ``parent_id``, on an
        object that exists."""
        check_uid(uid)
        check_known_target(biz, biz_id)
        text = clean_content(content)
        check_cursor(root_id, "root_id")
        check_cursor(parent_id, "parent_id")
        if parent_id == 0 and root_id != 0:
            raise CommentInvalidArgument(
                Reason.PARENT_MISMATCH,
                "a reply needs the comment it answers (parent_id)",
                metadata={"field": "parent_id"},
            )
        await self._require_target(biz, biz_id)

        async def attempt() -> Comment:
            async with self._uow() as uow:
                thread = 0
                if parent_id:
                    # Locked, so a concurrent delete of the parent cannot orphan the reply.
                    parent = await uow.comments.get(parent_id, for_update=True)
                    if parent is None:
                        raise CommentNotFound(
                            Reason.PARENT_NOT_FOUND,
                            "the comment you reply to does not exist",
                            metadata={"field": "parent_id"},
                        )
                    thread = parent.root_id or parent.id
                    if (parent.biz, parent.biz_id) != (biz, biz_id) or root_id not in (0, thread):
                        raise CommentInvalidArgument(
                            Reason.PARENT_MISMATCH,
                            "the comment you reply to belongs to another thread",
                            metadata={"field": "parent_id"},
                        )
                new = NewComment(
                    uid=uid,
                    biz=biz,
                    biz_id=biz_id,
                    content=text,
                    root_id=thread,
                    parent_id=parent_id,
                )
                created = await uow.comments.add(new, now_ms=_now_ms())
                await uow.commit()
                return created

        return await self._retrying(attempt)

    async def delete(self, *, comment_id: int, uid: int) -> int:
        """Delete the caller's comment and its sub-tree; how many comments went."""
        if comment_id <= 0:
            raise CommentNotFound(Reason.NOT_FOUND, "comment not found")

        async def attempt() -> int:
            async with self._uow() as uow:
                comment = await uow.comments.get(comment_id, for_update=True)
                if comment is None:
                    raise CommentNotFound(Reason.NOT_FOUND, "comment not found")
                if comment.uid != uid:
                    raise CommentPermissionDenied(
                        Reason.NOT_AUTHOR, "only the author can delete a comment"
                    )
                deleted = await uow.comments.delete_subtree(comment, now_ms=_now_ms())
                await uow.commit()
                return deleted

        return await self._retrying(attempt)

    async def list_comments(
        self, *, biz: str, biz_id: int, min_id: int, limit: int, replies: int
    ) -> list[Comment]:
        """A page of top-level comments (newest first) with their first replies."""
        check_target(biz, biz_id)
        size = page_size(limit)
        per_root = replies_per_comment(replies)
        cursor = check_cursor(min_id, "min_id")
        async with self._uow() as uow:
            return await uow.comments.page(
                biz, biz_id, min_id=cursor, limit=size, per_root=per_root
            )

    async def more_replies(self, *, root_id: int, max_id: int, limit: int) -> list[Comment]:
        """Replies of thread ``root_id`` after ``max_id``, oldest first."""
        size = page_size(limit)
        cursor = check_cursor(max_id, "max_id")
        async with self._uow() as uow:
            root = await uow.comments.get(root_id) if root_id > 0 else None
            if root is None or root.root_id != 0:
                raise CommentNotFound(Reason.NOT_FOUND, "comment thread not found")
            return await uow.comments.replies(root_id, max_id=cursor, limit=size)

    async def counts(self, *, biz: str, biz_ids: Iterable[int]) -> dict[int, int]:
        """Comment count of each requested object (0 when it has none)."""
        check_target(biz, 1)
        ids = normalize_biz_ids(biz_ids)
        async with self._uow() as uow:
            return await uow.comments.counts(biz, ids)
