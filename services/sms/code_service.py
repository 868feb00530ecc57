"""Use cases of verification codes: send one to a phone, verify it once.

Rules (:class:`~services.sms.domain.CodeRules`): at most one code per (biz, phone) per resend
interval (60 s); a code lives ``ttl_s`` (600 s); ``max_attempts`` (3) wrong tries use it up,
after which even the right code is refused until a new one is sent; a verified code is gone.
Codes are ``digits`` (6) digits from :mod:`secrets`, stored only as HMAC-SHA256 under a server
key, bound to the business and phone.

A phone is its E.164 form (:func:`~services.sms.domain.canonical_phone`): every spelling of one
number shares one resend interval, one code and one count of tries. Numbers outside the
allowed countries are refused before anything is stored or sent.

The code's SMS goes through the SMS use case in process, as caller ``code``. If the SMS could
not be sent but was queued for later delivery, ``send`` still succeeds; if it could not even
be queued, the stored code is removed again so the person can retry at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Protocol

from kit.errors import AppError
from kit.phone import CountryNotAllowed, InvalidPhoneNumber
from services.sms.domain import (
    Caller,
    CodeRules,
    PhoneRules,
    SendCommand,
    SendOutcome,
    VerifyOutcome,
    canonical_phone,
    mask_phone,
)
from services.sms.errors import (
    CodeInvalidArgument,
    CodeReason,
    CodeResourceExhausted,
    CodeUnavailable,
)
from services.sms.metrics import SmsMetrics

logger = logging.getLogger(__name__)

CODE_CALLER = "code"


class CodeStoreUnavailable(Exception):
    """The code store cannot be reached."""


class CodeStore(Protocol):
    """Where codes live; each method is atomic with respect to concurrent calls."""

    async def put(
        self,
        biz: str,
        phone: str,
        digest: str,
        *,
        ttl_s: float,
        resend_interval_s: float,
        max_attempts: int,
    ) -> bool:
        """Store a new code; ``False`` if one was sent within the resend interval."""

    async def check(self, biz: str, phone: str, digest: str) -> VerifyOutcome:
        """Compare with the stored code; a right code is consumed, a wrong one costs a try."""

    async def discard(self, biz: str, phone: str, digest: str) -> None:
        """Remove the code and its resend guard if it is still the one with ``digest``."""


class MessageSender(Protocol):
    """The SMS use case, as the code service needs it."""

    async def send(self, caller: Caller, command: SendCommand) -> SendOutcome:
        """Send (or queue) one message; raise ``AppError`` if it could do neither."""


class CodeService:
    """Sends and verifies one-time codes."""

    def __init__(
        self,
        store: CodeStore,
        sender: MessageSender,
        *,
        rules: CodeRules,
        templates: Mapping[str, str],
        hmac_key: bytes,
        metrics: SmsMetrics,
        phones: PhoneRules | None = None,
    ) -> None:
        self._store = store
        self._sender = sender
        self._rules = rules
        self._templates = dict(templates)
        self._key = hmac_key
        self._metrics = metrics
        self._phones = phones or PhoneRules()
        self._caller = Caller(CODE_CALLER, frozenset(self._templates.values()))
        self._code_format = re.compile(rf"\d{{{rules.digits}}}")

    def _validate(self, biz: str, phone: str) -> tuple[str, str]:
        """The template of ``biz`` and the E.164 form of ``phone``."""
        if biz not in self._templates:
            raise CodeInvalidArgument(
                CodeReason.INVALID_BIZ,
                "unknown business for verification codes",
                metadata={"field": "biz"},
            )
        try:
            e164 = canonical_phone(phone, self._phones)
        except CountryNotAllowed as exc:
            raise CodeInvalidArgument(
                CodeReason.COUNTRY_NOT_ALLOWED,
                str(exc),
                metadata={"field": "phone", "country": exc.region},
            ) from exc
        except InvalidPhoneNumber as exc:
            raise CodeInvalidArgument(
                CodeReason.INVALID_PHONE, f"invalid phone: {exc}", metadata={"field": "phone"}
            ) from exc
        return self._templates[biz], e164

    def _digest(self, biz: str, phone: str, code: str) -> str:
        message = f"{biz}\x00{phone}\x00{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _new_code(self) -> str:
        return f"{secrets.randbelow(10**self._rules.digits):0{self._rules.digits}d}"

    async def send(self, biz: str, phone: str) -> None:
        """Create a code for ``(biz, phone)`` and send it by SMS."""
        tpl_id, phone = self._validate(biz, phone)
        code = self._new_code()
        digest = self._digest(biz, phone, code)
        counter = self._metrics.code_send_total
        rules = self._rules
        try:
            stored = await self._store.put(
                biz,
                phone,
                digest,
                ttl_s=rules.ttl_s,
                resend_interval_s=rules.resend_interval_s,
                max_attempts=rules.max_attempts,
            )
        except CodeStoreUnavailable as exc:
            counter.labels(biz, "error").inc()
            raise CodeUnavailable(
                CodeReason.STORE_UNAVAILABLE, "verification codes are unavailable, retry later"
            ) from exc
        if not stored:
            counter.labels(biz, "too_frequent").inc()
            raise CodeResourceExhausted(
                CodeReason.SEND_TOO_FREQUENT,
                "a code was sent recently; wait before asking for another",
                metadata={"retry_after_s": f"{rules.resend_interval_s:g}"},
            )
        command = SendCommand(
            tpl_id=tpl_id, args=(code,), numbers=(phone,), valid_for_s=int(rules.ttl_s)
        )
        try:
            outcome = await self._sender.send(self._caller, command)
        except AppError as exc:
            await self._discard_after_failure(biz, phone, digest)
            counter.labels(biz, "send_failed").inc()
            logger.warning(
                "code sms failed; code discarded",
                extra={"biz": biz, "phone": mask_phone(phone), "reason": exc.reason},
            )
            raise CodeUnavailable(
                CodeReason.SEND_FAILED, "the code could not be sent, retry later"
            ) from exc
        counter.labels(biz, "ok").inc()
        logger.info(
            "code sent",
            extra={
                "biz": biz,
                "phone": mask_phone(phone),
                "sms_record": outcome.record_id,
                "sms_status": outcome.status.value,
            },
        )

    async def _discard_after_failure(self, biz: str, phone: str, digest: str) -> None:
        try:
            await self._store.discard(biz, phone, digest)
        except CodeStoreUnavailable:
            # The person then waits out the resend interval; nothing worse happens.
            logger.warning("could not discard an unsent code", extra={"biz": biz})

    async def verify(self, biz: str, phone: str, code: str) -> bool:
        """Whether ``code`` is the current code of ``(biz, phone)``; it works only once."""
        _, phone = self._validate(biz, phone)
        counter = self._metrics.code_verify_total
        if not self._code_format.fullmatch(code):
            # Cannot be right; not worth a try against the stored code.
            counter.labels(biz, "wrong").inc()
            return False
        try:
            outcome = await self._store.check(biz, phone, self._digest(biz, phone, code))
        except CodeStoreUnavailable as exc:
            counter.labels(biz, "error").inc()
            raise CodeUnavailable(
                CodeReason.STORE_UNAVAILABLE, "verification codes are unavailable, retry later"
            ) from exc
        counter.labels(biz, outcome.value).inc()
        if outcome is VerifyOutcome.TOO_MANY:
            raise CodeResourceExhausted(
                CodeReason.VERIFY_TOO_MANY, "too many wrong tries; ask for a new code"
            )
        return outcome is VerifyOutcome.OK
