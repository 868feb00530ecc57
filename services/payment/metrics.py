"""Metrics of the payment service (one set per process).

- ``webook_payment_orders_total{status}``: orders that entered each status (``INIT`` when
  created): their rates are the orders by status;
- ``webook_payment_notifications_total{outcome}``: WeChat Pay notifications by outcome
  (``applied``, ``duplicate``: already applied or not a forward move, ``pending``: a state
  that is not final, ``bad_signature``, ``malformed``, ``unknown_order``,
  ``amount_mismatch``) — alert on ``bad_signature`` and ``amount_mismatch``;
- ``webook_payment_reconciliation_total{result}``: orders the reconciliation looked up, by
  what it did (``completed``, ``closed``, ``unchanged``, ``failed``);
- ``webook_payment_wechatpay_seconds{operation,outcome}``: calls to WeChat Pay
  (``prepay``, ``query``, ``close``; ``ok``, ``refused``, ``error``).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ORDERS = Counter(
    "webook_payment_orders_total", "Payment orders that entered each status.", ["status"]
)
NOTIFICATIONS = Counter(
    "webook_payment_notifications_total", "WeChat Pay notifications by outcome.", ["outcome"]
)
RECONCILIATION = Counter(
    "webook_payment_reconciliation_total",
    "Orders the reconciliation looked up at WeChat Pay, by what it did.",
    ["result"],
)
WECHAT_CALLS = Histogram(
    "webook_payment_wechatpay_seconds",
    "Calls to WeChat Pay by operation and outcome.",
    ["operation", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Every series exported at 0 from the start (a rate needs the series to exist).
for _status in ("INIT", "SUCCESS", "FAILED", "REFUND"):
    ORDERS.labels(_status)
for _outcome in (
    "applied",
    "duplicate",
    "pending",
    "bad_signature",
    "malformed",
    "unknown_order",
    "amount_mismatch",
):
    NOTIFICATIONS.labels(_outcome)
for _result in ("completed", "closed", "unchanged", "failed"):
    RECONCILIATION.labels(_result)
