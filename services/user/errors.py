"""Errors of the user service, all in the ``user.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.user.v1``
(``protos/webook/user/v1/user.proto``); a reason is a value's name.

Each class fixes the canonical kind (the gRPC status it becomes); the business reason is one
of :class:`Reason`, carried to clients in ``google.rpc.ErrorInfo``::

    kit.errors.AppError
    ├── InvalidArgument  → UserInvalidArgument   USER_INVALID_EMAIL, USER_WEAK_PASSWORD,
    │                                            USER_PASSWORD_TOO_LONG, USER_INVALID_NICKNAME,
    │                                            USER_INVALID_BIRTHDAY, USER_INVALID_ABOUT_ME,
    │                                            USER_INVALID_PHONE, USER_INVALID_WECHAT_INFO,
    │                                            USER_TOO_MANY_IDS, USER_INVALID_PAGE
    ├── NotFound         → UserNotFound          USER_NOT_FOUND
    ├── AlreadyExists    → UserAlreadyExists     USER_EMAIL_TAKEN
    ├── Unauthenticated  → UserUnauthenticated   USER_INVALID_CREDENTIALS
    ├── ResourceExhausted → UserLoginThrottled   USER_LOGIN_THROTTLED
    └── Unavailable      → UserUnavailable       USER_CONCURRENT_CONFLICT
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
    reason_names,
)
from webook.user.v1 import user_pb2


class UserError(ServiceError, reasons=user_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.user.v1.ErrorReason``."""


DOMAIN = UserError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the user service (``webook.user.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(user_pb2.ErrorReason)

    INVALID_EMAIL = auto()
    WEAK_PASSWORD = auto()
    PASSWORD_TOO_LONG = auto()
    INVALID_NICKNAME = auto()
    INVALID_BIRTHDAY = auto()
    INVALID_ABOUT_ME = auto()
    INVALID_PHONE = auto()
    INVALID_WECHAT_INFO = auto()
    TOO_MANY_IDS = auto()
    INVALID_PAGE = auto()
    NOT_FOUND = auto()
    EMAIL_TAKEN = auto()
    INVALID_CREDENTIALS = auto()
    CONCURRENT_CONFLICT = auto()
    LOGIN_THROTTLED = auto()


class UserInvalidArgument(UserError, InvalidArgument):
    """Input breaks a validation rule; ``metadata["field"]`` names the field."""


class UserNotFound(UserError, NotFound):
    """No user has the requested id."""


class UserAlreadyExists(UserError, AlreadyExists):
    """The email address is already registered."""


class UserUnauthenticated(UserError, Unauthenticated):
    """Email or password is wrong (deliberately the same error for both)."""


class UserLoginThrottled(UserError, ResourceExhausted):
    """Too many wrong passwords for this email; ``metadata["retry_after_s"]`` says how long.

    The same for registered and unknown emails (no account probing).
    """


class UserUnavailable(UserError, Unavailable):
    """A write kept colliding with concurrent writes; the caller may retry."""
