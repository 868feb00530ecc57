"""gRPC servicer of ``webook.account.v1.AccountService``: proto ↔ domain translation only.

``GetAccount`` reads one user's account; ``RunReconciliation`` runs the day's
reconciliation under the caller's fencing token, sent in metadata (:mod:`kit.grpcx.fencing`,
as the scheduler's ``grpc`` executor does) or in the request. Refusals are
:class:`kit.errors.AppError` subclasses that the server's error interceptor turns into
status codes with a ``google.rpc.ErrorInfo`` reason.
"""

from __future__ import annotations

from typing import Any

import grpc

from kit.grpcx.fencing import call_token
from services.account.domain import Activity, ActivityType
from services.account.errors import AccountInvalidArgument, Reason
from services.account.service import AccountService
from webook.account.v1 import account_pb2, account_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


ACTIVITY_TYPES = {
    ActivityType.REWARD: account_pb2.ACTIVITY_TYPE_REWARD,
    ActivityType.REWARD_PLATFORM_SHARE: account_pb2.ACTIVITY_TYPE_REWARD_PLATFORM_SHARE,
}


def activity_to_proto(activity: Activity) -> account_pb2.Activity:
    """The wire form of ``activity``."""
    return account_pb2.Activity(
        biz_key=activity.biz_key,
        amount_fen=activity.amount_fen,
        type=ACTIVITY_TYPES[activity.type],
        at_ms=activity.at_ms,
    )


def run_token(request: account_pb2.RunReconciliationRequest, context: Context) -> int:
    """The fencing token of a ``RunReconciliation`` call: the ``webook-fencing-token``
    metadata or the request's ``fencing_token``; both may be set only to the same value.
    0 when neither is (the service refuses it)."""

    def refuse(message: str, field: str) -> Exception:
        return AccountInvalidArgument(
            Reason.INVALID_FENCING_TOKEN, message, metadata={"field": field}
        )

    return call_token(context, request.fencing_token, refuse)


class AccountServicer(account_pb2_grpc.AccountServiceServicer):
    """Serves the account service's RPCs on top of :class:`AccountService`."""

    def __init__(self, service: AccountService) -> None:
        self._service = service

    async def GetAccount(
        self, request: account_pb2.GetAccountRequest, context: Context
    ) -> account_pb2.GetAccountResponse:
        """A user's balance and newest ledger rows."""
        view = await self._service.account(request.uid)
        return account_pb2.GetAccountResponse(
            balance_fen=view.balance_fen, recent=[activity_to_proto(a) for a in view.recent]
        )

    async def RunReconciliation(
        self, request: account_pb2.RunReconciliationRequest, context: Context
    ) -> account_pb2.RunReconciliationResponse:
        """Reconcile a day now, under the caller's fencing token."""
        result = await self._service.reconcile(request.day_start_ms, run_token(request, context))
        return account_pb2.RunReconciliationResponse(
            credited_fen=result.credited_fen,
            paid_fen=result.paid_fen,
            difference_fen=result.difference_fen,
            day_start_ms=result.day_start_ms,
        )
