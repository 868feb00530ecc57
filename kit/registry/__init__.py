"""Service registry: servers announce themselves, clients discover them.

The port is :class:`Registry` / :class:`Discovery` (``port.py``); adapters are
:class:`EtcdRegistry` (leases, keepalive, list + watch) and :class:`InMemoryRegistry`;
:class:`StaticDiscovery` serves a fixed address list. See ``docs/registry-and-balancing.md``.
"""

from kit.registry.errors import InvalidInstanceError, RegistryError
from kit.registry.etcd import EtcdDiscovery, EtcdRegistry, EtcdRegistryConfig
from kit.registry.instances import InstanceSet
from kit.registry.memory import InMemoryDiscovery, InMemoryRegistry, StaticDiscovery
from kit.registry.model import (
    DEFAULT_PREFIX,
    ServiceInstance,
    instance_key,
    new_instance_id,
    service_prefix,
)
from kit.registry.port import Discovery, Instances, InstancesListener, Registry

__all__ = [
    "DEFAULT_PREFIX",
    "Discovery",
    "EtcdDiscovery",
    "EtcdRegistry",
    "EtcdRegistryConfig",
    "InMemoryDiscovery",
    "InMemoryRegistry",
    "InstanceSet",
    "Instances",
    "InstancesListener",
    "InvalidInstanceError",
    "Registry",
    "RegistryError",
    "ServiceInstance",
    "StaticDiscovery",
    "instance_key",
    "new_instance_id",
    "service_prefix",
]
