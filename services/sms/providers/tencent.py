"""Tencent Cloud SMS client: API 3.0 ``SendSms`` (version 2021-01-11) over httpx.

Request: ``POST {endpoint}/`` with a JSON body ``{"PhoneNumberSet": ["+8613800138000"],
"SmsSdkAppId", "SignName", "TemplateId", "TemplateParamSet": [...]}`` and the headers
``X-TC-Action: SendSms``, ``X-TC-Version: 2021-01-11``, ``X-TC-Timestamp`` (Unix seconds),
``X-TC-Region`` and ``Authorization: TC3-HMAC-SHA256 Credential=<SecretId>/<date>/sms/
tc3_request, SignedHeaders=content-type;host, Signature=<hex>``.

The signature (TC3-HMAC-SHA256): the canonical request is ``POST\\n/\\n\\n`` + the lowercase
``content-type`` and ``host`` headers + ``\\ncontent-type;host\\n`` + hex SHA-256 of the body;
the string to sign is ``TC3-HMAC-SHA256\\n<timestamp>\\n<date>/sms/tc3_request\\n`` + hex
SHA-256 of the canonical request; the key is derived by HMAC-SHA256 chaining ``"TC3" +
SecretKey`` → date (UTC, ``YYYY-MM-DD``) → ``sms`` → ``tc3_request``.

Response: ``{"Response": {"SendStatusSet": [{"PhoneNumber", "Code": "Ok", "Message",
"SerialNo", ...}], "RequestId"}}``, or ``{"Response": {"Error": {"Code", "Message"},
"RequestId"}}``. ``LimitExceeded.*`` and ``RequestLimitExceeded*`` mean throttling;
``InvalidParameterValue.*``, ``UnsupportedOperation.*`` and a few ``FailedOperation.*`` codes
are about the message itself; every other code is treated as the provider being unusable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from services.sms.domain import to_e164
from services.sms.providers.http import exchange, json_body
from services.sms.providers.port import (
    ProviderError,
    ProviderRejected,
    ProviderResult,
    ProviderThrottled,
    ProviderUnavailable,
)

ACTION = "SendSms"
VERSION = "2021-01-11"
SERVICE = "sms"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"
DEFAULT_ENDPOINT = "https://sms.tencentcloudapi.com"

_REJECTED_PREFIXES = (
    "InvalidParameterValue.",
    "UnsupportedOperation.",
    "FailedOperation.PhoneNumberInBlacklist",
    "FailedOperation.ContainSensitiveWord",
    "FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
)


def classify(code: str) -> type[ProviderError]:
    """The provider error class a Tencent error code stands for."""
    if code.startswith(("LimitExceeded.", "RequestLimitExceeded")):
        return ProviderThrottled
    if code.startswith(_REJECTED_PREFIXES):
        return ProviderRejected
    return ProviderUnavailable


def tc3_signature(
    *, secret_key: str, timestamp: int, canonical_request: str, service: str = SERVICE
) -> tuple[str, str]:
    """``(credential scope, hex signature)`` of a canonical request at ``timestamp``."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(
        [
            ALGORITHM,
            str(timestamp),
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )

    def step(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    signing_key = step(step(step(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    signature = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return scope, signature


@dataclass(frozen=True)
class TencentConfig:
    """Account and endpoint of one Tencent Cloud SMS application."""

    name: str
    secret_id: str
    secret_key: str = field(repr=False)
    app_id: str
    sign_name: str
    endpoint: str = DEFAULT_ENDPOINT
    region: str = "ap-guangzhou"
    # Our template id → Tencent's numeric TemplateId; unmapped ids are passed unchanged.
    templates: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 3.0


class TencentSmsProvider:
    """Sends through Tencent Cloud SMS ``SendSms``."""

    def __init__(
        self,
        config: TencentConfig,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._http = http
        self._clock = clock
        self._url = config.endpoint.rstrip("/") + "/"
        self._host = httpx.URL(self._url).netloc.decode()

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._config.name

    def _headers(self, payload: bytes, timestamp: int) -> dict[str, str]:
        canonical_request = "\n".join(
            [
                "POST",
                "/",
                "",
                f"content-type:{CONTENT_TYPE}\nhost:{self._host.lower()}\n",
                "content-type;host",
                hashlib.sha256(payload).hexdigest(),
            ]
        )
        scope, signature = tc3_signature(
            secret_key=self._config.secret_key,
            timestamp=timestamp,
            canonical_request=canonical_request,
        )
        authorization = (
            f"{ALGORITHM} Credential={self._config.secret_id}/{scope}, "
            f"SignedHeaders=content-type;host, Signature={signature}"
        )
        return {
            "Authorization": authorization,
            "Content-Type": CONTENT_TYPE,
            "Host": self._host,
            "X-TC-Action": ACTION,
            "X-TC-Version": VERSION,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self._config.region,
        }

    async def send(
        self, tpl_id: str, args: Sequence[str], numbers: Sequence[str]
    ) -> ProviderResult:
        """Send one ``SendSms`` request for all ``numbers``."""
        config = self._config
        e164 = [to_e164(n) for n in numbers]
        payload = json.dumps(
            {
                "PhoneNumberSet": e164,
                "SmsSdkAppId": config.app_id,
                "SignName": config.sign_name,
                "TemplateId": config.templates.get(tpl_id, tpl_id),
                "TemplateParamSet": list(args),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        response = await exchange(
            self._http,
            self.name,
            self._url,
            content=payload,
            headers=self._headers(payload, int(self._clock())),
            timeout_s=config.timeout_s,
        )
        body = json_body(response, self.name).get("Response")
        if not isinstance(body, dict):
            raise ProviderUnavailable(self.name, f"HTTP {response.status_code} without Response")
        return self._result(body, dict(zip(e164, numbers, strict=True)))

    def _result(self, body: dict[str, Any], originals: dict[str, str]) -> ProviderResult:
        request_id = str(body.get("RequestId", ""))
        error = body.get("Error")
        if isinstance(error, dict):
            code = str(error.get("Code", "Unknown"))
            raise classify(code)(self.name, f"{code} (request {request_id})")
        statuses = body.get("SendStatusSet")
        if not isinstance(statuses, list) or not statuses:
            raise ProviderUnavailable(self.name, f"no SendStatusSet (request {request_id})")
        refused: list[tuple[str, str]] = []
        for status in statuses:
            if not isinstance(status, dict):
                raise ProviderUnavailable(self.name, "malformed SendStatusSet")
            code = str(status.get("Code", ""))
            if code != "Ok":
                number = str(status.get("PhoneNumber", ""))
                refused.append((originals.get(number, number), code))
        if len(refused) == len(statuses):
            classes = {classify(code) for _, code in refused}
            codes = ",".join(sorted({code for _, code in refused}))
            for cls in (ProviderUnavailable, ProviderThrottled, ProviderRejected):
                if cls in classes:
                    raise cls(self.name, f"every number refused: {codes} (request {request_id})")
        return ProviderResult(self.name, request_id, tuple(refused))
