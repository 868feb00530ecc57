"""Errors of the ranking service, all in the ``ranking.webook`` domain.

Reasons and the domain are declared once, in enum ``ErrorReason`` of ``webook.ranking.v1``
(``protos/webook/ranking/v1/ranking.proto``); a reason is a value's name.

::

    kit.errors.AppError
    ├── InvalidArgument     → RankingInvalidArgument  RANKING_INVALID_PAGE,
    │                                                 RANKING_INVALID_FENCING_TOKEN
    ├── FailedPrecondition  → StaleFencingToken       RANKING_STALE_FENCING_TOKEN
    └── Unavailable         → RankingJobFailed        RANKING_JOB_FAILED
"""

from __future__ import annotations

from enum import StrEnum, auto

from kit.errors import FailedPrecondition, InvalidArgument, ServiceError, Unavailable, reason_names
from webook.ranking.v1 import ranking_pb2


class RankingError(ServiceError, reasons=ranking_pb2.ErrorReason):
    """Base of every error in the domain of ``webook.ranking.v1.ErrorReason``."""


DOMAIN = RankingError.default_domain


class Reason(StrEnum):
    """Stable business reasons of the ranking service (``webook.ranking.v1.ErrorReason``)."""

    _generate_next_value_ = reason_names(ranking_pb2.ErrorReason)

    INVALID_PAGE = auto()
    INVALID_FENCING_TOKEN = auto()
    STALE_FENCING_TOKEN = auto()
    JOB_FAILED = auto()


class RankingInvalidArgument(RankingError, InvalidArgument):
    """Input breaks a rule; ``metadata["field"]`` names the field."""


class StaleFencingToken(RankingError, FailedPrecondition):
    """A run with a higher fencing token was accepted: this one must not run."""


class RankingJobFailed(RankingError, Unavailable):
    """A peer or Redis failed during the job; the ranking in force is unchanged."""
