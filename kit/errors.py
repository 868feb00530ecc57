"""The error tree shared by all services.

Every error a service raises on purpose is an :class:`AppError`. Its ``kind`` says which
canonical gRPC status it becomes at the service boundary (the mapping lives in
:mod:`kit.grpcx.errors`, the only place that knows about gRPC); its ``reason`` is a stable,
machine-readable business reason (``USER_EMAIL_TAKEN``) carried to clients in
``google.rpc.ErrorInfo``; its ``message`` is fit to show to a person.

::

    AppError                    INTERNAL
    ├── InvalidArgument         INVALID_ARGUMENT
    ├── NotFound                NOT_FOUND
    ├── AlreadyExists           ALREADY_EXISTS
    ├── PermissionDenied        PERMISSION_DENIED
    ├── Unauthenticated         UNAUTHENTICATED
    ├── ResourceExhausted       RESOURCE_EXHAUSTED
    ├── FailedPrecondition      FAILED_PRECONDITION
    └── Unavailable             UNAVAILABLE

A service's reasons and domain are declared once, in its proto: an ``ErrorReason`` enum
whose value names are the reasons and whose ``(webook.contracts.v1.error_domain)`` option
is the domain; :func:`error_domain` and :func:`declared_reasons` read them
(``docs/events.md``, "Error reasons"). Its ``errors.py`` declares, the same way for every
service, a base keyed by that enum and one class per kind it raises, plus the enum of its
reasons as the code spells them::

    class ArticleError(ServiceError, reasons=article_pb2.ErrorReason):
        ...  # every error of the service: domain "article.webook"

    class ArticleNotFound(ArticleError, NotFound):
        ...  # a NOT_FOUND of the article service

    class Reason(StrEnum):
        _generate_next_value_ = reason_names(article_pb2.ErrorReason)

        NOT_FOUND = auto()  # "ARTICLE_NOT_FOUND"

Foreign exceptions are wrapped with ``raise XError(...) from exc``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from google.protobuf.descriptor import EnumDescriptor

from webook.contracts.v1 import contracts_pb2


class ErrorKind(StrEnum):
    """The canonical status an error maps to (names match ``grpc.StatusCode``)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


class AppError(Exception):
    """Root of every deliberate error.

    Args:
        reason: stable UPPER_SNAKE business reason, e.g. ``USER_EMAIL_TAKEN``.
        message: human-readable explanation, safe to show to an end user.
        metadata: extra string facts for the client (field names, limits).
        domain: the error's origin, e.g. ``user.webook``; set by service subclasses.
    """

    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL
    default_domain: ClassVar[str] = "webook"

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        domain: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.domain = domain or self.default_domain

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, {self.message!r})"


class InvalidArgument(AppError):
    """The request is malformed or breaks a validation rule."""

    kind = ErrorKind.INVALID_ARGUMENT


class NotFound(AppError):
    """The addressed entity does not exist (or is invisible to the caller)."""

    kind = ErrorKind.NOT_FOUND


class AlreadyExists(AppError):
    """A uniqueness rule would be broken."""

    kind = ErrorKind.ALREADY_EXISTS


class PermissionDenied(AppError):
    """The caller is known but may not do this."""

    kind = ErrorKind.PERMISSION_DENIED


class Unauthenticated(AppError):
    """The caller's credentials are missing or wrong."""

    kind = ErrorKind.UNAUTHENTICATED


class ResourceExhausted(AppError):
    """A quota or rate limit was hit."""

    kind = ErrorKind.RESOURCE_EXHAUSTED


class FailedPrecondition(AppError):
    """The system is not in a state that allows the operation."""

    kind = ErrorKind.FAILED_PRECONDITION


class Unavailable(AppError):
    """A dependency is down; the caller may retry later."""

    kind = ErrorKind.UNAVAILABLE


ERROR_CLASSES: dict[ErrorKind, type[AppError]] = {
    cls.kind: cls
    for cls in (
        AppError,
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        FailedPrecondition,
        Unavailable,
    )
}


class ProtoEnum(Protocol):
    """A generated protobuf enum (``user_pb2.ErrorReason``, ``events_pb2.Topic``)."""

    @property
    def DESCRIPTOR(self) -> EnumDescriptor:
        """The enum's descriptor."""
        ...


def error_domain(reasons: ProtoEnum) -> str:
    """The ``google.rpc.ErrorInfo`` domain an ``ErrorReason`` enum declares.

    Raises ``ValueError`` when the enum lacks the ``(webook.contracts.v1.error_domain)``
    option.
    """
    enum = reasons.DESCRIPTOR
    domain = enum.GetOptions().Extensions[contracts_pb2.error_domain]
    if not domain:
        raise ValueError(f"{enum.full_name} declares no error_domain")
    return domain


def declared_reasons(reasons: ProtoEnum) -> frozenset[str]:
    """The reasons an ``ErrorReason`` enum declares: its value names but the zero."""
    return frozenset(value.name for value in reasons.DESCRIPTOR.values if value.number != 0)


def reason_prefix(reasons: ProtoEnum) -> str:
    """What every reason of ``reasons`` starts with: its domain's first label, upper case
    (``ARTICLE_`` for ``article.webook``); ``ValueError`` if one does not."""
    prefix = error_domain(reasons).split(".", 1)[0].upper() + "_"
    strays = sorted(name for name in declared_reasons(reasons) if not name.startswith(prefix))
    if strays:
        raise ValueError(f"{reasons.DESCRIPTOR.full_name}: {strays} do not start with {prefix}")
    return prefix


class NextValue(Protocol):
    """The signature of ``Enum._generate_next_value_``."""

    def __call__(self, name: str, start: int, count: int, last_values: list[str]) -> str:
        """The value of member ``name`` written ``auto()``."""
        ...


def reason_names(reasons: ProtoEnum) -> NextValue:
    """A ``_generate_next_value_`` for a service's reason ``StrEnum``: member ``NOT_FOUND =
    auto()`` gets the declared reason ``<PREFIX>NOT_FOUND`` (``ValueError`` at import if
    ``reasons`` does not declare it)."""
    prefix = reason_prefix(reasons)
    declared = declared_reasons(reasons)

    def reason(name: str, start: int, count: int, last_values: list[str]) -> str:
        value = prefix + name
        if value not in declared:
            raise ValueError(f"{reasons.DESCRIPTOR.full_name} declares no {value}")
        return value

    return reason


class ServiceError(AppError):
    """Base of one service's errors, keyed by the service's proto ``ErrorReason`` enum.

    ``class ArticleError(ServiceError, reasons=article_pb2.ErrorReason)`` puts every error
    of the service in the domain the enum declares; each concrete class adds the kind:
    ``class ArticleNotFound(ArticleError, NotFound)``. ``except ArticleError`` catches them
    all.
    """

    def __init_subclass__(cls, reasons: ProtoEnum | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if reasons is not None:
            cls.default_domain = error_domain(reasons)
