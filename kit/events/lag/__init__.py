"""Consumer-group lag read from the brokers: ``python -m kit.events.lag``.

Each :class:`~kit.events.BatchConsumer` reports the lag of the partitions it owns
(``webook_kafka_consumer_lag``); when every consumer of a group is down that series is gone,
just when the lag matters. The lag exporter is a process of its own that reads every
group's committed offsets and the partitions' end offsets from the brokers
(:class:`KafkaOffsetReader`), and exports them (:class:`LagExporter`, metrics in
:mod:`kit.events.lag.metrics`) whether or not a consumer runs. The process:
:mod:`kit.events.lag.__main__`; its settings: :class:`LagExporterSettings`. How lag is
measured and alerted on: ``docs/events.md``, "Lag".
"""

from kit.events.lag.exporter import (
    KafkaOffsetReader,
    LagExporter,
    OffsetReader,
    PartitionLag,
    measure_lag,
)
from kit.events.lag.settings import LagExporterSettings

__all__ = [
    "KafkaOffsetReader",
    "LagExporter",
    "LagExporterSettings",
    "OffsetReader",
    "PartitionLag",
    "measure_lag",
]
