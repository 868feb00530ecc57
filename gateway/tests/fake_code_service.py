"""An in-memory stand-in for the code service (hosted by the sms service), over real gRPC.

It keeps the real service's rules that the gateway's answers depend on: one code per phone
per resend interval (``CODE_SEND_TOO_FREQUENT``), three wrong tries use a code up (the next
``Verify`` fails with ``CODE_VERIFY_TOO_MANY``), a verified code is consumed, a malformed
phone is ``CODE_INVALID_PHONE``. Sent codes are readable in :attr:`FakeCodeService.sent`.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from kit.errors import AppError, InvalidArgument, ResourceExhausted, Unavailable
from kit.grpcx.errors import abort_with
from webook.code.v1 import code_pb2, code_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

MAX_ATTEMPTS = 3
_PHONE = re.compile(r"1[3-9][0-9]{9}|\+[1-9][0-9]{6,14}")


async def _fail(context: Context, error: AppError) -> NoReturn:
    await abort_with(context, error)
    raise AssertionError("abort_with returned")


@dataclass
class _Code:
    value: str
    wrong_tries: int = 0


class FakeCodeService(code_pb2_grpc.CodeServiceServicer):
    """Codes in a dict; the resend guard holds until :meth:`allow_resend`."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, str], str] = {}
        self.send_calls: list[code_pb2.SendRequest] = []
        self.verify_calls: list[code_pb2.VerifyRequest] = []
        self._codes: dict[tuple[str, str], _Code] = {}
        self._guarded: set[tuple[str, str]] = set()
        # When set, Send fails as if no provider could send or queue the message.
        self.send_fails = False

    def allow_resend(self, biz: str, phone: str) -> None:
        """End the resend interval of ``(biz, phone)`` (as if a minute had passed)."""
        self._guarded.discard((biz, phone))

    async def Send(self, request: code_pb2.SendRequest, context: Context) -> code_pb2.SendResponse:
        """Issue a code, at most one per phone until :meth:`allow_resend`."""
        self.send_calls.append(request)
        key = (request.biz, request.phone)
        if not _PHONE.fullmatch(request.phone):
            await _fail(
                context,
                InvalidArgument("CODE_INVALID_PHONE", "invalid phone", metadata={"field": "phone"}),
            )
        if key in self._guarded:
            await _fail(
                context,
                ResourceExhausted(
                    "CODE_SEND_TOO_FREQUENT", "sent too often", metadata={"retry_after_s": "60"}
                ),
            )
        if self.send_fails:
            await _fail(context, Unavailable("CODE_SEND_FAILED", "could not send the code"))
        code = f"{secrets.randbelow(10**6):06d}"
        self._codes[key] = _Code(code)
        self._guarded.add(key)
        self.sent[key] = code
        return code_pb2.SendResponse()

    async def Verify(
        self, request: code_pb2.VerifyRequest, context: Context
    ) -> code_pb2.VerifyResponse:
        """True once for the right code; the fourth try after three wrong ones fails."""
        self.verify_calls.append(request)
        key = (request.biz, request.phone)
        stored = self._codes.get(key)
        if stored is None:
            return code_pb2.VerifyResponse(ok=False)
        if stored.wrong_tries >= MAX_ATTEMPTS:
            await _fail(context, ResourceExhausted("CODE_VERIFY_TOO_MANY", "too many wrong tries"))
        if request.code == stored.value:
            del self._codes[key]
            return code_pb2.VerifyResponse(ok=True)
        stored.wrong_tries += 1
        return code_pb2.VerifyResponse(ok=False)
