"""Aliyun (Alibaba Cloud) SMS client: the RPC-style ``SendSms`` API (version 2017-05-25).

Request: ``POST {endpoint}/`` with a form-encoded body of the common parameters
``AccessKeyId``, ``Action=SendSms``, ``Format=JSON``, ``RegionId``, ``SignatureMethod=HMAC-SHA1``,
``SignatureNonce`` (random, single use), ``SignatureVersion=1.0``, ``Timestamp``
(``YYYY-MM-DDThh:mm:ssZ``, UTC), ``Version=2017-05-25`` and the business parameters
``PhoneNumbers`` (comma-separated; mainland numbers as 11 digits, others as country code +
number without ``+``), ``SignName``, ``TemplateCode``, ``TemplateParam`` (a JSON object of named
template variables), plus ``Signature``.

The signature: every parameter but ``Signature``, sorted by name, each name and value
percent-encoded (UTF-8, RFC 3986: only ``A-Z a-z 0-9 - _ . ~`` stay as they are, so a space is
``%20``, ``*`` is ``%2A`` and ``~`` is kept), joined as ``k=v`` with ``&``; the string to sign is
``POST&%2F&`` + the percent-encoded joined string; the signature is base64 of HMAC-SHA1 with
the key ``AccessKeySecret + "&"``.

Response: ``{"Code": "OK", "Message", "BizId", "RequestId"}``; any other ``Code`` is an error.
``isv.BUSINESS_LIMIT_CONTROL``, ``isv.DAY_LIMIT_CONTROL`` and ``Throttling*`` mean throttling;
the ``isv.*`` codes about numbers, parameters and content are about the message itself;
everything else (``isp.SYSTEM_ERROR``, balance, signature or key problems, HTTP 5xx) is treated
as the provider being unusable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from services.sms.providers.http import exchange, json_body
from services.sms.providers.port import (
    ProviderError,
    ProviderRejected,
    ProviderResult,
    ProviderThrottled,
    ProviderUnavailable,
)

ACTION = "SendSms"
VERSION = "2017-05-25"
DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com"

_THROTTLED = ("isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "Throttling")
_REJECTED = (
    "isv.MOBILE_NUMBER_ILLEGAL",
    "isv.MOBILE_COUNT_OVER_LIMIT",
    "isv.TEMPLATE_MISSING_PARAMETERS",
    "isv.TEMPLATE_PARAMS_ILLEGAL",
    "isv.INVALID_PARAMETERS",
    "isv.INVALID_JSON_PARAM",
    "isv.PARAM_LENGTH_LIMIT",
    "isv.PARAM_NOT_SUPPORT_URL",
    "isv.BLACK_KEY_CONTROL_LIMIT",
)


def classify(code: str) -> type[ProviderError]:
    """The provider error class an Aliyun error code stands for."""
    if code.startswith(_THROTTLED):
        return ProviderThrottled
    if code in _REJECTED:
        return ProviderRejected
    return ProviderUnavailable


def percent_encode(value: str) -> str:
    """Aliyun's percent-encoding (RFC 3986 unreserved characters kept, UTF-8)."""
    return quote(value, safe="~")


def rpc_signature(params: Mapping[str, str], secret: str, method: str = "POST") -> str:
    """Base64 HMAC-SHA1 signature of ``params`` (which must not include ``Signature``)."""
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items())
    )
    string_to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def aliyun_number(phone: str) -> str:
    """Mainland numbers as 11 digits (``+86`` dropped); other E.164 numbers lose their ``+``."""
    return phone.removeprefix("+86").removeprefix("+")


@dataclass(frozen=True)
class AliyunConfig:
    """Account and endpoint of one Aliyun SMS account."""

    name: str
    access_key_id: str
    access_key_secret: str = field(repr=False)
    sign_name: str
    endpoint: str = DEFAULT_ENDPOINT
    region: str = "cn-hangzhou"
    # Our template id → Aliyun TemplateCode (SMS_123456789); unmapped ids pass unchanged.
    templates: Mapping[str, str] = field(default_factory=dict)
    # Our template id → names of its variables, in argument order; default p1, p2, ...
    template_params: Mapping[str, Sequence[str]] = field(default_factory=dict)
    timeout_s: float = 3.0


class AliyunSmsProvider:
    """Sends through Aliyun SMS ``SendSms``."""

    def __init__(
        self,
        config: AliyunConfig,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._http = http
        self._clock = clock
        self._url = config.endpoint.rstrip("/") + "/"

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._config.name

    def _template_param(self, tpl_id: str, args: Sequence[str]) -> str:
        names = self._config.template_params.get(tpl_id) or [
            f"p{i}" for i in range(1, len(args) + 1)
        ]
        if len(names) != len(args):
            raise ProviderUnavailable(
                self.name,
                f"template {tpl_id} is configured with {len(names)} variables, got {len(args)}",
            )
        return json.dumps(dict(zip(names, args, strict=True)), ensure_ascii=False)

    def _params(self, tpl_id: str, args: Sequence[str], numbers: Sequence[str]) -> dict[str, str]:
        config = self._config
        params = {
            "AccessKeyId": config.access_key_id,
            "Action": ACTION,
            "Format": "JSON",
            "RegionId": config.region,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock())),
            "Version": VERSION,
            "PhoneNumbers": ",".join(aliyun_number(n) for n in numbers),
            "SignName": config.sign_name,
            "TemplateCode": config.templates.get(tpl_id, tpl_id),
        }
        if args:
            params["TemplateParam"] = self._template_param(tpl_id, args)
        params["Signature"] = rpc_signature(params, config.access_key_secret)
        return params

    async def send(
        self, tpl_id: str, args: Sequence[str], numbers: Sequence[str]
    ) -> ProviderResult:
        """Send one ``SendSms`` request for all ``numbers``."""
        params = self._params(tpl_id, args, numbers)
        body = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in params.items())
        response = await exchange(
            self._http,
            self.name,
            self._url,
            content=body.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout_s=self._config.timeout_s,
        )
        answer = json_body(response, self.name)
        code = str(answer.get("Code", ""))
        request_id = str(answer.get("RequestId", ""))
        if code != "OK":
            raise classify(code or "Unknown")(
                self.name, f"{code or 'no Code'} HTTP {response.status_code} (request {request_id})"
            )
        return ProviderResult(self.name, str(answer.get("BizId", request_id)))
