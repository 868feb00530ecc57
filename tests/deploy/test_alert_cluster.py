"""Two Alertmanagers in one gossip cluster, as deploy/k8s/base/alerting runs them.

Both run ``deploy/alertmanager/alertmanager.yml`` (receivers swapped for this test's
webhooks, as in :mod:`tests.deploy.test_alert_delivery`) and know each other as
``--cluster.peer``. Checked: they form a cluster of two, a silence made on one is kept by
the other (shared state), and with one stopped the other still delivers what Prometheus
sends it — the failure the second replica is there for.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from devstack.infra import ManagedProcess, free_port, start_all, stop_all
from tests.deploy.test_alert_delivery import (
    Receiver,
    _alertmanager_config,
    _delivered,
    _poll,
    _post_alerts,
    _ready,
    serving_webhooks,
)


@dataclass
class Cluster:
    """The two replicas (URL and process each) and what the webhooks received."""

    urls: list[str]
    processes: list[ManagedProcess]
    receiver: Receiver


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two clustered Alertmanagers and a webhook server, until the module's tests end."""
    binary = shutil.which("prometheus-alertmanager")
    assert binary, "apt-get install prometheus-alertmanager (make tools)"
    work = tmp_path_factory.mktemp("alert-cluster")
    receiver = Receiver()
    with serving_webhooks(receiver) as webhook:
        (work / "config").mkdir()
        config = _alertmanager_config(work / "config", webhook)
        web = [free_port(), free_port()]
        gossip = [free_port(), free_port()]
        processes = []
        for i in range(2):
            (work / f"am-{i}").mkdir()
            peers = [f"--cluster.peer=127.0.0.1:{port}" for port in gossip]
            processes.append(
                ManagedProcess(
                    name=f"alertmanager-{i}",
                    argv=[
                        binary,
                        f"--config.file={config}",
                        f"--storage.path={work / f'am-{i}' / 'data'}",
                        f"--web.listen-address=127.0.0.1:{web[i]}",
                        f"--cluster.listen-address=127.0.0.1:{gossip[i]}",
                        f"--cluster.advertise-address=127.0.0.1:{gossip[i]}",
                        *peers,
                        "--log.level=warn",
                    ],
                    log_path=work / f"alertmanager-{i}.log",
                    ready=_ready(f"http://127.0.0.1:{web[i]}/-/ready"),
                )
            )
        try:
            start_all(processes, timeout=90)
            yield Cluster([f"http://127.0.0.1:{port}" for port in web], processes, receiver)
        finally:
            stop_all(processes)


def _peers_seen(url: str) -> Callable[[], int | None]:
    def count() -> int | None:
        peers = _get(f"{url}/api/v2/status")["cluster"].get("peers") or []
        return len(peers) if len(peers) == 2 else None

    return count


def test_the_replicas_form_one_cluster_and_share_silences(cluster: Cluster) -> None:
    first, second = cluster.urls
    for url in cluster.urls:
        assert _poll(f"a cluster of two seen by {url}", _peers_seen(url)) == 2
    silence = {
        "matchers": [{"name": "alertname", "value": "WebookSilencedInTest", "isRegex": False}],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2100-01-01T00:00:00Z",
        "createdBy": "tests",
        "comment": "made on the first replica",
    }
    request = urllib.request.Request(
        f"{first}/api/v2/silences",
        data=json.dumps(silence).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        made = json.load(answer)["silenceID"]

    def on_second() -> bool | None:
        return True if any(s["id"] == made for s in _get(f"{second}/api/v2/silences")) else None

    assert _poll("the silence gossiped to the second replica", on_second)


def test_one_replica_down_the_other_still_delivers(cluster: Cluster) -> None:
    cluster.processes[0].stop()
    name = "WebookDeliveredByTheSurvivor"
    # Prometheus sends to every replica; the stopped one refuses, the other takes it.
    _post_alerts(cluster.urls[1], [{"labels": {"alertname": name, "severity": "ticket"}}])
    found = _poll(f"{name} at /ticket", _delivered(cluster.receiver, "/ticket", name))
    assert found.body["receiver"] == "ticket"
