"""A second gateway in front of the e2e stack, and ``webookctl`` as the config operator.

The live-configuration tests change the gateway's settings in etcd. Each runs its own
gateway following a configuration environment of its own, so that what it writes reaches
that gateway alone and never the stack's shared one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from devstack.credentials import SecureEtcd
from devstack.infra import ManagedProcess, free_port
from devstack.suite import gateway_process
from tests.e2e.conftest import RunningStack
from webookctl.tests.run import Result, ctl_env, run_process


@contextmanager
def extra_gateway(
    stack: RunningStack, name: str, environment: str, edge: Mapping[str, Any]
) -> Iterator[str]:
    """Run a gateway named ``name`` following ``environment``'s settings, with the edge
    settings ``edge``; yields its base URL and stops it after."""
    infra = dataclasses.replace(
        stack.infra,
        extra_env={
            **stack.infra.extra_env,
            "WEBOOK_GATEWAY_CONFIG_ENVIRONMENT": environment,
            "WEBOOK_GATEWAY_EDGE": json.dumps(edge),
        },
    )
    port = free_port()
    proc: ManagedProcess = gateway_process(infra, port, {}, stack.log_dir)
    proc.name = name
    proc.log_path = stack.log_dir / f"{name}.log"
    proc.start(timeout=60)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


async def ctl_as_operator(e2e_etcd: SecureEtcd, environment: str, *argv: str) -> Result:
    """``webookctl --json <argv>`` in ``environment``, logged in as ``config-operator``."""
    operator = e2e_etcd.credentials.config_operator
    env = ctl_env(
        env=environment,
        etcd_endpoints=e2e_etcd.endpoint,
        etcd_username=operator.username,
        etcd_password=operator.password,
    )
    return await run_process("--json", *argv, env=env)
