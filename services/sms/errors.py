"""Errors of the sms service, in two domains: ``code.webook`` and ``sms.webook``.

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
)

CODE_DOMAIN = "code.webook"
SMS_DOMAIN = "sms.webook"


class CodeReason(StrEnum):
    """Stable business reasons of ``CodeService`` (the gateway maps these)."""

    INVALID_PHONE = "CODE_INVALID_PHONE"
    INVALID_BIZ = "CODE_INVALID_BIZ"
    SEND_TOO_FREQUENT = "CODE_SEND_TOO_FREQUENT"
    VERIFY_TOO_MANY = "CODE_VERIFY_TOO_MANY"
    SEND_FAILED = "CODE_SEND_FAILED"
    STORE_UNAVAILABLE = "CODE_STORE_UNAVAILABLE"


class SmsReason(StrEnum):
    """Stable business reasons of ``SmsService``."""

    INVALID_TEMPLATE = "SMS_INVALID_TEMPLATE"
    INVALID_ARGS = "SMS_INVALID_ARGS"
    INVALID_PHONE = "SMS_INVALID_PHONE"
    TOO_MANY_NUMBERS = "SMS_TOO_MANY_NUMBERS"
    INVALID_IDEMPOTENCY_KEY = "SMS_INVALID_IDEMPOTENCY_KEY"
    INVALID_QUERY = "SMS_INVALID_QUERY"
    UNAUTHENTICATED = "SMS_UNAUTHENTICATED"
    TEMPLATE_NOT_ALLOWED = "SMS_TEMPLATE_NOT_ALLOWED"
    RECORDS_NOT_ALLOWED = "SMS_RECORDS_NOT_ALLOWED"
    REJECTED = "SMS_REJECTED"
    UNAVAILABLE = "SMS_UNAVAILABLE"


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
