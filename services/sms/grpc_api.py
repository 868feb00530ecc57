"""gRPC servicers: translate protobuf ↔ domain and make one use-case call each."""

from __future__ import annotations

from typing import Any

import grpc

from services.sms.auth import current_caller
from services.sms.code_service import CodeService
from services.sms.domain import RecordQuery, SendCommand, SendRecord, SendStatus, mask_phones
from services.sms.errors import SmsInvalidArgument, SmsReason
from services.sms.sms_service import SmsService
from webook.code.v1 import code_pb2, code_pb2_grpc
from webook.sms.v1 import sms_pb2, sms_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

_STATUS_TO_PROTO = {
    SendStatus.WAITING: sms_pb2.SEND_STATUS_WAITING,
    SendStatus.SENDING: sms_pb2.SEND_STATUS_SENDING,
    SendStatus.SENT: sms_pb2.SEND_STATUS_SENT,
    SendStatus.FAILED: sms_pb2.SEND_STATUS_FAILED,
}
_STATUS_FROM_PROTO = {v: k for k, v in _STATUS_TO_PROTO.items()}


class CodeServicer(code_pb2_grpc.CodeServiceServicer):
    """``webook.code.v1.CodeService`` (internal: no caller token)."""

    def __init__(self, codes: CodeService) -> None:
        self._codes = codes

    async def Send(self, request: code_pb2.SendRequest, context: Context) -> code_pb2.SendResponse:
        """Send a verification code."""
        await self._codes.send(request.biz, request.phone)
        return code_pb2.SendResponse()

    async def Verify(
        self, request: code_pb2.VerifyRequest, context: Context
    ) -> code_pb2.VerifyResponse:
        """Check a verification code."""
        ok = await self._codes.verify(request.biz, request.phone, request.code)
        return code_pb2.VerifyResponse(ok=ok)


def record_to_proto(record: SendRecord) -> sms_pb2.SendRecord:
    """A send record for the admin view, with masked numbers."""
    return sms_pb2.SendRecord(
        id=record.id,
        caller=record.caller,
        tpl_id=record.tpl_id,
        numbers=mask_phones(record.numbers),
        status=_STATUS_TO_PROTO[record.status],
        provider=record.provider,
        attempts=record.attempts,
        last_error=record.last_error,
        ctime_ms=record.ctime_ms,
        utime_ms=record.utime_ms,
        latency_ms=record.latency_ms,
        idempotency_key=record.idempotency_key,
    )


class SmsServicer(sms_pb2_grpc.SmsServiceServicer):
    """``webook.sms.v1.SmsService`` (callers authenticated by the interceptor)."""

    def __init__(self, sms: SmsService) -> None:
        self._sms = sms

    async def Send(self, request: sms_pb2.SendRequest, context: Context) -> sms_pb2.SendResponse:
        """Send or queue one message."""
        command = SendCommand(
            tpl_id=request.tpl_id,
            args=tuple(request.args),
            numbers=tuple(request.numbers),
            idempotency_key=request.idempotency_key,
            valid_for_s=request.valid_for_seconds,
        )
        outcome = await self._sms.send(current_caller(), command)
        return sms_pb2.SendResponse(
            status=_STATUS_TO_PROTO[outcome.status],
            record_id=outcome.record_id,
            provider=outcome.provider,
        )

    async def ListSendRecords(
        self, request: sms_pb2.ListSendRecordsRequest, context: Context
    ) -> sms_pb2.ListSendRecordsResponse:
        """Page through send records, newest first."""
        status: SendStatus | None = None
        if request.status != sms_pb2.SEND_STATUS_UNSPECIFIED:
            if request.status not in _STATUS_FROM_PROTO:
                raise SmsInvalidArgument(
                    SmsReason.INVALID_QUERY, "unknown status", metadata={"field": "status"}
                )
            status = _STATUS_FROM_PROTO[request.status]
        query = RecordQuery(
            limit=request.limit,
            cursor=request.cursor,
            caller=request.caller,
            phone=request.phone,
            tpl_id=request.tpl_id,
            status=status,
            from_ms=request.from_ms,
            to_ms=request.to_ms,
        )
        page = await self._sms.list_records(current_caller(), query)
        return sms_pb2.ListSendRecordsResponse(
            records=[record_to_proto(r) for r in page.records], next_cursor=page.next_cursor
        )
