"""Errors of the payment service, all in the ``payment.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.payment.v1``
(``protos/webook/payment/v1/payment.proto``); a reason is a value's name.

::

    kit.errors.AppError
    ├── InvalidArgument     → PaymentInvalidArgument  PAYMENT_INVALID_ARGUMENT,
    │                                                 PAYMENT_MALFORMED_NOTIFICATION,
    │                                                 PAYMENT_INVALID_FENCING_TOKEN
    ├── NotFound            → PaymentNotFound         PAYMENT_NOT_FOUND
    ├── Unauthenticated     → BadSignature            PAYMENT_BAD_SIGNATURE
    ├── FailedPrecondition  → PaymentRefused          PAYMENT_AMOUNT_MISMATCH,
    │                                                 PAYMENT_PROVIDER_REFUSED,
    │                                                 PAYMENT_STALE_FENCING_TOKEN
    └── Unavailable         → PaymentUnavailable      PAYMENT_PROVIDER_UNAVAILABLE,
                                                      PAYMENT_CONCURRENT_CONFLICT
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unauthenticated,
    Unavailable,
    reason_names,
)
from webook.payment.v1 import payment_pb2


class PaymentError(ServiceError, reasons=payment_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.payment.v1.ErrorReason``."""


DOMAIN = PaymentError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the payment service (``webook.payment.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(payment_pb2.ErrorReason)

    INVALID_ARGUMENT = auto()
    AMOUNT_MISMATCH = auto()
    NOT_FOUND = auto()
    BAD_SIGNATURE = auto()
    MALFORMED_NOTIFICATION = auto()
    PROVIDER_UNAVAILABLE = auto()
    PROVIDER_REFUSED = auto()
    INVALID_FENCING_TOKEN = auto()
    STALE_FENCING_TOKEN = auto()
    CONCURRENT_CONFLICT = auto()


class PaymentInvalidArgument(PaymentError, InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field when there is one."""


class PaymentNotFound(PaymentError, NotFound):
    """No order has that business trade number."""


class BadSignature(PaymentError, Unauthenticated):
    """A notification (or a WeChat Pay answer) whose signature does not hold."""


class PaymentRefused(PaymentError, FailedPrecondition):
    """The order or the job cannot go on as asked (another amount, WeChat's refusal, a
    stale fencing token)."""


class PaymentUnavailable(PaymentError, Unavailable):
    """WeChat Pay or the database cannot do it now; the caller may retry."""
