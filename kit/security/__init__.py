"""Workload identity inside the network: who a gRPC peer is, and proof of it.

Every process has an identity, a workload name (``gateway``, ``user``, ``article``, ...),
carried by its X.509 certificate as the URI SAN ``spiffe://webook/<name>`` and the DNS SAN
``<name>.webook.internal``. Servers require a client certificate and read the caller's name
from it (:func:`~kit.security.identity.peer_identity`); clients check that the server's
certificate names the service they meant to call. See docs/security.md.
"""
