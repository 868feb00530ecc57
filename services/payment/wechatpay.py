"""WeChat Pay API v3 on the wire: request signing, answer and notification verification,
the notification resource's decryption, and the three calls the service makes.

- Requests carry ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",
  timestamp="…",serial_no="…",signature="…"``, the signature being RSA-SHA256 (PKCS#1 v1.5)
  with the merchant's private key over ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n``.
- Answers and notifications carry ``Wechatpay-Timestamp``, ``Wechatpay-Nonce``,
  ``Wechatpay-Signature`` (base64) and ``Wechatpay-Serial`` (the platform key's serial, or
  its public key id); the signature is over ``TIMESTAMP\\nNONCE\\nBODY\\n`` with the platform
  key. A timestamp older (or newer) than the allowed age is refused: a captured message
  cannot be replayed later.
- A notification's ``resource`` is ``AEAD_AES_256_GCM``: key the 32-byte API v3 key, the
  12-character ``nonce``, ``associated_data``, and ``ciphertext`` base64 (ciphertext then
  the 16-byte tag); it decrypts to the transaction, the same JSON the query answers.

Calls: Native prepay (``POST /v3/pay/transactions/native`` → ``code_url``), query by
``out_trade_no`` (``GET /v3/pay/transactions/out-trade-no/{no}?mchid=``) and close
(``POST /v3/pay/transactions/out-trade-no/{no}/close``, 204). Every answer's signature is
verified before it is believed. The emulator (``devstack/wechatpay_emulator.py``) marks its
answers with :data:`EMULATOR_HEADER`; a client built with ``refuse_emulator`` (prod mode)
refuses them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from opentelemetry import trace

from services.payment.domain import PaymentStatus
from services.payment.errors import (
    BadSignature,
    PaymentInvalidArgument,
    PaymentRefused,
    PaymentUnavailable,
    Reason,
)
from services.payment.metrics import WECHAT_CALLS

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

SCHEMA: Final = "WECHATPAY2-SHA256-RSA2048"
TIMESTAMP_HEADER: Final = "wechatpay-timestamp"
NONCE_HEADER: Final = "wechatpay-nonce"
SIGNATURE_HEADER: Final = "wechatpay-signature"
SERIAL_HEADER: Final = "wechatpay-serial"
SIGNATURE_TYPE_HEADER: Final = "wechatpay-signature-type"
EMULATOR_HEADER: Final = "x-webook-emulator"
"""The header the local emulator puts on every answer; WeChat Pay never sends it."""
AEAD: Final = "AEAD_AES_256_GCM"
APIV3_KEY_BYTES: Final = 32
DEFAULT_MAX_AGE_S: Final = 300.0

# trade_state → the status it moves an order to (None: not final, nothing to do).
_FINAL_STATES: Final[dict[str, PaymentStatus]] = {
    "SUCCESS": PaymentStatus.SUCCESS,
    "REFUND": PaymentStatus.REFUND,
    "CLOSED": PaymentStatus.FAILED,
    "REVOKED": PaymentStatus.FAILED,
    "PAYERROR": PaymentStatus.FAILED,
}
UNPAID_STATES: Final = frozenset({"NOTPAY"})
"""States of an order that may still be paid, which the reconciliation closes."""


def status_of(trade_state: str) -> PaymentStatus | None:
    """The status ``trade_state`` moves an order to; ``None`` for a state that is not final
    (``NOTPAY``, ``USERPAYING``) or unknown."""
    return _FINAL_STATES.get(trade_state)


def load_private_key(path: str | Path) -> rsa.RSAPrivateKey:
    """The merchant's RSA private key from a PEM file (``apiclient_key.pem``)."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return key


def load_platform_key(path: str | Path) -> rsa.RSAPublicKey:
    """WeChat Pay's RSA public key from a PEM file: its platform certificate or its public
    key (``pub_key.pem``, the newer scheme)."""
    data = Path(path).read_bytes()
    key: object
    if b"BEGIN CERTIFICATE" in data:
        key = x509.load_pem_x509_certificate(data).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"{path} holds no RSA public key")
    return key


def certificate_serial(path: str | Path) -> str:
    """The serial of a PEM certificate as WeChat Pay writes it (upper-case hex)."""
    certificate = x509.load_pem_x509_certificate(Path(path).read_bytes())
    return format(certificate.serial_number, "X")


def _nonce() -> str:
    return secrets.token_hex(16).upper()


@dataclass(frozen=True)
class MerchantSigner:
    """Signs our requests as merchant ``mchid`` with the key of certificate ``serial``."""

    mchid: str
    serial: str
    key: rsa.RSAPrivateKey

    def authorization(
        self, method: str, target: str, body: bytes, *, timestamp: int, nonce: str
    ) -> str:
        """The ``Authorization`` header of a request to ``target`` (path and query)."""
        message = f"{method}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = base64.b64encode(
            self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        ).decode()
        return (
            f'{SCHEMA} mchid="{self.mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{self.serial}"'
        )


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with lower-case names (HTTP names are case-insensitive)."""
    return {name.lower(): value for name, value in headers.items()}


@dataclass(frozen=True)
class PlatformVerifier:
    """Verifies what WeChat Pay signed with its platform key (of serial or id ``serial``).

    Args:
        serial: the platform certificate's serial, or the public key's id (``PUB_KEY_ID_…``).
        key: its public key.
        max_age_s: how far a signed timestamp may be from now, either way.
        clock: wall-clock seconds.
    """

    serial: str
    key: rsa.RSAPublicKey
    max_age_s: Callable[[], float] = lambda: DEFAULT_MAX_AGE_S
    clock: Callable[[], float] = time.time

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise :class:`BadSignature` unless ``headers`` sign ``body`` freshly with the
        platform key. ``headers`` must have lower-case names (:func:`lower_headers`)."""
        missing = [
            name
            for name in (TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER, SERIAL_HEADER)
            if not headers.get(name)
        ]
        if missing:
            raise BadSignature(Reason.BAD_SIGNATURE, f"missing headers: {', '.join(missing)}")
        kind = headers.get(SIGNATURE_TYPE_HEADER, SCHEMA)
        if kind != SCHEMA:
            raise BadSignature(Reason.BAD_SIGNATURE, f"unknown signature type {kind[:40]!r}")
        if headers[SERIAL_HEADER] != self.serial:
            # A rotated platform key would show up here: the operator installs the new one.
            raise BadSignature(
                Reason.BAD_SIGNATURE,
                "signed with an unknown platform key",
                metadata={"serial": headers[SERIAL_HEADER][:64]},
            )
        stamp = headers[TIMESTAMP_HEADER]
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise BadSignature(Reason.BAD_SIGNATURE, "malformed timestamp")
        if abs(self.clock() - int(stamp)) > self.max_age_s():
            raise BadSignature(Reason.BAD_SIGNATURE, "signature timestamp is stale")
        try:
            signature = base64.b64decode(headers[SIGNATURE_HEADER], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadSignature(Reason.BAD_SIGNATURE, "signature is not base64") from exc
        message = f"{stamp}\n{headers[NONCE_HEADER]}\n".encode() + body + b"\n"
        try:
            self.key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise BadSignature(Reason.BAD_SIGNATURE, "signature does not verify") from exc


def decrypt_resource(resource: Mapping[str, Any], apiv3_key: bytes) -> bytes:
    """The plaintext of a notification's ``resource`` (``AEAD_AES_256_GCM``).

    Raises :class:`PaymentInvalidArgument` (``PAYMENT_MALFORMED_NOTIFICATION``) when it is
    not one or does not decrypt (wrong key, altered ciphertext, nonce or associated data).
    """
    if resource.get("algorithm") != AEAD:
        raise _malformed("resource algorithm is not AEAD_AES_256_GCM")
    nonce, ciphertext = resource.get("nonce"), resource.get("ciphertext")
    associated = resource.get("associated_data") or ""
    if not isinstance(nonce, str) or not isinstance(ciphertext, str):
        raise _malformed("resource has no nonce or ciphertext")
    if not isinstance(associated, str):
        raise _malformed("resource associated_data is not a string")
    try:
        sealed = base64.b64decode(ciphertext, validate=True)
        return AESGCM(apiv3_key).decrypt(nonce.encode(), sealed, associated.encode() or None)
    except (binascii.Error, ValueError, InvalidTag) as exc:
        raise _malformed("resource does not decrypt with the API v3 key") from exc


def _malformed(message: str) -> PaymentInvalidArgument:
    return PaymentInvalidArgument(Reason.MALFORMED_NOTIFICATION, message)


@dataclass(frozen=True, slots=True)
class Transaction:
    """What WeChat Pay says of an order (query answer, decrypted notification)."""

    mchid: str
    out_trade_no: str
    transaction_id: str
    trade_state: str
    total_fen: int


def parse_transaction(data: object) -> Transaction:
    """A :class:`Transaction` from its JSON; ``PAYMENT_MALFORMED_NOTIFICATION`` otherwise."""
    if not isinstance(data, dict):
        raise _malformed("transaction is not a JSON object")
    amount = data.get("amount") or {}
    total = amount.get("total", 0) if isinstance(amount, dict) else None
    fields = (
        data.get("mchid"),
        data.get("out_trade_no"),
        data.get("transaction_id", ""),
        data.get("trade_state"),
    )
    if not all(isinstance(value, str) for value in fields) or not isinstance(total, int):
        raise _malformed("transaction lacks mchid, out_trade_no, trade_state or amount")
    mchid, out_trade_no, transaction_id, trade_state = (str(value) for value in fields)
    return Transaction(mchid, out_trade_no, transaction_id, trade_state, total)


class NotificationReader:
    """Opens WeChat Pay's payment notifications: verified, then decrypted."""

    def __init__(self, verifier: PlatformVerifier, apiv3_key: bytes, mchid: str) -> None:
        if len(apiv3_key) != APIV3_KEY_BYTES:
            raise ValueError(f"the API v3 key must be {APIV3_KEY_BYTES} bytes")
        self._verifier = verifier
        self._key = apiv3_key
        self._mchid = mchid

    def open(self, headers: Mapping[str, str], body: bytes) -> Transaction:
        """The transaction a notification reports.

        Raises:
            BadSignature: the signature is missing, stale, of another key, or wrong.
            PaymentInvalidArgument: signed, but not a readable notification of ours.
        """
        self._verifier.verify(lower_headers(headers), body)
        try:
            envelope = json.loads(body)
        except ValueError as exc:
            raise _malformed("body is not JSON") from exc
        resource = envelope.get("resource") if isinstance(envelope, dict) else None
        if not isinstance(resource, dict):
            raise _malformed("notification has no resource")
        try:
            data = json.loads(decrypt_resource(resource, self._key))
        except ValueError as exc:
            raise _malformed("decrypted resource is not JSON") from exc
        transaction = parse_transaction(data)
        if transaction.mchid != self._mchid:
            raise _malformed("notification of another merchant")
        return transaction


class WechatPayClient:
    """The calls the service makes to WeChat Pay, signed, with verified answers.

    Args:
        http: the HTTP client (owned by the caller; carries the timeout).
        base_url: ``https://api.mch.weixin.qq.com`` or the emulator's.
        appid: the app the orders are made for.
        notify_url: where WeChat Pay posts notifications (the gateway's ``/pay/callback``).
        signer: our merchant key.
        verifier: WeChat Pay's platform key.
        refuse_emulator: refuse answers that carry :data:`EMULATOR_HEADER` (prod mode).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        appid: str,
        notify_url: str,
        signer: MerchantSigner,
        verifier: PlatformVerifier,
        refuse_emulator: bool,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._appid = appid
        self._notify_url = notify_url
        self._signer = signer
        self._verifier = verifier
        self._refuse_emulator = refuse_emulator

    @property
    def mchid(self) -> str:
        """Our merchant id."""
        return self._signer.mchid

    async def prepay_native(self, out_trade_no: str, total_fen: int, description: str) -> str:
        """Order ``out_trade_no`` (Native); the ``code_url`` the payer's QR code encodes.
        WeChat Pay answers the same order again for the same number and parameters."""
        body = {
            "appid": self._appid,
            "mchid": self.mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "notify_url": self._notify_url,
            "amount": {"total": total_fen, "currency": "CNY"},
        }
        answer = await self._call("prepay", "POST", "/v3/pay/transactions/native", body)
        code_url = _json(answer).get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise _unavailable("WeChat Pay's prepay answer has no code_url")
        return code_url

    async def query(self, out_trade_no: str) -> Transaction:
        """What WeChat Pay knows of ``out_trade_no`` (:class:`WechatPayOrderMissing` if it
        has no such order)."""
        target = (
            f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}"
            f"?mchid={quote(self.mchid, safe='')}"
        )
        answer = await self._call("query", "GET", target, None)
        try:
            return parse_transaction(_json(answer))
        except PaymentInvalidArgument as exc:
            raise _unavailable(f"WeChat Pay's query answer: {exc.message}") from exc

    async def close(self, out_trade_no: str) -> None:
        """Close the unpaid order ``out_trade_no`` (``ORDERPAID`` if it was paid)."""
        target = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}/close"
        await self._call("close", "POST", target, {"mchid": self.mchid})

    async def _call(
        self, operation: str, method: str, target: str, payload: dict[str, Any] | None
    ) -> httpx.Response:
        outcome = "error"
        started = time.perf_counter()
        with _tracer.start_as_current_span(
            f"wechatpay {operation}", kind=trace.SpanKind.CLIENT
        ) as span:
            span.set_attribute("http.request.method", method)
            try:
                answer = await self._send(method, target, payload)
                outcome = "ok" if answer.is_success else "refused"
                span.set_attribute("http.response.status_code", answer.status_code)
                if not answer.is_success:
                    raise _refusal(answer)
                return answer
            finally:
                WECHAT_CALLS.labels(operation, outcome).observe(time.perf_counter() - started)

    async def _send(
        self, method: str, target: str, payload: dict[str, Any] | None
    ) -> httpx.Response:
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        headers = {
            "Authorization": self._signer.authorization(
                method, target, body, timestamp=int(time.time()), nonce=_nonce()
            ),
            "Accept": "application/json",
            "User-Agent": "webook-payment",
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            answer = await self._http.request(
                method, self._base + target, content=body or None, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise _unavailable("WeChat Pay did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise _unavailable(f"cannot reach WeChat Pay: {type(exc).__name__}") from exc
        received = lower_headers(dict(answer.headers))
        if self._refuse_emulator and EMULATOR_HEADER in received:
            logger.error(
                "WeChat Pay base URL points at the emulator in prod mode",
                extra={"base_url": self._base},
            )
            raise _unavailable("the WeChat Pay base URL is an emulator, refused in prod mode")
        if answer.status_code >= 500 or answer.status_code == 429:
            raise _unavailable(f"WeChat Pay answered HTTP {answer.status_code}")
        try:
            self._verifier.verify(received, answer.content)
        except BadSignature as exc:
            logger.error(
                "WeChat Pay answer failed verification",
                extra={"status": answer.status_code, "error": exc.message},
            )
            raise _unavailable(f"WeChat Pay's answer is not verifiable: {exc.message}") from exc
        return answer


class WechatPayOrderMissing(PaymentRefused):
    """WeChat Pay has no order of that number (``ORDER_NOT_EXIST``)."""


class WechatPayOrderPaid(PaymentRefused):
    """The order was paid (``ORDERPAID``): it cannot be closed."""


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        data = answer.json()
    except ValueError as exc:
        raise _unavailable("WeChat Pay's answer is not JSON") from exc
    if not isinstance(data, dict):
        raise _unavailable("WeChat Pay's answer is not a JSON object")
    return data


def _unavailable(message: str) -> PaymentUnavailable:
    return PaymentUnavailable(Reason.PROVIDER_UNAVAILABLE, message)


def _refusal(answer: httpx.Response) -> PaymentRefused:
    try:
        data = answer.json()
    except ValueError:
        data = {}
    code = str(data.get("code", "")) if isinstance(data, dict) else ""
    message = str(data.get("message", "")) if isinstance(data, dict) else ""
    metadata = {"code": code[:64], "message": message[:200], "status": str(answer.status_code)}
    text = f"WeChat Pay refused: HTTP {answer.status_code} {code} {message[:200]}".strip()
    if code == "ORDER_NOT_EXIST":
        return WechatPayOrderMissing(Reason.PROVIDER_REFUSED, text, metadata=metadata)
    if code == "ORDERPAID":
        return WechatPayOrderPaid(Reason.PROVIDER_REFUSED, text, metadata=metadata)
    return PaymentRefused(Reason.PROVIDER_REFUSED, text, metadata=metadata)
