"""Errors of the sms service, in two domains: ``code.webook`` and ``sms.webook``.

Reasons and domains are declared once, in the protos: enum ``ErrorReason`` of
``webook.code.v1`` (``protos/webook/code/v1/code.proto``) and of ``webook.sms.v1``
(``protos/webook/sms/v1/sms.proto``); a reason is a value's name. The enums below name them
for the service's code.

Each class fixes the canonical kind (the gRPC status it becomes); the business reason is one
of :class:`CodeReason` or :class:`SmsReason`, carried to clients in ``google.rpc.ErrorInfo``::

    kit.errors.AppError
    ├── InvalidArgument
    │   ├── CodeInvalidArgument   CODE_INVALID_PHONE, CODE_INVALID_BIZ
    │   └── SmsInvalidArgument    SMS_INVALID_TEMPLATE, SMS_INVALID_ARGS, SMS_INVALID_PHONE,
    │                             SMS_TOO_MANY_NUMBERS, SMS_INVALID_IDEMPOTENCY_KEY,
    │                             SMS_INVALID_QUERY
    ├── ResourceExhausted
    │   └── CodeResourceExhausted CODE_SEND_TOO_FREQUENT, CODE_VERIFY_TOO_MANY
    ├── Unauthenticated
    │   └── SmsUnauthenticated    SMS_UNAUTHENTICATED
    ├── PermissionDenied
    │   └── SmsPermissionDenied   SMS_TEMPLATE_NOT_ALLOWED, SMS_RECORDS_NOT_ALLOWED
    ├── FailedPrecondition
    │   └── SmsRejected           SMS_REJECTED
    └── Unavailable
        ├── CodeUnavailable       CODE_SEND_FAILED, CODE_STORE_UNAVAILABLE
        └── SmsUnavailable        SMS_UNAVAILABLE

A wrong, expired or used code is not an error: ``Verify`` answers ``ok=false``.
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
    reason_names,
)
from webook.code.v1 import code_pb2
from webook.sms.v1 import sms_pb2


class CodeError(ServiceError, reasons=code_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.code.v1.ErrorReason``."""


class SmsError(ServiceError, reasons=sms_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.sms.v1.ErrorReason``."""


CODE_DOMAIN = CodeError.default_domain
SMS_DOMAIN = SmsError.default_domain


class CodeReason(StrEnum):
    """Stable business reasons of ``CodeService`` (``webook.code.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(code_pb2.ErrorReason)

    INVALID_PHONE = auto()
    INVALID_BIZ = auto()
    SEND_TOO_FREQUENT = auto()
    VERIFY_TOO_MANY = auto()
    SEND_FAILED = auto()
    STORE_UNAVAILABLE = auto()
    COUNTRY_NOT_ALLOWED = auto()


class SmsReason(StrEnum):
    """Stable business reasons of ``SmsService`` (``webook.sms.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(sms_pb2.ErrorReason)

    INVALID_TEMPLATE = auto()
    INVALID_ARGS = auto()
    INVALID_PHONE = auto()
    TOO_MANY_NUMBERS = auto()
    INVALID_IDEMPOTENCY_KEY = auto()
    INVALID_QUERY = auto()
    UNAUTHENTICATED = auto()
    TEMPLATE_NOT_ALLOWED = auto()
    RECORDS_NOT_ALLOWED = auto()
    REJECTED = auto()
    UNAVAILABLE = auto()
    COUNTRY_NOT_ALLOWED = auto()
    DAILY_LIMIT_REACHED = auto()


class CodeInvalidArgument(CodeError, InvalidArgument):
    """Bad phone number or unknown business; ``metadata["field"]`` names the field."""


class CodeResourceExhausted(CodeError, ResourceExhausted):
    """Sent too often, or the code used up its tries."""


class CodeUnavailable(CodeError, Unavailable):
    """The code could not be stored or its SMS could not be sent; retry later."""


class SmsInvalidArgument(SmsError, InvalidArgument):
    """Input breaks a validation rule; ``metadata["field"]`` names the field."""


class SmsUnauthenticated(SmsError, Unauthenticated):
    """The caller's token is missing, unknown, forged or expired."""


class SmsPermissionDenied(SmsError, PermissionDenied):
    """The caller is known but may not use this template or see these records."""


class SmsRejected(SmsError, FailedPrecondition):
    """A provider refused the message itself (bad number, template, parameters)."""


class SmsUnavailable(SmsError, Unavailable):
    """The message could neither be sent nor stored for later delivery."""
