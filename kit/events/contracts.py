"""Kafka topics as the protos declare them.

A topic is declared once, as a value of a ``Topic`` enum in an events proto carrying the
``(webook.contracts.v1.topic)`` option: its name on the broker and its payload message
(``protos/webook/events/v1/events.proto``). Producers and consumers get the name with
:func:`topic_name` instead of writing it, so the service that writes a topic and the ones
that read it cannot disagree, and none of them imports another. A value without the option,
or naming a payload the package lacks, fails at import.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, EnumDescriptor, EnumValueDescriptor

from kit.errors import ProtoEnum
from webook.contracts.v1 import contracts_pb2


@dataclass(frozen=True, slots=True)
class DeclaredTopic:
    """A topic as its enum value declares it."""

    name: str
    """The topic's name on the broker."""
    payload: Descriptor
    """The message every record carries."""


class UndeclaredTopic(ValueError):
    """An enum value that declares no usable topic."""


def declared_topic(topics: ProtoEnum, value: int) -> DeclaredTopic:
    """The topic that ``value`` of the ``topics`` enum declares.

    Raises :class:`UndeclaredTopic` when ``value`` is not in the enum, carries no
    ``(webook.contracts.v1.topic)`` option (the UNSPECIFIED zero), or names a payload that
    is not a message of the enum's package.
    """
    enum = topics.DESCRIPTOR
    enum_value = enum.values_by_number.get(value)
    if enum_value is None:
        raise UndeclaredTopic(f"{enum.full_name} has no value {value}")
    return _declared(enum, enum_value)


def topic_name(topics: ProtoEnum, value: int) -> str:
    """The broker name of the topic ``value`` of ``topics`` declares (:func:`declared_topic`)."""
    return declared_topic(topics, value).name


def declared_topics(topics: ProtoEnum) -> tuple[DeclaredTopic, ...]:
    """Every topic the enum declares, in value order (the UNSPECIFIED zero left out)."""
    enum = topics.DESCRIPTOR
    return tuple(
        _declared(enum, enum_value)
        for enum_value in sorted(enum.values, key=lambda v: v.number)
        if enum_value.number != 0
    )


def _declared(enum: EnumDescriptor, enum_value: EnumValueDescriptor) -> DeclaredTopic:
    options = enum_value.GetOptions()
    if not options.HasExtension(contracts_pb2.topic):
        raise UndeclaredTopic(f"{enum.full_name}.{enum_value.name} declares no topic")
    declared = options.Extensions[contracts_pb2.topic]
    if not declared.name:
        raise UndeclaredTopic(f"{enum.full_name}.{enum_value.name} declares no topic name")
    payload_name = f"{enum.file.package}.{declared.payload}"
    try:
        payload = enum.file.pool.FindMessageTypeByName(payload_name)
    except KeyError:
        raise UndeclaredTopic(
            f"{enum.full_name}.{enum_value.name}: no message {payload_name!r}"
        ) from None
    return DeclaredTopic(declared.name, payload)
