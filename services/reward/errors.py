"""Errors of the reward service, all in the ``reward.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.reward.v1``
(``protos/webook/reward/v1/reward.proto``); a reason is a value's name.

::

    kit.errors.AppError
    ├── InvalidArgument  → RewardInvalidArgument  REWARD_INVALID_BIZ, REWARD_INVALID_USER,
    │                                             REWARD_INVALID_AMOUNT, REWARD_SELF
    ├── NotFound         → RewardNotFound         REWARD_TARGET_NOT_FOUND, REWARD_NOT_FOUND
    └── Unavailable      → RewardUnavailable      REWARD_UNAVAILABLE, REWARD_CONCURRENT_CONFLICT
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import InvalidArgument, NotFound, ServiceError, Unavailable, reason_names
from webook.reward.v1 import reward_pb2


class RewardError(ServiceError, reasons=reward_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.reward.v1.ErrorReason``."""


DOMAIN = RewardError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the reward service (``webook.reward.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(reward_pb2.ErrorReason)

    INVALID_BIZ = auto()
    INVALID_USER = auto()
    INVALID_AMOUNT = auto()
    SELF = auto()
    TARGET_NOT_FOUND = auto()
    NOT_FOUND = auto()
    UNAVAILABLE = auto()
    CONCURRENT_CONFLICT = auto()


class RewardInvalidArgument(RewardError, InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field."""


class RewardNotFound(RewardError, NotFound):
    """The article cannot be rewarded (absent, unpublished), or the reward is not the
    caller's to see."""


class RewardUnavailable(RewardError, Unavailable):
    """A peer could not be asked, or writes kept colliding; the caller may retry."""
