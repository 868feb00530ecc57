"""Use cases of the SMS platform: send (synchronously, or queued), deliver the queue, list.

Every send is first stored as a record already claimed by this instance (status ``sending``),
so that a repeated idempotency key finds the first send and a crash mid-send leaves a record
whose claim expires and is delivered by a worker. Then the provider chain (retries, failover,
rate limits, health) is tried:

- accepted → ``sent``;
- the message itself refused → ``failed`` and :class:`~services.sms.errors.SmsRejected`;
- anything else (every provider unhealthy, rate limited, throttled, timing out, failing, or
  the whole pass taking longer than ``send_timeout_s``) → ``waiting``: the send answers
  ``WAITING`` and a worker delivers it later.

Before anything is stored, numbers are normalised to E.164 (duplicates in any spelling count
once), numbers outside the allowed countries are refused, and the send is counted against the
global daily budget (:class:`SendBudget`, one count per number, per UTC day): beyond it sends
are refused, so a flood of sends (SMS pumping, a runaway caller) costs at most one day's
budget. A send refused later (repeated idempotency key, store down) gives its count back; one
the provider refuses does not (it may have been billed).

Workers (:meth:`SmsService.deliver_due`) claim due records one by one with a conditional
update (``waiting`` and due, or ``sending`` with an expired claim), so several instances never
hold the same record, and write the outcome back only while they still hold the claim.
Failed deliveries are retried with exponential backoff up to ``max_attempts`` in all, then
``failed``; a record past its ``expire_at`` is ``failed`` without being sent. Arguments are
wiped from records that reached a terminal status (they may hold a code).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from kit.phone import CountryNotAllowed, InvalidPhoneNumber, normalize_phone
from kit.sql import UnitOfWork as SqlUnitOfWorkProtocol
from services.sms.domain import (
    ActiveRecords,
    Caller,
    DeliveryResult,
    NewSendRecord,
    PhoneRules,
    RecordPage,
    RecordQuery,
    SendCommand,
    SendOutcome,
    SendRecord,
    SendStatus,
    canonical_phone,
    mask_phone,
    mask_phones,
)
from services.sms.errors import (
    SmsInvalidArgument,
    SmsPermissionDenied,
    SmsReason,
    SmsRejected,
    SmsUnavailable,
)
from services.sms.metrics import SmsMetrics
from services.sms.providers.port import (
    NoProviderAvailable,
    ProviderError,
    ProviderRejected,
    ProviderResult,
    ProviderTimeout,
    SmsProvider,
)

logger = logging.getLogger(__name__)

_TEMPLATE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY = re.compile(r"[\x21-\x7e]{1,128}")
MAX_ARGS = 16
MAX_ARG_LENGTH = 256
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
MAX_ERROR_LENGTH = 500


class StoreUnavailable(Exception):
    """The record store cannot be reached."""


class DuplicateIdempotencyKey(Exception):
    """A record with the same caller and idempotency key exists."""


class BudgetUnavailable(Exception):
    """The daily budget's counter cannot be reached."""


class SendBudget(Protocol):
    """The global daily number of messages (one per number), shared by every instance."""

    @property
    def limit(self) -> int:
        """Messages allowed per UTC day."""

    async def take(self, day: str, count: int) -> tuple[bool, int]:
        """Count ``count`` messages on ``day`` unless that would pass the limit.

        Returns whether they were counted and the day's count after the call; raises
        :class:`BudgetUnavailable` if the counter cannot be reached.
        """

    async def give_back(self, day: str, count: int) -> None:
        """Uncount ``count`` messages of ``day`` that were not sent after all."""


class SendRecordRepository(Protocol):
    """Send records, inside one unit of work."""

    async def add(self, record: NewSendRecord) -> int:
        """Store a new record; raise :class:`DuplicateIdempotencyKey` on a repeated key."""

    async def get(self, record_id: int) -> SendRecord | None:
        """One record by id."""

    async def get_by_idempotency_key(self, caller: str, key: str) -> SendRecord | None:
        """The record a caller stored with ``key``."""

    async def due(self, now_ms: int, limit: int) -> list[int]:
        """Ids of records a worker may claim now, oldest first."""

    async def claim(self, record_id: int, claimed_by: str, now_ms: int, until_ms: int) -> bool:
        """Claim a due record for ``claimed_by``; ``False`` if it is not (any more) claimable."""

    async def finish(self, record_id: int, claimed_by: str, result: DeliveryResult) -> bool:
        """Write an attempt's outcome if ``claimed_by`` still holds the claim."""

    async def page(self, query: RecordQuery) -> RecordPage:
        """Records matching ``query``, newest first."""

    async def active(self) -> ActiveRecords:
        """How many records are ``waiting`` and ``sending``, and the oldest one's age."""


class UnitOfWork(SqlUnitOfWorkProtocol, Protocol):
    """One transaction over the records; rolled back unless committed."""

    @property
    def records(self) -> SendRecordRepository:
        """The records of this unit of work."""


@dataclass(frozen=True)
class DeliveryPolicy:
    """Limits of sending and of asynchronous delivery."""

    max_numbers: int = 100
    send_timeout_s: float = 5.0
    claim_ttl_s: float = 120.0
    max_attempts: int = 5
    backoff_base_s: float = 5.0
    backoff_max_s: float = 300.0


class SmsService:
    """The SMS use cases (see the module docstring)."""

    def __init__(
        self,
        provider: SmsProvider,
        could_send: Callable[[], bool],
        unit_of_work: Callable[[], UnitOfWork],
        policy: DeliveryPolicy,
        metrics: SmsMetrics,
        *,
        instance_id: str,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        phones: PhoneRules | None = None,
        budget: SendBudget | None = None,
    ) -> None:
        """``budget`` ``None`` sends without a daily limit (tools and tests)."""
        self._provider = provider
        self._could_send = could_send
        self._uow = unit_of_work
        self._policy = policy
        self._metrics = metrics
        self._instance = instance_id
        self._clock = clock
        self._rng = rng or random.Random()
        self._phones = phones or PhoneRules()
        self._budget = budget

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _new_claim(self) -> str:
        return f"{self._instance}/{uuid.uuid4().hex[:12]}"

    def _validate(self, command: SendCommand) -> SendCommand:
        def invalid(reason: SmsReason, message: str, field: str) -> SmsInvalidArgument:
            return SmsInvalidArgument(reason, message, metadata={"field": field})

        if not _TEMPLATE.fullmatch(command.tpl_id):
            raise invalid(
                SmsReason.INVALID_TEMPLATE,
                "tpl_id must be 1-64 letters, digits, '_', '.' or '-'",
                "tpl_id",
            )
        if len(command.args) > MAX_ARGS or any(len(a) > MAX_ARG_LENGTH for a in command.args):
            raise invalid(
                SmsReason.INVALID_ARGS,
                f"at most {MAX_ARGS} args of at most {MAX_ARG_LENGTH} characters",
                "args",
            )
        if not command.numbers:
            raise invalid(SmsReason.INVALID_PHONE, "at least one number is required", "numbers")
        if len(command.numbers) > self._policy.max_numbers:
            # Checked before parsing, so that a huge list costs nothing.
            raise invalid(
                SmsReason.TOO_MANY_NUMBERS,
                f"at most {self._policy.max_numbers} numbers per send",
                "numbers",
            )
        numbers = tuple(dict.fromkeys(self._canonical(n) for n in command.numbers))
        if command.idempotency_key and not _KEY.fullmatch(command.idempotency_key):
            raise invalid(
                SmsReason.INVALID_IDEMPOTENCY_KEY,
                "idempotency_key must be 1-128 printable ASCII characters",
                "idempotency_key",
            )
        if command.valid_for_s < 0:
            raise invalid(SmsReason.INVALID_ARGS, "valid_for_seconds must be >= 0", "valid_for_s")
        return replace(command, numbers=numbers)

    def _canonical(self, number: str) -> str:
        try:
            return canonical_phone(number, self._phones)
        except CountryNotAllowed as exc:
            raise SmsInvalidArgument(
                SmsReason.COUNTRY_NOT_ALLOWED,
                str(exc),
                metadata={"field": "numbers", "number": mask_phone(number), "country": exc.region},
            ) from exc
        except InvalidPhoneNumber as exc:
            raise SmsInvalidArgument(
                SmsReason.INVALID_PHONE,
                f"invalid number {mask_phone(number)}: {exc}",
                metadata={"field": "numbers", "number": mask_phone(number)},
            ) from exc

    def _day(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).date().isoformat()

    async def _take_budget(self, caller: Caller, command: SendCommand) -> str:
        """Count the send's messages against today's budget; the day they were counted on."""
        day = self._day()
        if self._budget is None:
            return day
        count = len(command.numbers)
        counter = self._metrics.daily_limit_total
        try:
            taken, used = await self._budget.take(day, count)
        except BudgetUnavailable:
            # Like the providers' rate limits: an outage of the counter must not stop
            # verification codes. Codes need Redis anyway, and other callers are trusted.
            counter.labels("unchecked").inc(count)
            logger.error("sms daily limit could not be checked; sending anyway", exc_info=True)
            return day
        self._metrics.daily_used.set(used)
        if taken:
            counter.labels("ok").inc(count)
            return day
        counter.labels("refused").inc(count)
        limit = self._budget.limit
        tomorrow = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
        retry_after = max(1, int(tomorrow.timestamp() - self._clock()))
        logger.error(
            "sms daily limit reached; send refused",
            extra={
                "caller": caller.name,
                "tpl_id": command.tpl_id,
                "numbers": len(command.numbers),
                "daily_limit": limit,
                "used": used,
            },
        )
        raise SmsUnavailable(
            SmsReason.DAILY_LIMIT_REACHED,
            f"the daily limit of {limit} SMS messages is reached; sending resumes at 00:00 UTC",
            metadata={"daily_limit": str(limit), "retry_after_s": str(retry_after)},
        )

    async def _give_back(self, day: str, command: SendCommand) -> None:
        if self._budget is None:
            return
        try:
            await self._budget.give_back(day, len(command.numbers))
            self._metrics.daily_limit_total.labels("returned").inc(len(command.numbers))
        except BudgetUnavailable:
            # The day's budget is short by these few messages; nothing else goes wrong.
            logger.warning("could not give back an unsent send's daily count")

    async def send(self, caller: Caller, command: SendCommand) -> SendOutcome:
        """Send now or queue; a repeated idempotency key answers the first send's record."""
        command = self._validate(command)
        if not caller.may_send(command.tpl_id):
            raise SmsPermissionDenied(
                SmsReason.TEMPLATE_NOT_ALLOWED,
                "this caller may not send this template",
                metadata={"tpl_id": command.tpl_id},
            )
        day = await self._take_budget(caller, command)
        now = self._now_ms()
        claim = self._new_claim()
        new = NewSendRecord(
            caller=caller.name,
            tpl_id=command.tpl_id,
            args=command.args,
            numbers=command.numbers,
            idempotency_key=command.idempotency_key,
            claimed_by=claim,
            claim_until_ms=now + int(self._policy.claim_ttl_s * 1000),
            expire_at_ms=now + command.valid_for_s * 1000 if command.valid_for_s else 0,
            now_ms=now,
        )
        try:
            record_id = await self._store_new(new)
        except DuplicateIdempotencyKey:
            await self._give_back(day, command)
            return await self._existing(caller.name, command.idempotency_key)
        except StoreUnavailable as exc:
            await self._give_back(day, command)
            raise SmsUnavailable(
                SmsReason.UNAVAILABLE, "the SMS store is unavailable, retry later"
            ) from exc
        return await self._deliver(record_id, claim, command, attempts=0, synchronous=True)

    async def _store_new(self, new: NewSendRecord) -> int:
        async with self._uow() as uow:
            record_id = await uow.records.add(new)
            await uow.commit()
        return record_id

    async def _existing(self, caller: str, key: str) -> SendOutcome:
        try:
            async with self._uow() as uow:
                record = await uow.records.get_by_idempotency_key(caller, key)
        except StoreUnavailable as exc:
            raise SmsUnavailable(
                SmsReason.UNAVAILABLE, "the SMS store is unavailable, retry later"
            ) from exc
        if record is None:
            # Lost a race with a rollback of the first insert; the caller may retry.
            raise SmsUnavailable(SmsReason.UNAVAILABLE, "concurrent send, retry later")
        return SendOutcome(record.id, record.status, record.provider)

    def _backoff_ms(self, attempts: int) -> int:
        policy = self._policy
        ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** max(attempts - 1, 0))
        return int(ceiling * self._rng.uniform(0.5, 1.0) * 1000)

    async def _deliver(
        self,
        record_id: int,
        claim: str,
        command: SendCommand,
        *,
        attempts: int,
        synchronous: bool,
    ) -> SendOutcome:
        """One pass through the provider chain for a claimed record; writes the outcome."""
        started = time.monotonic()
        error: ProviderError | None = None
        result: ProviderResult | None = None
        try:
            async with asyncio.timeout(self._policy.send_timeout_s):
                result = await self._provider.send(command.tpl_id, command.args, command.numbers)
        except ProviderError as exc:
            error = exc
        except TimeoutError:
            error = ProviderTimeout(
                "chain", f"no provider answered within {self._policy.send_timeout_s:g}s"
            )
        delivery = self._judge(
            result,
            error,
            attempts=attempts,
            synchronous=synchronous,
            latency_ms=int((time.monotonic() - started) * 1000),
        )
        await self._finish(record_id, claim, delivery)
        status = delivery.status
        self._count_async(status, synchronous=synchronous)
        log = logger.info if status is SendStatus.SENT else logger.warning
        log(
            "sms " + status.value,
            extra={
                "record": record_id,
                "tpl_id": command.tpl_id,
                "numbers": mask_phones(command.numbers),
                "provider": delivery.provider,
                "attempts": delivery.attempts,
                "latency_ms": delivery.latency_ms,
                "error": delivery.last_error or None,
            },
        )
        if synchronous and isinstance(error, ProviderRejected):
            raise SmsRejected(
                SmsReason.REJECTED,
                "the SMS provider refused this message",
                metadata={"record_id": str(record_id)},
            )
        if synchronous and status is SendStatus.FAILED:
            # Only when max_attempts leaves no room for asynchronous delivery.
            raise SmsUnavailable(
                SmsReason.UNAVAILABLE,
                "the message could not be sent",
                metadata={"record_id": str(record_id)},
            )
        return SendOutcome(record_id, status, delivery.provider)

    def _judge(
        self,
        result: ProviderResult | None,
        error: ProviderError | None,
        *,
        attempts: int,
        synchronous: bool,
        latency_ms: int,
    ) -> DeliveryResult:
        """What a pass through the providers means for the record."""
        now = self._now_ms()
        # Nobody tried when every provider was cooling down: not an attempt.
        counted = attempts if isinstance(error, NoProviderAvailable) else attempts + 1
        provider, next_at = "", 0
        if result is not None:
            status, provider = SendStatus.SENT, result.provider
            note = ", ".join(f"refused {mask_phone(n)} {code}" for n, code in result.refused)
        elif isinstance(error, ProviderRejected):
            status, provider, note = SendStatus.FAILED, error.provider, str(error)
        elif counted >= self._policy.max_attempts:
            status, note = SendStatus.FAILED, str(error)
        else:
            status, note = SendStatus.WAITING, str(error)
            next_at = now if synchronous else now + self._backoff_ms(counted)
        return DeliveryResult(
            status=status,
            provider=provider,
            attempts=counted,
            last_error=note[:MAX_ERROR_LENGTH],
            latency_ms=latency_ms,
            next_attempt_at_ms=next_at,
            now_ms=now,
        )

    def _count_async(self, status: SendStatus, *, synchronous: bool) -> None:
        counter = self._metrics.async_total
        if synchronous:
            if status is SendStatus.WAITING:
                counter.labels("queued").inc()
            return
        label = {
            SendStatus.SENT: "delivered",
            SendStatus.WAITING: "retry",
            SendStatus.FAILED: "failed",
        }.get(status)
        if label:
            counter.labels(label).inc()

    async def _finish(self, record_id: int, claim: str, delivery: DeliveryResult) -> None:
        try:
            async with self._uow() as uow:
                held = await uow.records.finish(record_id, claim, delivery)
                await uow.commit()
        except StoreUnavailable:
            # The claim expires and a worker sends again: at-least-once, never lost.
            logger.exception("could not record an sms outcome", extra={"record": record_id})
            return
        if not held:
            logger.warning(
                "sms claim was lost before the outcome was written",
                extra={"record": record_id, "status": delivery.status.value},
            )

    async def deliver_due(self, limit: int, concurrency: int) -> int:
        """Claim and deliver up to ``limit`` due records; the number of records handled."""
        if not self._could_send():
            return 0
        async with self._uow() as uow:
            ids = await uow.records.due(self._now_ms(), limit)
        if not ids:
            return 0
        gate = asyncio.Semaphore(concurrency)

        async def one(record_id: int) -> bool:
            async with gate:
                return await self._deliver_claimed(record_id)

        handled = await asyncio.gather(*(one(i) for i in ids))
        return sum(handled)

    async def _deliver_claimed(self, record_id: int) -> bool:
        now = self._now_ms()
        claim = self._new_claim()
        async with self._uow() as uow:
            claimed = await uow.records.claim(
                record_id, claim, now, now + int(self._policy.claim_ttl_s * 1000)
            )
            record = await uow.records.get(record_id) if claimed else None
            await uow.commit()
        if record is None:
            return False
        if record.expire_at_ms and now >= record.expire_at_ms:
            expired = DeliveryResult(
                status=SendStatus.FAILED,
                provider="",
                attempts=record.attempts,
                last_error="expired before it could be delivered",
                latency_ms=0,
                next_attempt_at_ms=0,
                now_ms=now,
            )
            await self._finish(record_id, claim, expired)
            self._metrics.async_total.labels("expired").inc()
            logger.warning("queued sms expired", extra={"record": record_id})
            return True
        command = SendCommand(record.tpl_id, record.args, record.numbers)
        await self._deliver(record_id, claim, command, attempts=record.attempts, synchronous=False)
        return True

    async def list_records(self, caller: Caller, query: RecordQuery) -> RecordPage:
        """Send records for the admin view; non-admin callers see only their own."""
        if query.limit == 0:
            query = replace(query, limit=DEFAULT_LIMIT)
        phone = ""
        if query.phone:
            try:
                # No country check: records may predate a change of the allowed list.
                phone = normalize_phone(query.phone, default_region=self._phones.default_region)
            except InvalidPhoneNumber:
                phone = ""
        problems = [
            ("limit", not 1 <= query.limit <= MAX_LIMIT),
            ("cursor", query.cursor < 0),
            ("from_ms", query.from_ms < 0),
            ("to_ms", query.to_ms < 0 or (query.to_ms and query.to_ms <= query.from_ms)),
            ("phone", bool(query.phone) and not phone),
        ]
        for field, bad in problems:
            if bad:
                raise SmsInvalidArgument(
                    SmsReason.INVALID_QUERY,
                    f"invalid {field} (limit 1-{MAX_LIMIT}, times and cursor non-negative, "
                    "to_ms after from_ms, phone a valid number)",
                    metadata={"field": field},
                )
        if not caller.admin:
            if query.caller and query.caller != caller.name:
                raise SmsPermissionDenied(
                    SmsReason.RECORDS_NOT_ALLOWED, "only admin callers see other callers' records"
                )
            query = replace(query, caller=caller.name)
        query = replace(query, phone=phone)
        try:
            async with self._uow() as uow:
                return await uow.records.page(query)
        except StoreUnavailable as exc:
            raise SmsUnavailable(
                SmsReason.UNAVAILABLE, "the SMS store is unavailable, retry later"
            ) from exc

    async def refresh_queue_gauge(self) -> None:
        """Update ``webook_sms_async_queue`` and ``webook_sms_async_oldest_seconds`` from the
        store."""
        async with self._uow() as uow:
            active = await uow.records.active()
        for status in (SendStatus.WAITING, SendStatus.SENDING):
            self._metrics.async_queue.labels(status.value).set(active.counts.get(status, 0))
        oldest_ms = active.oldest_ms
        age_s = 0.0 if oldest_ms is None else max(0.0, (self._now_ms() - oldest_ms) / 1000)
        self._metrics.async_oldest_seconds.set(age_s)
