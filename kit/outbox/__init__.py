"""A transactional outbox: events recorded with the change that causes them, then relayed.

An event handed to the buffered producer after a commit is lost if the process dies in
between. With the outbox, a service writes the event as a row of its own database inside
the same transaction as the change (:meth:`Outbox.add`): both commit or neither does. An
:class:`OutboxRelay` running in the service's processes publishes the rows in id order
(order kept per key), retries failures with back-off, and shares the work between replicas
with leases. Delivery is at least once; consumers dedupe (``docs/events.md``).

- :func:`outbox_model`: the outbox table in a service's metadata;
  :func:`~kit.outbox.migration.create_outbox_table_v1` creates it in a revision;
- :class:`Outbox`: ``add(session, topic, key, payload, headers=None)`` and
  ``bound(session)`` (an ``EventProducer.publish``-shaped sink);
- :class:`OutboxRelay` / :class:`RelayConfig`: the runner component that publishes;
- :class:`KafkaOutboxPublisher`: the publisher on aiokafka, waiting for the broker's ack.
- :class:`~kit.outbox.settings.OutboxRelaySettings`: the relay settings mixin of a service.

Usage: ``docs/persistence.md`` ("Outbox"). Metrics: :mod:`kit.outbox.metrics`.
"""

from kit.outbox.kafka import KafkaOutboxPublisher
from kit.outbox.outbox import Outbox, OutboxSink, UnknownTopic
from kit.outbox.relay import OutboxPublisher, OutboxRecord, OutboxRelay, RelayConfig
from kit.outbox.table import OutboxRow, outbox_model

__all__ = [
    "KafkaOutboxPublisher",
    "Outbox",
    "OutboxPublisher",
    "OutboxRecord",
    "OutboxRelay",
    "OutboxRow",
    "OutboxSink",
    "RelayConfig",
    "UnknownTopic",
    "outbox_model",
]
