"""Plain domain types of the sms service: phones, callers, send records, code rules.

A phone is keyed by its E.164 form (:func:`canonical_phone`): ``13900000003`` and
``+8613900000003`` are one phone for resend limits, tries, stored codes and records.

Nothing here knows about SQL, Redis, protobuf or gRPC (tests/test_architecture.py checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from kit.phone import DEFAULT_REGION, check_country, normalize_phone


@dataclass(frozen=True)
class PhoneRules:
    """Which numbers the service sends to: read in ``default_region`` when written without
    ``+``, and only in ``allowed_countries`` (ISO 3166-1 alpha-2)."""

    allowed_countries: frozenset[str] = frozenset({"CN"})
    default_region: str = DEFAULT_REGION


def canonical_phone(raw: str, rules: PhoneRules) -> str:
    """The E.164 form of ``raw``, the one key of a phone everywhere in the service.

    Raises:
        kit.phone.InvalidPhoneNumber: not a valid mobile number.
        kit.phone.CountryNotAllowed: a valid number outside ``rules.allowed_countries``.
    """
    e164 = normalize_phone(raw, default_region=rules.default_region)
    check_country(e164, rules.allowed_countries)
    return e164


def to_e164(phone: str) -> str:
    """``13800138000`` → ``+8613800138000``; E.164 numbers are returned unchanged.

    New records hold E.164 numbers only; records queued before numbers were normalised may
    still hold 11-digit mainland numbers, which vendors needing E.164 pass through this.
    """
    return phone if phone.startswith("+") else f"+86{phone}"


def mask_phone(phone: str) -> str:
    """The form of a number fit for logs and admin views: ``+86138****5678``, ``138****5678``."""
    if phone.startswith("+86") and len(phone) > 11:
        return "+86" + mask_phone(phone[3:])
    if len(phone) < 8:
        return "****" + phone[-2:]
    return f"{phone[:3]}****{phone[-4:]}"


def mask_phones(phones: Sequence[str]) -> list[str]:
    """:func:`mask_phone` applied to each number."""
    return [mask_phone(p) for p in phones]


class SendStatus(StrEnum):
    """Life cycle of a send record.

    ``sending`` rows are claimed by one instance until ``claim_until``; a claim that expired
    (its owner crashed) makes the row deliverable again.
    """

    WAITING = "waiting"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        """Whether the record will not change any more."""
        return self in (SendStatus.SENT, SendStatus.FAILED)


@dataclass(frozen=True)
class Caller:
    """An authenticated user of the SMS platform.

    ``templates`` holds the template ids it may send (``*`` allows all); an admin caller may
    list every caller's send records.
    """

    name: str
    templates: frozenset[str]
    admin: bool = False

    def may_send(self, tpl_id: str) -> bool:
        """Whether this caller may send template ``tpl_id``."""
        return "*" in self.templates or tpl_id in self.templates


@dataclass(frozen=True)
class SendCommand:
    """A request to send one templated message to some numbers."""

    tpl_id: str
    args: tuple[str, ...]
    numbers: tuple[str, ...]
    idempotency_key: str = ""
    # 0: a queued message never expires.
    valid_for_s: int = 0


@dataclass(frozen=True)
class SendOutcome:
    """What a send answered: its record and whether it went out now or was queued."""

    record_id: int
    status: SendStatus
    provider: str = ""


@dataclass(frozen=True)
class NewSendRecord:
    """A record about to be stored, already claimed by the instance that sends it."""

    caller: str
    tpl_id: str
    args: tuple[str, ...]
    numbers: tuple[str, ...]
    idempotency_key: str
    claimed_by: str
    claim_until_ms: int
    expire_at_ms: int
    now_ms: int


@dataclass(frozen=True)
class SendRecord:
    """A stored send. ``args`` is emptied once the record is terminal (it may hold a code)."""

    id: int
    caller: str
    tpl_id: str
    args: tuple[str, ...]
    numbers: tuple[str, ...]
    idempotency_key: str
    status: SendStatus
    provider: str
    attempts: int
    last_error: str
    latency_ms: int
    claimed_by: str
    claim_until_ms: int
    next_attempt_at_ms: int
    expire_at_ms: int
    ctime_ms: int
    utime_ms: int


@dataclass(frozen=True)
class DeliveryResult:
    """How one delivery attempt of a claimed record ended, to be written back."""

    status: SendStatus
    provider: str
    attempts: int
    last_error: str
    latency_ms: int
    next_attempt_at_ms: int
    now_ms: int


@dataclass(frozen=True)
class RecordQuery:
    """Filters of the admin view; empty/zero fields match everything."""

    limit: int = 20
    cursor: int = 0
    caller: str = ""
    phone: str = ""
    tpl_id: str = ""
    status: SendStatus | None = None
    from_ms: int = 0
    to_ms: int = 0


@dataclass(frozen=True)
class RecordPage:
    """One page of send records, newest first; ``next_cursor`` 0 means the end."""

    records: list[SendRecord] = field(default_factory=list)
    next_cursor: int = 0


@dataclass(frozen=True)
class ActiveRecords:
    """The records ``waiting`` or ``sending``: how many of each, and when (epoch ms) the
    oldest of them was stored (None when there is none)."""

    counts: dict[SendStatus, int] = field(default_factory=dict)
    oldest_ms: int | None = None


@dataclass(frozen=True)
class CodeRules:
    """Verification-code rules: one code per resend interval, limited life and tries."""

    ttl_s: float = 600.0
    resend_interval_s: float = 60.0
    max_attempts: int = 3
    digits: int = 6


class VerifyOutcome(StrEnum):
    """What checking a code against the stored one found."""

    OK = "ok"
    # Wrong code, or none stored (never sent, expired, already used).
    WRONG = "wrong"
    # The code used up its tries; even the right code is refused now.
    TOO_MANY = "too_many"
