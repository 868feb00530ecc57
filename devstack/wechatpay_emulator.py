"""A local stand-in for WeChat Pay API v3 (Native payments), so paying runs offline.

``python -m devstack.wechatpay_emulator --port 8091 --keys-dir .run/wechatpay`` serves an
ASGI app (Starlette on uvicorn) that imitates what a merchant's backend touches:

``POST /v3/pay/transactions/native``
    Native prepay: ``{appid, mchid, description, out_trade_no, notify_url, amount{total}}``
    → ``{code_url}``. The same ``out_trade_no`` with the same parameters answers the same
    ``code_url`` (WeChat Pay does too); other parameters → 400 ``INVALID_REQUEST``; a paid
    order → 400 ``ORDERPAID``, a closed one → 400 ``ORDERCLOSED``.
``GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=``
    The transaction (``trade_state`` ``NOTPAY``, ``SUCCESS`` or ``CLOSED``), or 404
    ``ORDER_NOT_EXIST``.
``POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close`` ``{mchid}``
    204; 400 ``ORDERPAID`` if it was paid, 404 if unknown.
``POST /emulator/pay`` ``{"out_trade_no", "notify": true}``
    The payer scanned and paid (not in WeChat Pay's API). The order becomes ``SUCCESS`` and,
    unless ``notify`` is false, a notification is POSTed to the order's ``notify_url``,
    signed with the platform key and its resource encrypted with the API v3 key, retried
    on failure (no 2xx) after 15 s, 15 s, 30 s, 3 m, 10 m, 20 m, 30 m, 30 m, 30 m, 60 m,
    3 h, 3 h, 3 h, 6 h, 6 h — WeChat Pay's schedule, times ``--retry-scale`` (tests use a
    tiny one). ``GET /emulator/notifications/{out_trade_no}`` reports the attempts.

Requests must carry a valid ``Authorization: WECHATPAY2-SHA256-RSA2048 …`` (the merchant's
signature, verified with its public key; 401 ``SIGN_ERROR`` otherwise). Every answer is
signed (``Wechatpay-Timestamp``/``-Nonce``/``-Signature``/``-Serial``) with the platform key
and carries ``X-Webook-Emulator: wechatpay``, which a client in prod mode refuses.

:func:`ensure_keys` makes (once) the local stack's merchant key and certificate, the platform
key and certificate and an API v3 key under a directory of the data dir, and
:meth:`WechatPayKeys.service_env` gives the settings that point a payment process at them.
Everything else is kept in memory. This is a development tool only: it moves no money.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import uvicorn
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kit.logging import configure_logging
from kit.security.pki import write_atomically

logger = logging.getLogger("wechatpay_emulator")

DEFAULT_PORT: Final = 8091
DEV_MCHID: Final = "1900000001"
DEV_APPID: Final = "wx-webook-dev"
SCHEMA: Final = "WECHATPAY2-SHA256-RSA2048"
EMULATOR_HEADER: Final = "X-Webook-Emulator"
RETRY_SCHEDULE_S: Final[tuple[float, ...]] = (
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
)  # fmt: skip
"""WeChat Pay's notification retries: the pause before each attempt after the first."""
MAX_SKEW_S: Final = 300.0
KEYS_FILE: Final = "wechatpay.json"
_AUTH_FIELD: Final = re.compile(r'(\w+)="([^"]*)"')
_TRADE_NO: Final = re.compile(r"[A-Za-z0-9_\-|*]{6,32}")


def _new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _self_signed(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class WechatPayKeys:
    """The files of a local WeChat Pay: ours (merchant) and its (platform), and the API v3
    key, in ``directory``."""

    directory: Path
    mchid: str
    appid: str
    merchant_serial: str
    platform_serial: str

    @property
    def merchant_key_file(self) -> Path:
        """Our private key (``apiclient_key.pem``): the service signs with it."""
        return self.directory / "merchant_key.pem"

    @property
    def merchant_cert_file(self) -> Path:
        """Our certificate (``apiclient_cert.pem``): the emulator verifies with it."""
        return self.directory / "merchant_cert.pem"

    @property
    def platform_key_file(self) -> Path:
        """The platform's private key: the emulator signs with it."""
        return self.directory / "platform_key.pem"

    @property
    def platform_cert_file(self) -> Path:
        """The platform certificate: the service verifies with it."""
        return self.directory / "platform_cert.pem"

    @property
    def apiv3_key_file(self) -> Path:
        """The API v3 key (32 characters)."""
        return self.directory / "apiv3_key"

    def apiv3_key(self) -> bytes:
        """The API v3 key's bytes."""
        return self.apiv3_key_file.read_bytes().strip()

    def service_env(self, prefix: str, base_url: str, notify_url: str) -> dict[str, str]:
        """The settings (environment, under ``prefix``) of a process paying through the
        emulator at ``base_url`` with notifications sent to ``notify_url``."""
        return {
            f"{prefix}WECHATPAY_MCHID": self.mchid,
            f"{prefix}WECHATPAY_APPID": self.appid,
            f"{prefix}WECHATPAY_MERCHANT_SERIAL": self.merchant_serial,
            f"{prefix}WECHATPAY_MERCHANT_PRIVATE_KEY_FILE": str(self.merchant_key_file),
            f"{prefix}WECHATPAY_PLATFORM_KEY_FILE": str(self.platform_cert_file),
            f"{prefix}WECHATPAY_PLATFORM_SERIAL": self.platform_serial,
            f"{prefix}WECHATPAY_APIV3_KEY": self.apiv3_key().decode(),
            f"{prefix}WECHATPAY_BASE_URL": base_url,
            f"{prefix}WECHATPAY_NOTIFY_URL": notify_url,
        }


def ensure_keys(
    directory: Path, *, mchid: str = DEV_MCHID, appid: str = DEV_APPID
) -> WechatPayKeys:
    """The local WeChat Pay's keys under ``directory``, made on first use and reused after
    (private keys and the API v3 key readable by their owner only)."""
    index = directory / KEYS_FILE
    if index.exists():
        saved = json.loads(index.read_text())
        return WechatPayKeys(directory, **saved)
    directory.mkdir(parents=True, exist_ok=True)
    merchant, platform = _new_rsa_key(), _new_rsa_key()
    merchant_cert = _self_signed(merchant, f"{mchid} merchant (local)")
    platform_cert = _self_signed(platform, "WeChat Pay platform (local emulator)")
    keys = WechatPayKeys(
        directory,
        mchid=mchid,
        appid=appid,
        merchant_serial=format(merchant_cert.serial_number, "X"),
        platform_serial=format(platform_cert.serial_number, "X"),
    )
    pem = serialization.Encoding.PEM
    write_atomically(keys.merchant_key_file, _key_pem(merchant), 0o600)
    write_atomically(keys.merchant_cert_file, merchant_cert.public_bytes(pem))
    write_atomically(keys.platform_key_file, _key_pem(platform), 0o600)
    write_atomically(keys.platform_cert_file, platform_cert.public_bytes(pem))
    write_atomically(keys.apiv3_key_file, secrets.token_hex(16).encode(), 0o600)
    saved = {
        "mchid": mchid,
        "appid": appid,
        "merchant_serial": keys.merchant_serial,
        "platform_serial": keys.platform_serial,
    }
    # Written last: its presence says every other file is there.
    write_atomically(index, json.dumps(saved, indent=2).encode())
    return keys


@dataclass
class _Order:
    """An order as the emulator keeps it."""

    out_trade_no: str
    appid: str
    description: str
    notify_url: str
    total: int
    code_url: str
    trade_state: str = "NOTPAY"
    transaction_id: str = ""
    success_time: str = ""


@dataclass
class Delivery:
    """The notification of one payment: attempts made, and whether one was acknowledged."""

    attempts: int = 0
    delivered: bool = False
    statuses: list[int] = field(default_factory=list)


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _iso_now() -> str:
    tz = dt.timezone(dt.timedelta(hours=8))
    return dt.datetime.now(tz).replace(microsecond=0).isoformat()


class WechatPayEmulator:
    """The emulator's state and handlers; :meth:`asgi` builds the app.

    Args:
        mchid / appid: the merchant and the app it orders for.
        merchant_serial / merchant_public_key: the merchant's certificate serial and key,
            which its requests must be signed with.
        platform_serial / platform_key: the platform key the answers are signed with.
        apiv3_key: the 32-byte key notifications are encrypted with.
        retry_schedule: pauses between notification attempts (WeChat Pay's by default).
        retry_scale: multiplies every pause (e.g. 0.001 in tests).
        clock: wall-clock seconds (signed timestamps).
    """

    def __init__(
        self,
        *,
        mchid: str,
        appid: str,
        merchant_serial: str,
        merchant_public_key: rsa.RSAPublicKey,
        platform_serial: str,
        platform_key: rsa.RSAPrivateKey,
        apiv3_key: bytes,
        retry_schedule: Sequence[float] = RETRY_SCHEDULE_S,
        retry_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(apiv3_key) != 32:
            raise ValueError("the API v3 key must be 32 bytes")
        self.mchid = mchid
        self.appid = appid
        self._merchant_serial = merchant_serial
        self._merchant_key = merchant_public_key
        self.platform_serial = platform_serial
        self._platform_key = platform_key
        self._apiv3_key = apiv3_key
        self._schedule = tuple(pause * retry_scale for pause in retry_schedule)
        self._clock = clock
        self._orders: dict[str, _Order] = {}
        self.deliveries: dict[str, Delivery] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    @classmethod
    def from_keys(cls, keys: WechatPayKeys, **options: Any) -> WechatPayEmulator:
        """An emulator using the files of :func:`ensure_keys`."""
        merchant = x509.load_pem_x509_certificate(keys.merchant_cert_file.read_bytes())
        merchant_key = merchant.public_key()
        platform_key = serialization.load_pem_private_key(
            keys.platform_key_file.read_bytes(), password=None
        )
        if not isinstance(merchant_key, rsa.RSAPublicKey) or not isinstance(
            platform_key, rsa.RSAPrivateKey
        ):
            raise ValueError(f"{keys.directory} does not hold RSA keys")
        return cls(
            mchid=keys.mchid,
            appid=keys.appid,
            merchant_serial=keys.merchant_serial,
            merchant_public_key=merchant_key,
            platform_serial=keys.platform_serial,
            platform_key=platform_key,
            apiv3_key=keys.apiv3_key(),
            **options,
        )

    def asgi(self) -> Starlette:
        """The ASGI application (its shutdown cancels pending notifications)."""
        return Starlette(
            routes=[
                Route("/healthz", self._healthz),
                Route("/v3/pay/transactions/native", self._prepay, methods=["POST"]),
                Route("/v3/pay/transactions/out-trade-no/{no}", self._query, methods=["GET"]),
                Route(
                    "/v3/pay/transactions/out-trade-no/{no}/close", self._close, methods=["POST"]
                ),
                Route("/emulator/pay", self._pay, methods=["POST"]),
                Route("/emulator/notifications/{no}", self._delivery, methods=["GET"]),
            ],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel pending notification deliveries and close the HTTP client."""
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # Signing and verifying.

    def sign(self, body: bytes) -> dict[str, str]:
        """The platform's signature headers of an answer or notification ``body``."""
        timestamp, nonce = str(int(self._clock())), secrets.token_hex(16)
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = self._platform_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": base64.b64encode(signature).decode(),
            "Wechatpay-Serial": self.platform_serial,
            "Wechatpay-Signature-Type": SCHEMA,
        }

    def _verify_merchant(self, request: Request, body: bytes) -> None:
        header = request.headers.get("authorization", "")
        schema, _, rest = header.partition(" ")
        if schema != SCHEMA:
            raise _Refusal(401, "SIGN_ERROR", "missing or unknown Authorization schema")
        fields = dict(_AUTH_FIELD.findall(rest))
        if fields.get("mchid") != self.mchid:
            raise _Refusal(401, "SIGN_ERROR", "mchid does not match")
        if fields.get("serial_no") != self._merchant_serial:
            raise _Refusal(401, "SIGN_ERROR", "unknown merchant certificate serial")
        stamp = fields.get("timestamp", "")
        if not stamp.isdigit() or abs(self._clock() - int(stamp)) > MAX_SKEW_S:
            raise _Refusal(401, "SIGN_ERROR", "timestamp missing or out of range")
        target = request.scope.get("raw_path", request.url.path.encode()).decode()
        if request.url.query:
            target += "?" + request.url.query
        message = (
            f"{request.method}\n{target}\n{stamp}\n{fields.get('nonce_str', '')}\n".encode()
            + body
            + b"\n"
        )
        try:
            signature = base64.b64decode(fields.get("signature", ""), validate=True)
            self._merchant_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, InvalidSignature) as exc:
            raise _Refusal(401, "SIGN_ERROR", "signature does not verify") from exc

    def _answer(self, status: int, data: Mapping[str, object] | None) -> Response:
        body = b"" if data is None else json.dumps(data, ensure_ascii=False).encode()
        headers = {
            **self.sign(body),
            "Request-ID": uuid.uuid4().hex,
            EMULATOR_HEADER: "wechatpay",
        }
        media = "application/json" if data is not None else None
        return Response(body, status_code=status, headers=headers, media_type=media)

    def _refuse(self, refusal: _Refusal) -> Response:
        logger.info(
            "request refused", extra={"code": refusal.code, "error_message": refusal.message}
        )
        return self._answer(refusal.status, {"code": refusal.code, "message": refusal.message})

    async def _signed_json(self, request: Request) -> dict[str, Any]:
        body = await request.body()
        self._verify_merchant(request, body)
        if not body:
            return {}
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise _Refusal(400, "PARAM_ERROR", "body is not JSON") from exc
        if not isinstance(data, dict):
            raise _Refusal(400, "PARAM_ERROR", "body is not a JSON object")
        return data

    # The API.

    async def _healthz(self, request: Request) -> Response:
        return self._answer(200, {"status": "ok"})

    async def _prepay(self, request: Request) -> Response:
        try:
            return self._answer(200, {"code_url": self._order(await self._signed_json(request))})
        except _Refusal as refusal:
            return self._refuse(refusal)

    def _order(self, data: Mapping[str, Any]) -> str:
        if data.get("mchid") != self.mchid or data.get("appid") != self.appid:
            raise _Refusal(400, "PARAM_ERROR", "appid or mchid does not match")
        no, description = data.get("out_trade_no"), data.get("description")
        notify_url, amount = data.get("notify_url"), data.get("amount")
        total = amount.get("total") if isinstance(amount, dict) else None
        if not isinstance(no, str) or not _TRADE_NO.fullmatch(no):
            raise _Refusal(400, "PARAM_ERROR", "out_trade_no must be 6-32 characters")
        if not isinstance(description, str) or not description:
            raise _Refusal(400, "PARAM_ERROR", "description is required")
        if not isinstance(notify_url, str) or not notify_url.startswith(("http://", "https://")):
            raise _Refusal(400, "PARAM_ERROR", "notify_url must be an http(s) URL")
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise _Refusal(400, "PARAM_ERROR", "amount.total must be a positive integer")
        order = self._orders.get(no)
        if order is None:
            code_url = f"weixin://wxpay/bizpayurl?pr={secrets.token_urlsafe(9)}"
            order = _Order(no, self.appid, description, notify_url, total, code_url)
            self._orders[no] = order
            logger.info("order created", extra={"out_trade_no": no, "total": total})
            return code_url
        if (order.total, order.description) != (total, description):
            raise _Refusal(400, "INVALID_REQUEST", "201 out_trade_no reused with other parameters")
        if order.trade_state == "SUCCESS":
            raise _Refusal(400, "ORDERPAID", "the order is paid")
        if order.trade_state == "CLOSED":
            raise _Refusal(400, "ORDERCLOSED", "the order is closed")
        return order.code_url

    def _known(self, request: Request) -> _Order:
        order = self._orders.get(request.path_params["no"])
        if order is None:
            raise _Refusal(404, "ORDER_NOT_EXIST", "no such order")
        return order

    async def _query(self, request: Request) -> Response:
        try:
            await self._signed_json(request)
            if request.query_params.get("mchid") != self.mchid:
                raise _Refusal(400, "PARAM_ERROR", "mchid does not match")
            return self._answer(200, self.transaction(self._known(request).out_trade_no))
        except _Refusal as refusal:
            return self._refuse(refusal)

    async def _close(self, request: Request) -> Response:
        try:
            data = await self._signed_json(request)
            if data.get("mchid") != self.mchid:
                raise _Refusal(400, "PARAM_ERROR", "mchid does not match")
            order = self._known(request)
            if order.trade_state == "SUCCESS":
                raise _Refusal(400, "ORDERPAID", "the order is paid")
            order.trade_state = "CLOSED"
            logger.info("order closed", extra={"out_trade_no": order.out_trade_no})
            return self._answer(204, None)
        except _Refusal as refusal:
            return self._refuse(refusal)

    def transaction(self, out_trade_no: str) -> dict[str, object]:
        """The transaction JSON of an order (query answers, notification resources)."""
        order = self._orders[out_trade_no]
        data: dict[str, object] = {
            "appid": order.appid,
            "mchid": self.mchid,
            "out_trade_no": order.out_trade_no,
            "trade_type": "NATIVE",
            "trade_state": order.trade_state,
            "trade_state_desc": order.trade_state,
            "amount": {"total": order.total, "currency": "CNY"},
        }
        if order.trade_state == "SUCCESS":
            data.update(
                transaction_id=order.transaction_id,
                success_time=order.success_time,
                bank_type="OTHERS",
                payer={"openid": "o-emulated-payer"},
                amount={
                    "total": order.total,
                    "payer_total": order.total,
                    "currency": "CNY",
                    "payer_currency": "CNY",
                },
            )
        return data

    # Paying and notifying.

    def pay(self, out_trade_no: str, *, notify: bool = True) -> None:
        """The payer paid ``out_trade_no``; unless ``notify`` is false, its notification is
        delivered in the background (inside the running event loop)."""
        order = self._orders.get(out_trade_no)
        if order is None:
            raise _Refusal(404, "ORDER_NOT_EXIST", "no such order")
        if order.trade_state == "CLOSED":
            raise _Refusal(400, "ORDERCLOSED", "the order is closed")
        if order.trade_state == "SUCCESS":
            return
        order.trade_state = "SUCCESS"
        order.transaction_id = "42" + str(time.time_ns())[-16:] + secrets.token_hex(4)
        order.success_time = _iso_now()
        logger.info("order paid", extra={"out_trade_no": out_trade_no, "notify": notify})
        if notify:
            self.deliveries[out_trade_no] = Delivery()
            task = asyncio.create_task(self._deliver(order), name=f"notify-{out_trade_no}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def notification(
        self, out_trade_no: str, *, event_type: str = "TRANSACTION.SUCCESS"
    ) -> tuple[dict[str, str], bytes]:
        """A signed notification of the order as it stands now: ``(headers, body)``."""
        plaintext = json.dumps(self.transaction(out_trade_no), ensure_ascii=False).encode()
        nonce, associated = secrets.token_hex(6), "transaction"
        sealed = AESGCM(self._apiv3_key).encrypt(nonce.encode(), plaintext, associated.encode())
        envelope = {
            "id": str(uuid.uuid4()),
            "create_time": _iso_now(),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": "payment succeeded",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(sealed).decode(),
                "associated_data": associated,
                "nonce": nonce,
            },
        }
        body = json.dumps(envelope, ensure_ascii=False).encode()
        return {**self.sign(body), "Content-Type": "application/json"}, body

    async def _deliver(self, order: _Order) -> None:
        delivery = self.deliveries[order.out_trade_no]
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=5.0)
        _, body = self.notification(order.out_trade_no)
        for pause in (0.0, *self._schedule):
            await asyncio.sleep(pause)
            delivery.attempts += 1
            try:
                answer = await self._http.post(
                    order.notify_url,
                    content=body,
                    headers={**self.sign(body), "Content-Type": "application/json"},
                )
                status = answer.status_code
            except httpx.HTTPError as exc:
                status = 0
                logger.info("notification not delivered", extra={"error": type(exc).__name__})
            delivery.statuses.append(status)
            if 200 <= status < 300:
                delivery.delivered = True
                logger.info(
                    "notification delivered",
                    extra={"out_trade_no": order.out_trade_no, "attempts": delivery.attempts},
                )
                return
        logger.warning("notification given up", extra={"out_trade_no": order.out_trade_no})

    async def _pay(self, request: Request) -> Response:
        try:
            data = json.loads(await request.body())
            no = data.get("out_trade_no") if isinstance(data, dict) else None
            if not isinstance(no, str):
                raise _Refusal(400, "PARAM_ERROR", "out_trade_no is required")
            self.pay(no, notify=bool(data.get("notify", True)))
            return self._answer(200, self.transaction(no))
        except ValueError:
            return self._refuse(_Refusal(400, "PARAM_ERROR", "body is not JSON"))
        except _Refusal as refusal:
            return self._refuse(refusal)

    async def _delivery(self, request: Request) -> Response:
        delivery = self.deliveries.get(request.path_params["no"])
        if delivery is None:
            return self._refuse(_Refusal(404, "ORDER_NOT_EXIST", "no notification"))
        return self._answer(
            200,
            {
                "attempts": delivery.attempts,
                "delivered": delivery.delivered,
                "statuses": delivery.statuses,
            },
        )


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone (it runs inside
    someone else's event loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_app(app: Starlette, port: int, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on ``host:port`` in the running event loop (tests, and a
    test's stand-in for the gateway's callback); its base URL. Stops it on exit."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(), name=f"uvicorn-{port}")
    try:
        while not server.started:
            if task.done():
                await task  # raises why it could not start
                raise RuntimeError(f"the server on port {port} stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def serving(
    emulator: WechatPayEmulator, port: int, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """Serve ``emulator`` on ``host:port`` in the running event loop; its base URL. Stops
    it, and its pending notifications, on exit."""
    try:
        async with serve_app(emulator.asgi(), port, host) as base_url:
            yield base_url
    finally:
        await emulator.aclose()


def main(argv: list[str] | None = None) -> None:
    """Serve the emulator until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.wechatpay_emulator",
        description="Local WeChat Pay API v3 (Native) emulator.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--keys-dir", type=Path, required=True, help="where the keys are (made if missing)"
    )
    parser.add_argument(
        "--retry-scale", type=float, default=1.0, help="multiplies the notification retry pauses"
    )
    args = parser.parse_args(argv)
    configure_logging("wechatpay-emulator")
    emulator = WechatPayEmulator.from_keys(ensure_keys(args.keys_dir), retry_scale=args.retry_scale)
    logger.info("WeChat Pay emulator listening", extra={"addr": f"{args.host}:{args.port}"})
    config = uvicorn.Config(
        emulator.asgi(),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
