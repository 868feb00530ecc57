"""Fake vendor servers and in-memory fakes for the sms tests.

:class:`FakeTencent` and :class:`FakeAliyun` imitate the vendors' ``SendSms`` HTTP APIs on a
free local port (a Starlette app run by uvicorn in a thread). They verify each request's
signature with their own implementation of the documented algorithms (not the client's code),
record accepted messages in ``deliveries``, and can be told to answer errors, throttling,
refusals, HTTP 500, or to answer slowly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote_plus

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack.infra import free_port
from services.sms.domain import Caller, SendCommand, SendOutcome, SendStatus
from services.sms.providers.port import ProviderResult
from services.sms.settings import ProviderKind, ProviderSettings

TENCENT_ID = "AKIDtestsecretid"
TENCENT_KEY = "tencent-test-secret-key"
TENCENT_APP = "1400000001"
ALIYUN_ID = "LTAItestaccesskey"
ALIYUN_SECRET = "aliyun-test-secret"
SIGN_NAME = "webook"


@dataclass
class Delivery:
    """A message a fake vendor accepted."""

    template: str
    numbers: list[str]
    args: list[str]


@dataclass
class FakeVendor:
    """Behaviour switches and what the fake saw; mutated by tests, read by the server thread."""

    # ok | error | throttle | reject | http500 | partial
    mode: str = "ok"
    delay_s: float = 0.0
    deliveries: list[Delivery] = field(default_factory=list)
    requests: int = 0
    bad_signatures: int = 0
    nonces: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Bumped by reset(): requests from before it (e.g. timed out by the client, still
    # sleeping here) must not show up in the next test's history.
    generation: int = 0

    def reset(self) -> None:
        """Back to answering promptly and successfully, with empty history."""
        with self.lock:
            self.generation += 1
            self.mode = "ok"
            self.delay_s = 0.0
            self.deliveries.clear()
            self.requests = 0
            self.bad_signatures = 0

    def deliver(self, generation: int, delivery: Delivery) -> None:
        """Record an accepted message unless the fake was reset since the request came in."""
        with self.lock:
            if generation == self.generation:
                self.deliveries.append(delivery)

    def delivered_args(self) -> list[str]:
        """The first argument of every accepted message."""
        with self.lock:
            return [d.args[0] for d in self.deliveries if d.args]


async def _pause(vendor: FakeVendor) -> None:
    if vendor.delay_s:
        await asyncio.sleep(vendor.delay_s)


class FakeTencent(FakeVendor):
    """Imitates ``sms.tencentcloudapi.com`` ``SendSms`` 2021-01-11 with TC3-HMAC-SHA256."""

    def _signature_ok(self, request: Request, body: bytes) -> bool:
        auth = request.headers.get("authorization", "")
        algorithm, _, rest = auth.partition(" ")
        parts = dict(p.strip().split("=", 1) for p in rest.split(",") if "=" in p)
        credential = parts.get("Credential", "").split("/")
        if algorithm != "TC3-HMAC-SHA256" or len(credential) != 4:
            return False
        secret_id, date, service, terminator = credential
        timestamp = int(request.headers.get("x-tc-timestamp", "0"))
        if (
            secret_id != TENCENT_ID
            or service != "sms"
            or terminator != "tc3_request"
            or abs(time.time() - timestamp) > 300
            or date != datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
        ):
            return False
        signed = parts.get("SignedHeaders", "").split(";")
        if "host" not in signed or "content-type" not in signed:
            return False
        canonical_headers = "".join(
            f"{name}:{request.headers.get(name, '').strip().lower()}\n" for name in sorted(signed)
        )
        canonical = (
            f"{request.method}\n{request.url.path}\n{request.url.query}\n{canonical_headers}\n"
            f"{';'.join(sorted(signed))}\n{hashlib.sha256(body).hexdigest()}"
        )
        to_sign = (
            f"TC3-HMAC-SHA256\n{timestamp}\n{date}/sms/tc3_request\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        key = ("TC3" + TENCENT_KEY).encode()
        for part in (date, "sms", "tc3_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts.get("Signature", ""))

    async def handle(self, request: Request) -> JSONResponse:
        """One ``SendSms`` call."""
        body = await request.body()
        with self.lock:
            self.requests += 1
            generation = self.generation
        await _pause(self)
        request_id = uuid.uuid4().hex

        def error(code: str) -> JSONResponse:
            return JSONResponse(
                {"Response": {"Error": {"Code": code, "Message": code}, "RequestId": request_id}}
            )

        if (
            request.headers.get("x-tc-action") != "SendSms"
            or request.headers.get("x-tc-version") != "2021-01-11"
            or not self._signature_ok(request, body)
        ):
            with self.lock:
                self.bad_signatures += 1
            return error("AuthFailure.SignatureFailure")
        payload = json.loads(body)
        if payload.get("SmsSdkAppId") != TENCENT_APP or payload.get("SignName") != SIGN_NAME:
            return error("FailedOperation.SignatureIncorrectOrUnapproved")
        mode = self.mode
        if mode == "http500":
            return JSONResponse({"message": "boom"}, status_code=500)
        if mode == "error":
            return error("InternalError.SendAndRecvFail")
        numbers: list[str] = payload["PhoneNumberSet"]
        codes = {
            "ok": "Ok",
            "throttle": "LimitExceeded.PhoneNumberThirtySecondLimit",
            "reject": "InvalidParameterValue.IncorrectPhoneNumber",
        }
        statuses: list[dict[str, Any]] = []
        for index, number in enumerate(numbers):
            code = codes.get(mode, "Ok")
            if mode == "partial":
                code = "Ok" if index == 0 else "LimitExceeded.PhoneNumberDailyLimit"
            statuses.append(
                {
                    "SerialNo": uuid.uuid4().hex,
                    "PhoneNumber": number,
                    "Fee": 1,
                    "SessionContext": "",
                    "Code": code,
                    "Message": code,
                    "IsoCode": "CN",
                }
            )
        accepted = [str(s["PhoneNumber"]) for s in statuses if s["Code"] == "Ok"]
        if accepted:
            self.deliver(
                generation,
                Delivery(payload["TemplateId"], accepted, list(payload["TemplateParamSet"])),
            )
        return JSONResponse({"Response": {"SendStatusSet": statuses, "RequestId": request_id}})


def _aliyun_encode(value: str) -> str:
    # The vendor's documented recipe: URL-encode, then fix up '+', '*' and '~'.
    return quote_plus(value, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


class FakeAliyun(FakeVendor):
    """Imitates ``dysmsapi.aliyuncs.com`` ``SendSms`` 2017-05-25 with HMAC-SHA1 signatures."""

    def _signature_ok(self, method: str, params: dict[str, str]) -> bool:
        signature = params.pop("Signature", "")
        canonical = "&".join(
            f"{_aliyun_encode(k)}={_aliyun_encode(v)}" for k, v in sorted(params.items())
        )
        to_sign = f"{method}&{_aliyun_encode('/')}&{_aliyun_encode(canonical)}"
        expected = base64.b64encode(
            hmac.new(f"{ALIYUN_SECRET}&".encode(), to_sign.encode(), hashlib.sha1).digest()
        ).decode()
        stamp = datetime.strptime(params.get("Timestamp", ""), "%Y-%m-%dT%H:%M:%SZ")
        nonce = params.get("SignatureNonce", "")
        fresh = abs(time.time() - stamp.replace(tzinfo=UTC).timestamp()) <= 900
        with self.lock:
            replayed = nonce in self.nonces
            self.nonces.add(nonce)
        return (
            hmac.compare_digest(expected, signature)
            and fresh
            and bool(nonce)
            and not replayed
            and params.get("AccessKeyId") == ALIYUN_ID
            and params.get("SignatureMethod") == "HMAC-SHA1"
            and params.get("SignatureVersion") == "1.0"
        )

    async def handle(self, request: Request) -> JSONResponse:
        """One ``SendSms`` call (form-encoded POST)."""
        body = (await request.body()).decode()
        params = dict(parse_qsl(body, keep_blank_values=True, strict_parsing=True))
        with self.lock:
            self.requests += 1
            generation = self.generation
        await _pause(self)
        request_id = uuid.uuid4().hex

        def answer(code: str, status: int = 200) -> JSONResponse:
            return JSONResponse(
                {"Code": code, "Message": code, "RequestId": request_id}, status_code=status
            )

        if (
            params.get("Action") != "SendSms"
            or params.get("Version") != "2017-05-25"
            or params.get("Format") != "JSON"
            or not self._signature_ok(request.method, params)
        ):
            with self.lock:
                self.bad_signatures += 1
            return answer("SignatureDoesNotMatch", 400)
        if params.get("SignName") != SIGN_NAME:
            return answer("isv.SMS_SIGNATURE_ILLEGAL")
        mode = self.mode
        if mode == "http500":
            return answer("InternalError", 500)
        failures = {
            "error": "isp.SYSTEM_ERROR",
            "throttle": "isv.BUSINESS_LIMIT_CONTROL",
            "reject": "isv.MOBILE_NUMBER_ILLEGAL",
        }
        if mode in failures:
            return answer(failures[mode])
        variables: dict[str, str] = json.loads(params.get("TemplateParam", "{}"))
        self.deliver(
            generation,
            Delivery(
                params["TemplateCode"], params["PhoneNumbers"].split(","), list(variables.values())
            ),
        )
        return JSONResponse(
            {"Code": "OK", "Message": "OK", "BizId": uuid.uuid4().hex, "RequestId": request_id}
        )


class FakeServer:
    """Runs a fake vendor's app on a free loopback port in a background thread."""

    def __init__(self, vendor: FakeTencent | FakeAliyun) -> None:
        self.vendor = vendor
        self.port = free_port()
        app = Starlette(routes=[Route("/", vendor.handle, methods=["POST"])])
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def endpoint(self) -> str:
        """The base URL clients are configured with."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start serving and wait until the port accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake vendor server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving."""
        self._server.should_exit = True
        self._thread.join(timeout=10)


class RecordingSender:
    """An in-memory ``MessageSender``: records sends, answers a fixed status or raises."""

    def __init__(self) -> None:
        self.sent: list[tuple[Caller, SendCommand]] = []
        self.status = SendStatus.SENT
        self.error: Exception | None = None

    async def send(self, caller: Caller, command: SendCommand) -> SendOutcome:
        """Record the send."""
        if self.error is not None:
            raise self.error
        self.sent.append((caller, command))
        return SendOutcome(len(self.sent), self.status, "fake")


class ScriptedProvider:
    """An in-memory provider answering from a script of results and errors."""

    def __init__(self, name: str, *answers: Exception | None) -> None:
        self._name = name
        self.answers = list(answers)
        self.calls: list[tuple[str, list[str], list[str]]] = []

    @property
    def name(self) -> str:
        """The provider's name."""
        return self._name

    async def send(
        self, tpl_id: str, args: Sequence[str], numbers: Sequence[str]
    ) -> ProviderResult:
        """Pop the next answer (the last one repeats); ``None`` means success."""
        self.calls.append((tpl_id, list(args), list(numbers)))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer is not None:
            raise answer
        return ProviderResult(self._name, "req")


def tencent_settings(endpoint: str, **overrides: object) -> ProviderSettings:
    """Provider settings of a Tencent account at ``endpoint`` (the fake's credentials)."""
    fields: dict[str, object] = {
        "name": "tencent",
        "kind": ProviderKind.TENCENT,
        "endpoint": endpoint,
        "access_key_id": TENCENT_ID,
        "access_key_secret": TENCENT_KEY,
        "app_id": TENCENT_APP,
        "sign_name": SIGN_NAME,
        "templates": {"login_code": "1234567"},
        "timeout_s": 0.25,
    }
    fields.update(overrides)
    return ProviderSettings.model_validate(fields)


def aliyun_settings(endpoint: str, **overrides: object) -> ProviderSettings:
    """Provider settings of an Aliyun account at ``endpoint`` (the fake's credentials)."""
    fields: dict[str, object] = {
        "name": "aliyun",
        "kind": ProviderKind.ALIYUN,
        "endpoint": endpoint,
        "access_key_id": ALIYUN_ID,
        "access_key_secret": ALIYUN_SECRET,
        "sign_name": SIGN_NAME,
        "templates": {"login_code": "SMS_100000001"},
        "template_params": {"login_code": ["code"]},
        "timeout_s": 0.25,
    }
    fields.update(overrides)
    return ProviderSettings.model_validate(fields)
