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

from enum import StrEnum

from kit.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    error_domain,
)
from webook.code.v1 import code_pb2
from webook.sms.v1 import sms_pb2

CODE_DOMAIN = error_domain(code_pb2.ErrorReason)
SMS_DOMAIN = error_domain(sms_pb2.ErrorReason)


class CodeReason(StrEnum):
    """Stable business reasons of ``CodeService`` (``webook.code.v1.ErrorReason``)."""

    INVALID_PHONE = code_pb2.ErrorReason.Name(code_pb2.CODE_INVALID_PHONE)
    INVALID_BIZ = code_pb2.ErrorReason.Name(code_pb2.CODE_INVALID_BIZ)
    SEND_TOO_FREQUENT = code_pb2.ErrorReason.Name(code_pb2.CODE_SEND_TOO_FREQUENT)
    VERIFY_TOO_MANY = code_pb2.ErrorReason.Name(code_pb2.CODE_VERIFY_TOO_MANY)
    SEND_FAILED = code_pb2.ErrorReason.Name(code_pb2.CODE_SEND_FAILED)
    STORE_UNAVAILABLE = code_pb2.ErrorReason.Name(code_pb2.CODE_STORE_UNAVAILABLE)


class SmsReason(StrEnum):
    """Stable business reasons of ``SmsService`` (``webook.sms.v1.ErrorReason``)."""

    INVALID_TEMPLATE = sms_pb2.ErrorReason.Name(sms_pb2.SMS_INVALID_TEMPLATE)
    INVALID_ARGS = sms_pb2.ErrorReason.Name(sms_pb2.SMS_INVALID_ARGS)
    INVALID_PHONE = sms_pb2.ErrorReason.Name(sms_pb2.SMS_INVALID_PHONE)
    TOO_MANY_NUMBERS = sms_pb2.ErrorReason.Name(sms_pb2.SMS_TOO_MANY_NUMBERS)
    INVALID_IDEMPOTENCY_KEY = sms_pb2.ErrorReason.Name(sms_pb2.SMS_INVALID_IDEMPOTENCY_KEY)
    INVALID_QUERY = sms_pb2.ErrorReason.Name(sms_pb2.SMS_INVALID_QUERY)
    UNAUTHENTICATED = sms_pb2.ErrorReason.Name(sms_pb2.SMS_UNAUTHENTICATED)
    TEMPLATE_NOT_ALLOWED = sms_pb2.ErrorReason.Name(sms_pb2.SMS_TEMPLATE_NOT_ALLOWED)
    RECORDS_NOT_ALLOWED = sms_pb2.ErrorReason.Name(sms_pb2.SMS_RECORDS_NOT_ALLOWED)
    REJECTED = sms_pb2.ErrorReason.Name(sms_pb2.SMS_REJECTED)
    UNAVAILABLE = sms_pb2.ErrorReason.Name(sms_pb2.SMS_UNAVAILABLE)


class CodeInvalidArgument(InvalidArgument):
    """Bad phone number or unknown business; ``metadata["field"]`` names the field."""

    default_domain = CODE_DOMAIN


class CodeResourceExhausted(ResourceExhausted):
    """Sent too often, or the code used up its tries."""

    default_domain = CODE_DOMAIN


class CodeUnavailable(Unavailable):
    """The code could not be stored or its SMS could not be sent; retry later."""

    default_domain = CODE_DOMAIN


class SmsInvalidArgument(InvalidArgument):
    """Input breaks a validation rule; ``metadata["field"]`` names the field."""

    default_domain = SMS_DOMAIN


class SmsUnauthenticated(Unauthenticated):
    """The caller's token is missing, unknown, forged or expired."""

    default_domain = SMS_DOMAIN


class SmsPermissionDenied(PermissionDenied):
    """The caller is known but may not use this template or see these records."""

    default_domain = SMS_DOMAIN


class SmsRejected(FailedPrecondition):
    """A provider refused the message itself (bad number, template, parameters)."""

    default_domain = SMS_DOMAIN


class SmsUnavailable(Unavailable):
    """The message could neither be sent nor stored for later delivery."""

    default_domain = SMS_DOMAIN
