"""Metrics of the account service (one set per process).

- ``webook_account_reward_credits_total{outcome}``: paid-reward events applied (``credited``)
  or found already credited (``duplicate``);
- ``webook_account_bad_events_total{reason}``: paid-reward events skipped because they
  cannot be credited (``undecodable``, ``missing_rid``, ``missing_author``,
  ``non_positive_amount``, ``amount_too_large``);
- ``webook_account_reconciliation_difference_fen``: the last reconciliation's
  ``paid - credited`` (the alert: not zero);
- ``webook_account_reconciliations_total{outcome}``: ``balanced``, ``mismatch``,
  ``stale_token``, ``failed``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REWARD_CREDITS = Counter(
    "webook_account_reward_credits_total",
    "Paid-reward events credited, or found already credited (duplicate deliveries).",
    ["outcome"],
)
BAD_EVENTS = Counter(
    "webook_account_bad_events_total",
    "Paid-reward events skipped because they cannot be credited, by reason.",
    ["reason"],
)
RECONCILIATION_DIFFERENCE = Gauge(
    "webook_account_reconciliation_difference_fen",
    "The last reconciliation's difference: payments succeeded minus rewards credited (fen).",
)
RECONCILIATIONS = Counter(
    "webook_account_reconciliations_total",
    "Reconciliation runs by outcome.",
    ["outcome"],
)
# Every series exported at 0 from the start (a rate needs the series to exist).
for _outcome in ("credited", "duplicate"):
    REWARD_CREDITS.labels(_outcome)
for _outcome in ("balanced", "mismatch", "stale_token", "failed"):
    RECONCILIATIONS.labels(_outcome)
# "undecodable" (services.account.events) and the reasons of domain.check_reward.
for _reason in (
    "undecodable",
    "missing_rid",
    "missing_author",
    "non_positive_amount",
    "amount_too_large",
):
    BAD_EVENTS.labels(_reason)
