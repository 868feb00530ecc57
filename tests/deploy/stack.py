"""The whole webook stack as ``make run`` starts it, observed by a real Prometheus.

:func:`observed_stack` starts every available service (follow twice, so that the gateway's
balancer has an endpoint to fail over from), the WeChat emulators (login and pay; the payment
service pays through the latter, which posts its notifications to the gateway's
``/pay/callback``) and the gateway on free ports, each gRPC service with an explicit
metrics port, then a Prometheus (Debian's ``prometheus`` package) on a free port with a
temporary storage directory, configured from ``deploy/prometheus/prometheus.yml`` and
``alerts.yml`` and scraping every process each second.
It never touches a system Prometheus.

The sms service has two providers: a Tencent account whose endpoint refuses connections
(every send fails over) and the local provider, so failover metrics are real.

The Kafka lag exporter (``python -m kit.events.lag``, :func:`devstack.lag.lag_exporter_process`)
reads the stack's consumer groups from its broker, as it does in the cluster, and is scraped
under the job ``lag-exporter``; its log ``lag-exporter.log`` lands in the log directory
with the others, where :mod:`devstack.scrape_targets` finds it as under ``make run``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack.credentials import SecureEtcd, acl_redis, secure_etcd
from devstack.infra import ManagedProcess, free_port, stop_all
from devstack.lag import NAME as LAG_EXPORTER
from devstack.lag import lag_exporter_process
from devstack.suite import (
    PAY_CALLBACK_PATH,
    Infra,
    available_services,
    gateway_process,
    service_process,
    start_services,
    wechat_emulator_process,
    wechatpay_emulator_process,
)
from devstack.tls import stack_pki
from services.account.settings import AccountSettings
from services.interactive.settings import InteractiveSettings
from services.reward.settings import RewardSettings
from services.search.settings import SearchSettings
from tests.deploy.observability_files import PROMETHEUS_DIR

SCRAPE_INTERVAL_S = 1
# A rule of our own for the rate-limiting dashboard: a burst on /comments/list gets 429s.
BURST = 5
BURST_RULE = {
    "name": "comments_ip",
    "paths": ["/comments/list"],
    "key": "ip",
    "limit": BURST,
    "period": 60,
    "burst": BURST,
}
MAX_BODY_BYTES = 64 * 1024
REGISTRY_PREFIX = "/webook-observed/services"
# The consumer groups of the stack (interactive's, search's indexers, reward's and
# account's): the session's broker is shared with other tests, whose groups the lag exporter
# need not read every second.
STACK_GROUPS = (
    InteractiveSettings.model_fields["read_consumer_group"].default,
    SearchSettings.model_fields["sync_group_prefix"].default,
    RewardSettings.model_fields["payment_consumer_group"].default,
    AccountSettings.model_fields["reward_consumer_group"].default,
)


def prometheus_binary() -> str:
    """The ``prometheus`` server on PATH, or a failure that says how to install it."""
    found = shutil.which("prometheus")
    if found is None:
        raise AssertionError(
            "prometheus is not installed: apt-get install prometheus (.ci/run does it)"
        )
    return found


@dataclass
class ScrapeTarget:
    """One process Prometheus scrapes."""

    job: str
    address: str
    process: ManagedProcess

    @property
    def metrics_url(self) -> str:
        """Its ``/metrics`` URL."""
        return f"http://{self.address}/metrics"


@dataclass
class Prometheus:
    """A running Prometheus server and its HTTP API."""

    url: str
    process: ManagedProcess

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar as one sample) ``expr`` evaluates to now."""
        params = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        data = body["data"]
        if data["resultType"] in {"scalar", "string"}:
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def wait_for_scrapes_after(self, moment: float, targets: int, timeout: float = 30) -> None:
        """Wait until each of ``targets`` live targets was scraped after ``moment`` (epoch s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = self.query(f"count(timestamp(up == 1) > {moment + SCRAPE_INTERVAL_S})")
            if fresh and int(float(fresh[0]["value"][1])) >= targets:
                return
            time.sleep(0.5)
        raise AssertionError(f"Prometheus did not scrape {targets} live targets after {moment}")


@dataclass
class ObservedStack:
    """The processes under test, their scrape targets and the Prometheus scraping them."""

    base_url: str
    # How the processes were configured (its certificates, to call a service directly).
    infra: Infra
    gateway: ManagedProcess
    services: dict[str, list[ManagedProcess]]
    grpc_addresses: dict[str, list[str]]
    targets: list[ScrapeTarget]
    prometheus: Prometheus
    sms_log: Path
    log_dir: Path
    # The WeChat Pay emulator: ``POST {wechatpay_base}/emulator/pay`` pays an order.
    wechatpay_base: str
    killed: list[ScrapeTarget] = field(default_factory=list)

    def live_targets(self) -> list[ScrapeTarget]:
        """Targets whose process still runs."""
        return [t for t in self.targets if t.process.alive()]

    def wait_for_a_scrape(self) -> None:
        """Wait until Prometheus scraped every live target once more."""
        self.prometheus.wait_for_scrapes_after(time.time(), len(self.live_targets()))


def _prometheus_config(work: Path, targets: list[ScrapeTarget]) -> Path:
    """deploy/prometheus's files in ``work``, scraping ``targets`` every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(
        scrape_interval=f"{SCRAPE_INTERVAL_S}s",
        scrape_timeout=f"{SCRAPE_INTERVAL_S}s",
        evaluation_interval=f"{SCRAPE_INTERVAL_S}s",
    )
    for job in config["scrape_configs"]:
        for discovery in job.get("file_sd_configs", []):
            discovery["refresh_interval"] = f"{SCRAPE_INTERVAL_S}s"
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    for rules in config.get("rule_files", []):
        shutil.copy(PROMETHEUS_DIR / rules, work / rules)
    (work / "targets").mkdir()
    groups = [{"targets": [t.address], "labels": {"job": t.job}} for t in targets]
    (work / "targets" / "webook.json").write_text(json.dumps(groups))
    return path


def _start_prometheus(work: Path, targets: list[ScrapeTarget], log_dir: Path) -> ManagedProcess:
    config = _prometheus_config(work, targets)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=0.5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    return ManagedProcess(
        name="prometheus",
        argv=[
            prometheus_binary(),
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        log_path=log_dir / "prometheus.log",
        ready=ready,
        cwd=work,
    )


@contextmanager
def observed_stack(work: Path, log_dir: Path, kafka_bootstrap: str) -> Iterator[ObservedStack]:
    """Start everything (see the module docstring); stop it all on exit.

    As in production, every process logs in to etcd (authentication on) and Redis (one ACL
    user per workload) as itself: both are the stack's own.
    """
    prometheus_binary()
    with (
        secure_etcd(work / "etcd", REGISTRY_PREFIX) as etcd,
        acl_redis(work / "redis", etcd.credentials) as redis_url,
    ):
        yield from _observed(work, log_dir, etcd, redis_url, kafka_bootstrap)


def _observed(
    work: Path, log_dir: Path, etcd: SecureEtcd, redis_url: str, kafka_bootstrap: str
) -> Iterator[ObservedStack]:
    data_dir = work / "data"
    data_dir.mkdir()
    sms_log = data_dir / "sms.log"
    gateway_port, wechat_port, wechatpay_port = free_port(), free_port(), free_port()
    wechatpay_base = f"http://127.0.0.1:{wechatpay_port}"
    infra = Infra(
        redis_url=redis_url,
        etcd_endpoints=[etcd.endpoint],
        kafka_bootstrap=kafka_bootstrap,
        database_url=f"sqlite+aiosqlite:///{data_dir}",
        mode="test",
        extra_env={
            "{PREFIX}BCRYPT_COST": "4",
            "{PREFIX}REGISTRY_PREFIX": REGISTRY_PREFIX,
            "{PREFIX}CODE__RESEND_INTERVAL_S": "0.5",
            "{PREFIX}KAFKA_SESSION_TIMEOUT_MS": "3000",
            "{PREFIX}KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "{PREFIX}READ_BATCH_WAIT_SECONDS": "0.2",
            # Gauges refreshed in the background, every second instead of every ten.
            "{PREFIX}KAFKA_LAG_INTERVAL_SECONDS": "1",
            "{PREFIX}DELIVERY__QUEUE_GAUGE_INTERVAL_S": "1",
            "{PREFIX}RETRY__BASE_DELAY_S": "0.01",
            "WEBOOK_GATEWAY_EDGE": json.dumps(
                {"rate_limits": [BURST_RULE], "max_body_bytes": MAX_BODY_BYTES}
            ),
        },
        sms_log_file=str(sms_log),
        pki=stack_pki(work),
        credentials=etcd.credentials,
        wechatpay_keys_dir=str(data_dir / "wechatpay"),
        wechatpay_base=wechatpay_base,
        pay_notify_url=f"http://127.0.0.1:{gateway_port}{PAY_CALLBACK_PATH}",
    )
    names = available_services()
    refused = f"http://127.0.0.1:{free_port()}"
    providers = [
        {
            "name": "tencent",
            "kind": "tencent",
            "endpoint": refused,
            "access_key_id": "test-id",
            "access_key_secret": "test-secret",
            "app_id": "1400000000",
            "sign_name": "webook",
            "timeout_s": 0.5,
        },
        {"name": "local", "kind": "local", "log_file": str(sms_log)},
    ]
    addresses: dict[str, list[str]] = {}
    targets: list[ScrapeTarget] = []

    def instance(name: str, replica: int) -> ManagedProcess:
        grpc_port, metrics_port = free_port(), free_port()
        process = service_process(
            name, infra, grpc_port, log_dir, replica=replica, metrics_port=metrics_port
        )
        assert process.env is not None
        if name == "sms":
            process.env["WEBOOK_SMS_PROVIDERS"] = json.dumps(providers)
        addresses.setdefault(name, []).append(f"127.0.0.1:{grpc_port}")
        targets.append(ScrapeTarget(name, f"127.0.0.1:{metrics_port}", process))
        return process

    wechat_base = f"http://127.0.0.1:{wechat_port}"
    wechat = wechat_emulator_process(wechat_port, log_dir)
    wechatpay = wechatpay_emulator_process(
        wechatpay_port, data_dir / "wechatpay", log_dir, retry_scale=0.01
    )
    gateway = gateway_process(infra, gateway_port, {}, log_dir, wechat_base=wechat_base)
    # Reading the broker as often as Prometheus scrapes it, as in the cluster.
    exporter_port = free_port()
    exporter = lag_exporter_process(
        kafka_bootstrap,
        exporter_port,
        log_dir,
        mode="test",
        interval_seconds=SCRAPE_INTERVAL_S,
        group_prefixes=STACK_GROUPS,
    )
    services = start_services(
        names,
        infra,
        log_dir,
        instance,
        replicas={"follow": 2},
        also=[wechat, wechatpay, gateway, exporter],
        timeout=120,
    )
    targets.append(ScrapeTarget("gateway", f"127.0.0.1:{gateway_port}", gateway))
    targets.append(ScrapeTarget(LAG_EXPORTER, f"127.0.0.1:{exporter_port}", exporter))
    with ExitStack() as running:
        running.callback(
            stop_all,
            [
                gateway,
                wechat,
                wechatpay,
                exporter,
                *(p for group in services.values() for p in group),
            ],
        )
        prom_dir = work / "prometheus"
        prom_dir.mkdir()
        prometheus = _start_prometheus(prom_dir, targets, log_dir)
        started = time.time()
        prometheus.start(timeout=30)
        running.callback(prometheus.stop)
        api = Prometheus(f"http://127.0.0.1:{prometheus_port(prometheus)}", prometheus)
        # Discovery and the first scrapes take a few seconds; a counter must have a sample
        # from before the traffic for its rate to show that traffic.
        api.wait_for_scrapes_after(started, len(targets))
        yield ObservedStack(
            base_url=f"http://127.0.0.1:{gateway_port}",
            infra=infra,
            gateway=gateway,
            services=services,
            grpc_addresses=addresses,
            targets=targets,
            prometheus=api,
            sms_log=sms_log,
            log_dir=log_dir,
            wechatpay_base=wechatpay_base,
        )


def prometheus_port(process: ManagedProcess) -> int:
    """The port a Prometheus process was told to listen on."""
    flag = next(a for a in process.argv if a.startswith("--web.listen-address="))
    return int(flag.rsplit(":", 1)[1])


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """``promtool`` with ``args`` (a failure that says how to install it when missing)."""
    found = shutil.which("promtool")
    if found is None:
        raise AssertionError("promtool is not installed: apt-get install prometheus (.ci/run)")
    return subprocess.run([found, *args], capture_output=True, text=True, check=False, timeout=60)
