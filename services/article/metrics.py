"""Metrics of the article service (one set per process).

- ``webook_article_reads_total{result}``: reads recorded for the read counter, by what
  became of their batch (``sent``: handed to the event producer; ``dropped``: the
  producer's buffer refused the batch, e.g. during a long broker outage). The producer's
  own metrics count records, and a record holds a window of reads: this counts the reads.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

READS: Final = Counter(
    "webook_article_reads_total",
    "Reads recorded for the read counter, by what became of their batch.",
    ["result"],
)
READS_SENT: Final = READS.labels("sent")
READS_DROPPED: Final = READS.labels("dropped")
