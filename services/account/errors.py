"""Errors of the account service, all in the ``account.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.account.v1``
(``protos/webook/account/v1/account.proto``); a reason is a value's name.

::

    kit.errors.AppError
    ├── InvalidArgument     → AccountInvalidArgument  ACCOUNT_INVALID_USER, ACCOUNT_INVALID_DAY,
    │                                                 ACCOUNT_INVALID_FENCING_TOKEN
    ├── FailedPrecondition  → StaleFencingToken       ACCOUNT_STALE_FENCING_TOKEN
    └── Unavailable         → AccountUnavailable      ACCOUNT_RECONCILIATION_FAILED,
                                                      ACCOUNT_CONCURRENT_CONFLICT
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import FailedPrecondition, InvalidArgument, ServiceError, Unavailable, reason_names
from webook.account.v1 import account_pb2


class AccountError(ServiceError, reasons=account_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.account.v1.ErrorReason``."""


DOMAIN = AccountError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the account service (``webook.account.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(account_pb2.ErrorReason)

    INVALID_USER = auto()
    INVALID_DAY = auto()
    INVALID_FENCING_TOKEN = auto()
    STALE_FENCING_TOKEN = auto()
    RECONCILIATION_FAILED = auto()
    CONCURRENT_CONFLICT = auto()


class AccountInvalidArgument(AccountError, InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field."""


class StaleFencingToken(AccountError, FailedPrecondition):
    """A reconciliation with a higher fencing token was accepted: this one must not run."""


class AccountUnavailable(AccountError, Unavailable):
    """The payment service failed the reconciliation, or writes kept colliding; retry."""
