"""In-memory stand-ins for the reward service's peers (:mod:`services.reward.peers`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.reward.domain import PaymentStatus, PaymentUpdate
from services.reward.errors import Reason, RewardUnavailable


@dataclass
class FakeArticles:
    """Published articles by id → author; ``down`` makes every question fail."""

    published: dict[int, int] = field(default_factory=dict)
    down: bool = False

    async def published_author(self, article_id: int) -> int | None:
        """The author of ``article_id`` if published here."""
        if self.down:
            raise RewardUnavailable(Reason.UNAVAILABLE, "article service down (fake)")
        return self.published.get(article_id)


@dataclass
class FakePayments:
    """Payments by business key, idempotent like the real one; ``down`` fails every call."""

    payments: dict[str, PaymentUpdate] = field(default_factory=dict)
    prepaid: list[tuple[str, int, str]] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    down: bool = False

    @staticmethod
    def code_url(biz_trade_no: str) -> str:
        """The code URL the fake gives ``biz_trade_no``."""
        return f"weixin://wxpay/bizpayurl?pr={biz_trade_no}"

    async def prepay(self, biz_trade_no: str, amount_fen: int, description: str) -> str:
        """Record the order (once per key) and answer its code URL."""
        if self.down:
            raise RewardUnavailable(Reason.UNAVAILABLE, "payment service down (fake)")
        self.prepaid.append((biz_trade_no, amount_fen, description))
        self.payments.setdefault(
            biz_trade_no, PaymentUpdate(biz_trade_no, amount_fen, PaymentStatus.INIT, 0)
        )
        return self.code_url(biz_trade_no)

    async def lookup(self, biz_trade_no: str) -> PaymentUpdate | None:
        """The payment keyed ``biz_trade_no``."""
        self.lookups.append(biz_trade_no)
        if self.down:
            raise RewardUnavailable(Reason.UNAVAILABLE, "payment service down (fake)")
        return self.payments.get(biz_trade_no)

    def settle(self, biz_trade_no: str, status: PaymentStatus, at_ms: int = 1) -> PaymentUpdate:
        """Change a payment's status as WeChat Pay's notification would; the update."""
        current = self.payments[biz_trade_no]
        update = PaymentUpdate(biz_trade_no, current.amount_fen, status, at_ms)
        self.payments[biz_trade_no] = update
        return update
