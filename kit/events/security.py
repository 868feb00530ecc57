"""How the Kafka clients authenticate to the brokers: protocol, SASL login and trusted CA.

One :class:`KafkaSecurity` is shared by a process's producer, consumers and topic admin
(:class:`~kit.events.producer.ProducerConfig`, :class:`~kit.events.consumer.ConsumerConfig`,
:class:`~kit.events.topics.TopicAdmin`), which hand :meth:`KafkaSecurity.client_options` to
``aiokafka``. Production runs ``SASL_SSL`` with SCRAM-SHA-512 (each service its own broker
user); the local broker offers neither, so the default is ``PLAINTEXT``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """The security options of every Kafka client of a process.

    Attributes:
        protocol: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
        sasl_mechanism: SASL mechanism (``SCRAM-SHA-512`` in production).
        username / password: the SASL login; required with a ``SASL_*`` protocol.
        ca_file: PEM file of the CA the brokers' certificates are checked against under
            ``SSL``/``SASL_SSL``; empty: the system's trust store.
    """

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    username: str = ""
    password: str = field(default="", repr=False)
    ca_file: str = ""

    def __post_init__(self) -> None:
        if self.protocol.startswith("SASL_") and not (self.username and self.password):
            raise ValueError(
                f"Kafka security protocol {self.protocol} needs a username and password"
            )

    @property
    def uses_tls(self) -> bool:
        """Whether connections to the brokers are encrypted."""
        return self.protocol in ("SSL", "SASL_SSL")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and the admin client.

        A fresh SSL context each call: the CA file is read when a client is created, so a
        rotated CA is picked up by the next reconnection.
        """
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = create_ssl_context(cafile=self.ca_file or None)
        if self.protocol.startswith("SASL_"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.password
        return options
