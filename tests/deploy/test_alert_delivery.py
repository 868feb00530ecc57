"""Alerts reach someone: a real Prometheus sends alerts of ``alerts.yml`` to a real Alertmanager
running ``deploy/alertmanager/alertmanager.yml``, which delivers them to webhooks served here.

- Prometheus runs ``deploy/prometheus/prometheus.yml`` (its ``alerting`` block finds the
  Alertmanager in ``alertmanagers/*.json``) with two rules copied from ``alerts.yml``,
  their ``for`` shortened: ``WebookNoLiveInstance`` (page) on a target nobody serves, and
  ``WebookCacheInvalidationFeedDown`` (ticket) on a ``/metrics`` endpoint served here.
- Alertmanager runs our routing and inhibition with short group waits; only the receivers'
  addresses are swapped for this test's webhooks (the e-mail receiver is dropped: no SMTP
  server here), and their bearer tokens are files, as in the cluster.
- A page delivers to the pager webhook with its token, a ticket to the ticket webhook; a
  ticket of an alert that also pages is inhibited; the always-firing ``WebookWatchdog``
  reaches the dead man's switch's webhook and nothing else.

Everything runs on free ports and is stopped at the end; it takes seconds.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from devstack.infra import ManagedProcess, free_port, start_all, stop_all
from tests.deploy.observability_files import PROMETHEUS_DIR, ROOT
from tests.deploy.stack import prometheus_binary

T = TypeVar("T")
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
PAGE_ALERT = "WebookNoLiveInstance"
TICKET_ALERT = "WebookCacheInvalidationFeedDown"
# A loaded 2-core machine may be slow to start two servers and evaluate; nothing waits this
# long when it works (a few seconds).
DEADLINE_S = 90.0
TOKENS = {
    "page": "pager-token-of-the-test",
    "ticket": "ticket-token-of-the-test",
    "heartbeat": "heartbeat-token-of-the-test",
}
WATCHDOG = "WebookWatchdog"
# What the in-test endpoint exposes: a cache whose invalidation feed is down.
FIXTURE_METRICS = (
    "# HELP webook_cache_invalidation_feed_up 1 while the feed is confirmed fresh, else 0.\n"
    "# TYPE webook_cache_invalidation_feed_up gauge\n"
    'webook_cache_invalidation_feed_up{feed="sessions"} 0\n'
)


@dataclass
class Notification:
    """One webhook call Alertmanager made."""

    path: str
    authorization: str
    body: dict[str, Any]


@dataclass
class Receiver:
    """What the in-test HTTP server received; it also serves the fixture's ``/metrics``."""

    notifications: list[Notification] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, notification: Notification) -> None:
        """Keep one webhook call."""
        with self.lock:
            self.notifications.append(notification)

    def received(self) -> list[Notification]:
        """The calls so far."""
        with self.lock:
            return list(self.notifications)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = FIXTURE_METRICS.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length))
            receiver.record(Notification(self.path, self.headers.get("Authorization", ""), payload))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: pytest shows failures, not every request."""

    return Handler


@dataclass
class Delivery:
    """The running Prometheus and Alertmanager and what the webhooks received."""

    alertmanager_url: str
    receiver: Receiver


@contextmanager
def serving_webhooks(receiver: Receiver) -> Iterator[str]:
    """An HTTP server recording into ``receiver`` (and serving the fixture's ``/metrics``)
    on a free loopback port; its base URL, until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _poll(what: str, check: Callable[[], T | None]) -> T:
    """``check()``'s first non-None answer within :data:`DEADLINE_S`, else a failure."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.25)
    raise AssertionError(f"not within {DEADLINE_S:.0f} s: {what}")


def _ready(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=0.5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    return ready


def _alertmanager_config(work: Path, webhook_base: str) -> Path:
    """Our configuration with short waits and this test's receivers' addresses and tokens."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    config["route"].update(group_wait="1s", group_interval="1s")
    password = work / "smtp-password"
    password.write_text("unused")
    config["global"]["smtp_auth_password_file"] = str(password)
    for receiver in config["receivers"]:
        name = receiver["name"]
        receiver.pop("email_configs", None)
        token = work / f"{name}-token"
        token.write_text(TOKENS[name])
        for webhook in receiver["webhook_configs"]:
            webhook["url"] = f"{webhook_base}/{name}"
            webhook["http_config"]["authorization"]["credentials_file"] = str(token)
    path = work / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _prometheus_config(work: Path, fixture: str, ghost: str, alertmanager: str) -> Path:
    """deploy/prometheus/prometheus.yml scraping ``fixture`` and ``ghost`` every second, with
    three alerts of alerts.yml, and the Alertmanager in its alertmanagers file."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    for job in config["scrape_configs"]:
        for discovery in job.get("file_sd_configs", []):
            discovery["refresh_interval"] = "1s"
    for manager in config["alerting"]["alertmanagers"]:
        for discovery in manager.get("file_sd_configs", []):
            discovery["refresh_interval"] = "1s"
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    chosen = [
        {**rule, "for": "1s"}
        for group in rules["groups"]
        for rule in group["rules"]
        if rule.get("alert") in {PAGE_ALERT, TICKET_ALERT, WATCHDOG}
    ]
    assert {rule["alert"] for rule in chosen} == {PAGE_ALERT, TICKET_ALERT, WATCHDOG}
    (rule_file,) = config["rule_files"]
    (work / rule_file).write_text(yaml.safe_dump({"groups": [{"name": "test", "rules": chosen}]}))
    (work / "targets").mkdir()
    targets = [
        {"targets": [fixture], "labels": {"job": "fixture"}},
        {"targets": [ghost], "labels": {"job": "ghost"}},
    ]
    (work / "targets" / "webook.json").write_text(json.dumps(targets))
    (work / "alertmanagers").mkdir()
    (work / "alertmanagers" / "test.json").write_text(json.dumps([{"targets": [alertmanager]}]))
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Delivery]:
    """The webhooks, Alertmanager and Prometheus, running until the module's tests end."""
    alertmanager_binary = shutil.which("prometheus-alertmanager")
    assert alertmanager_binary, "apt-get install prometheus-alertmanager (make tools)"
    work = tmp_path_factory.mktemp("alert-delivery")
    receiver = Receiver()
    with serving_webhooks(receiver) as webhook:
        am_port, prometheus_port = free_port(), free_port()
        alertmanager_url = f"http://127.0.0.1:{am_port}"
        (work / "alertmanager").mkdir()
        (work / "prometheus").mkdir()
        alertmanager = ManagedProcess(
            name="alertmanager",
            argv=[
                alertmanager_binary,
                f"--config.file={_alertmanager_config(work / 'alertmanager', webhook)}",
                f"--storage.path={work / 'alertmanager' / 'data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            log_path=work / "alertmanager.log",
            ready=_ready(f"{alertmanager_url}/-/ready"),
        )
        # A target nobody serves: its `up` is 0, so WebookNoLiveInstance fires for job ghost.
        config = _prometheus_config(
            work / "prometheus",
            fixture=webhook.removeprefix("http://"),
            ghost=f"127.0.0.1:{free_port()}",
            alertmanager=f"127.0.0.1:{am_port}",
        )
        prometheus = ManagedProcess(
            name="prometheus",
            argv=[
                prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'prometheus' / 'data'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--log.level=warn",
            ],
            log_path=work / "prometheus.log",
            ready=_ready(f"http://127.0.0.1:{prometheus_port}/-/ready"),
            cwd=work / "prometheus",
        )
        processes = [alertmanager, prometheus]
        try:
            start_all(processes, timeout=DEADLINE_S)
            yield Delivery(alertmanager_url, receiver)
        finally:
            stop_all(processes)


def _delivered(receiver: Receiver, path: str, alertname: str) -> Callable[[], Notification | None]:
    def find() -> Notification | None:
        for notification in receiver.received():
            if notification.path != path or notification.body.get("status") != "firing":
                continue
            names = {alert["labels"]["alertname"] for alert in notification.body["alerts"]}
            if alertname in names:
                return notification
        return None

    return find


def _firing(notification: Notification, alertname: str) -> dict[str, str]:
    (alert,) = (a for a in notification.body["alerts"] if a["labels"]["alertname"] == alertname)
    assert alert["status"] == "firing"
    return dict(alert["labels"])


def test_a_page_reaches_the_pager_webhook_with_its_token(delivery: Delivery) -> None:
    found = _poll(f"{PAGE_ALERT} at /page", _delivered(delivery.receiver, "/page", PAGE_ALERT))
    assert found.body["receiver"] == "page"
    assert found.authorization == f"Bearer {TOKENS['page']}"
    labels = _firing(found, PAGE_ALERT)
    assert labels["severity"] == "page"
    assert labels["job"] == "ghost"
    assert found.body["groupLabels"] == {"alertname": PAGE_ALERT, "job": "ghost"}
    assert not _delivered(delivery.receiver, "/ticket", PAGE_ALERT)()


def test_a_ticket_reaches_the_ticket_webhook(delivery: Delivery) -> None:
    found = _poll(
        f"{TICKET_ALERT} at /ticket", _delivered(delivery.receiver, "/ticket", TICKET_ALERT)
    )
    assert found.body["receiver"] == "ticket"
    assert found.authorization == f"Bearer {TOKENS['ticket']}"
    labels = _firing(found, TICKET_ALERT)
    assert labels["severity"] == "ticket"
    assert (labels["job"], labels["feed"]) == ("fixture", "sessions")
    assert not _delivered(delivery.receiver, "/page", TICKET_ALERT)()


def _post_alerts(url: str, alerts: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def test_the_ticket_of_an_alert_that_pages_is_inhibited(delivery: Delivery) -> None:
    # A burn-rate alert of docs/slo.md at both severities, as Prometheus sends them when the
    # fast and the slow windows both burn (posted directly: its windows are hours long).
    name = "WebookAvailabilityBudgetBurn"
    common = {"alertname": name, "slo": "availability"}
    _post_alerts(
        delivery.alertmanager_url,
        [
            {"labels": {**common, "severity": "page", "long_window": "1h"}},
            {"labels": {**common, "severity": "ticket", "long_window": "3d"}},
        ],
    )

    def ticket_inhibited() -> list[str] | None:
        url = f"{delivery.alertmanager_url}/api/v2/alerts?filter=alertname%3D%22{name}%22"
        with urllib.request.urlopen(url, timeout=10) as answer:
            alerts = json.load(answer)
        by_severity = {a["labels"]["severity"]: a["status"] for a in alerts}
        ticket = by_severity.get("ticket")
        if ticket and ticket["state"] == "suppressed" and ticket["inhibitedBy"]:
            return list(ticket["inhibitedBy"])
        return None

    assert _poll("the ticket suppressed", ticket_inhibited)
    page = _poll(f"{name} at /page", _delivered(delivery.receiver, "/page", name))
    assert _firing(page, name)["severity"] == "page"
    delivered_tickets = [
        alert
        for notification in delivery.receiver.received()
        for alert in notification.body["alerts"]
        if alert["labels"]["alertname"] == name and alert["labels"]["severity"] == "ticket"
    ]
    assert not delivered_tickets


def test_the_watchdog_reaches_the_dead_mans_switch_alone(delivery: Delivery) -> None:
    found = _poll(
        f"{WATCHDOG} at /heartbeat", _delivered(delivery.receiver, "/heartbeat", WATCHDOG)
    )
    assert found.body["receiver"] == "heartbeat"
    assert found.authorization == f"Bearer {TOKENS['heartbeat']}"
    assert _firing(found, WATCHDOG)["severity"] == "heartbeat"
    names = {
        alert["labels"]["alertname"]
        for notification in delivery.receiver.received()
        if notification.path == "/heartbeat"
        for alert in notification.body["alerts"]
    }
    assert names == {WATCHDOG}
    assert not _delivered(delivery.receiver, "/ticket", WATCHDOG)()
    assert not _delivered(delivery.receiver, "/page", WATCHDOG)()
