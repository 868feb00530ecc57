"""The catalog is the one list of services, and the launcher configures processes from it.

Checks that every service package has an entry and every entry a package, that port plans
never collide, that ``--only`` pulls in the services called, how a process's environment
is layered (stack addresses, catalog settings, test settings, the developer's own), that
producers replay only where the broker loses its data, which ``WEBOOK_<NAME>_*`` settings
pass through, and that migrations run in one process and report each service as it is done.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

import pytest

import devstack.__main__ as launcher
from devstack.__main__ import DevSettings, Stack, parse_replicas, process_overrides
from devstack.catalog import CATALOG, MAX_REPLICAS, SERVICE_NAMES, spec, with_peers
from devstack.infra import free_port_block
from devstack.suite import Infra, Migrations, service_env

ROOT = Path(__file__).resolve().parents[2]


def _infra(tmp_path: Path, **kwargs: object) -> Infra:
    kwargs.setdefault("pki", None)
    return Infra(
        redis_url="redis://127.0.0.1:1/0",
        etcd_endpoints=["127.0.0.1:2"],
        kafka_bootstrap="127.0.0.1:3",
        database_url=f"sqlite+aiosqlite:///{tmp_path}",
        **kwargs,  # type: ignore[arg-type]
    )


def test_every_service_package_has_one_entry_and_every_entry_a_package() -> None:
    packages = {
        p.name
        for p in (ROOT / "services").iterdir()
        if (p / "__init__.py").exists() and (p / "__main__.py").exists()
    }
    assert set(SERVICE_NAMES) == packages
    assert len(SERVICE_NAMES) == len(set(SERVICE_NAMES))


def test_port_slots_are_distinct_and_peers_are_known() -> None:
    slots = [entry.port_slot for entry in CATALOG]
    assert len(slots) == len(set(slots))
    ports = {entry.grpc_port(21000, r) for entry in CATALOG for r in range(MAX_REPLICAS + 1)}
    assert len(ports) == len(CATALOG) * (MAX_REPLICAS + 1)
    for entry in CATALOG:
        assert set(entry.peers) <= set(SERVICE_NAMES), entry
        assert entry.name not in entry.peers
    with pytest.raises(ValueError, match="replica index"):
        CATALOG[0].grpc_port(21000, MAX_REPLICAS + 1)


def test_only_pulls_in_the_services_called_in_catalog_order() -> None:
    assert with_peers(["user"]) == ["user"]
    article = spec("article")
    assert with_peers(["article"]) == [n for n in SERVICE_NAMES if n in {"article", *article.peers}]
    assert set(with_peers(["search"])) >= {"search", *spec("search").peers, *article.peers}
    with pytest.raises(KeyError, match="unknown service 'nope'"):
        with_peers(["nope"])


def test_service_env_layers_stack_catalog_tests_then_the_developer(tmp_path: Path) -> None:
    infra = _infra(
        tmp_path,
        sms_log_file=str(tmp_path / "sms.log"),
        extra_env={"{PREFIX}BCRYPT_COST": "4", "{PREFIX}LOG_LEVEL": "WARNING"},
        overrides={"sms": {"WEBOOK_SMS_LOG_LEVEL": "DEBUG"}},
    )

    env = service_env("sms", infra, 21010, {}, metrics_port=22010)

    assert env["WEBOOK_SMS_GRPC_PORT"] == "21010"
    assert env["WEBOOK_SMS_METRICS_PORT"] == "22010"
    assert env["WEBOOK_SMS_DATABASE_URL"] == f"sqlite+aiosqlite:///{tmp_path}/sms.db"
    [provider] = json.loads(env["WEBOOK_SMS_PROVIDERS"])  # the catalog's own setting
    assert provider == {"name": "local", "kind": "local", "log_file": str(tmp_path / "sms.log")}
    assert env["WEBOOK_SMS_BCRYPT_COST"] == "4"
    assert env["WEBOOK_SMS_LOG_LEVEL"] == "DEBUG"
    assert not any(k.startswith("WEBOOK_USER_") for k in service_env("sms", infra, 1, {}))
    assert service_env("user", infra, 1, {})["WEBOOK_USER_LOG_LEVEL"] == "WARNING"


def test_producers_replay_only_where_the_broker_loses_its_data(tmp_path: Path) -> None:
    on_memory = service_env("article", _infra(tmp_path), 1, {})
    persistent = service_env("article", _infra(tmp_path, persistent_broker=True), 1, {})

    assert on_memory["WEBOOK_ARTICLE_KAFKA_REPLAY_WINDOW_SECONDS"] == "60"
    assert persistent["WEBOOK_ARTICLE_KAFKA_REPLAY_WINDOW_SECONDS"] == "0"
    # tansu grants no producer ids whatever its storage.
    assert on_memory["WEBOOK_ARTICLE_KAFKA_IDEMPOTENT_PRODUCER"] == "false"
    assert persistent["WEBOOK_ARTICLE_KAFKA_IDEMPOTENT_PRODUCER"] == "false"


def test_the_brokers_object_store_takes_a_port_only_when_one_is_set() -> None:
    assert "kafka_store" not in DevSettings().fixed_ports()
    stored = DevSettings(kafka_store_port=9094, kafka_storage="s3")
    assert stored.fixed_ports()["kafka_store"] == 9094
    memory = DevSettings(kafka_store_port=9094, kafka_storage="memory")
    assert "kafka_store" not in memory.fixed_ports()
    external = DevSettings(
        kafka_store_port=9094, kafka_storage="s3", kafka_bootstrap="127.0.0.1:9092"
    )
    assert "kafka" not in external.fixed_ports()
    assert "kafka_store" not in external.fixed_ports()


def test_overrides_come_from_the_environment_over_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / "dev.env"
    env_file.write_text(
        "# comment\n"
        "WEBOOK_USER_LOG_LEVEL=DEBUG\n"
        "export WEBOOK_ARTICLE_CACHE_TTL='30'\n"
        'WEBOOK_GATEWAY_EDGE={"rate_limits": []}\n'
    )
    environ = {
        "WEBOOK_USER_LOG_LEVEL": "WARNING",
        "WEBOOK_USER_GRPC_PORT": "1",
        "WEBOOK_GATEWAY_PORT": "2",
        "WEBOOK_DEV_GATEWAY_PORT": "3",
        "WEBOOK_TEST_MYSQL_URL": "mysql://x",
        "PATH": "/bin",
    }

    overrides, ignored = process_overrides(environ, env_file, ["user", "article"])

    assert overrides == {
        "user": {"WEBOOK_USER_LOG_LEVEL": "WARNING"},
        "article": {"WEBOOK_ARTICLE_CACHE_TTL": "30"},
        "gateway": {"WEBOOK_GATEWAY_EDGE": '{"rate_limits": []}'},
    }
    assert sorted(ignored) == ["WEBOOK_GATEWAY_PORT", "WEBOOK_USER_GRPC_PORT"]
    assert process_overrides({}, tmp_path / "missing.env", ["user"]) == ({}, [])


def test_replicas_default_to_the_catalog_and_are_bounded() -> None:
    names = ["user", "article"]
    assert parse_replicas("", names) == {"user": 1, "article": 1}
    assert parse_replicas("user=3, article=2", names) == {"user": 3, "article": 2}
    with pytest.raises(SystemExit, match="unknown service 'sms'"):
        parse_replicas("sms=2", names)
    with pytest.raises(SystemExit, match=r"must be 1\.\.9"):
        parse_replicas(f"user={MAX_REPLICAS + 1}", names)


@pytest.mark.integration
def test_migrations_run_in_one_process_and_report_each_service(tmp_path: Path) -> None:
    infra = _infra(tmp_path / "data")
    migrations = Migrations(["user", "search", "follow"], infra, tmp_path / "logs")
    done: list[str] = []
    try:
        while migrations.pending:
            done += migrations.finished(wait=1.0)
    finally:
        migrations.close()
    done += migrations.finished()
    assert sorted(done) == ["follow", "search", "user"]
    assert done[0] == "search"  # no migrations: ready at once
    assert (tmp_path / "data" / "user.db").exists()
    assert (tmp_path / "data" / "follow.db").exists()
    assert not (tmp_path / "data" / "search.db").exists()


@pytest.mark.integration
def test_a_failed_migration_names_the_services_left(tmp_path: Path) -> None:
    # A directory where the database file should be: SQLite cannot open it.
    (tmp_path / "user.db").mkdir()
    migrations = Migrations(["user", "follow"], _infra(tmp_path), tmp_path / "logs")

    def until_done() -> None:
        while migrations.pending:
            migrations.finished(wait=1.0)

    try:
        with pytest.raises(RuntimeError, match="migrations of user, follow failed"):
            until_done()
    finally:
        migrations.close()


def test_payment_pays_through_the_local_wechatpay_and_the_scheduler_reconciles(
    tmp_path: Path,
) -> None:
    infra = _infra(
        tmp_path,
        wechatpay_base="http://127.0.0.1:4",
        pay_notify_url="http://127.0.0.1:5/pay/callback",
    )

    env = service_env("payment", infra, 1, {})

    keys_dir = tmp_path / "wechatpay"  # beside the SQLite databases, made on first use
    assert env["WEBOOK_PAYMENT_WECHATPAY_BASE_URL"] == "http://127.0.0.1:4"
    assert env["WEBOOK_PAYMENT_WECHATPAY_NOTIFY_URL"] == "http://127.0.0.1:5/pay/callback"
    assert env["WEBOOK_PAYMENT_WECHATPAY_MERCHANT_PRIVATE_KEY_FILE"] == str(
        keys_dir / "merchant_key.pem"
    )
    assert Path(env["WEBOOK_PAYMENT_WECHATPAY_PLATFORM_KEY_FILE"]).is_file()
    assert len(env["WEBOOK_PAYMENT_WECHATPAY_APIV3_KEY"]) == 32
    # The same keys on the next start (the emulator reads them too).
    again = service_env("payment", infra, 1, {})
    assert (
        again["WEBOOK_PAYMENT_WECHATPAY_MERCHANT_SERIAL"]
        == (env["WEBOOK_PAYMENT_WECHATPAY_MERCHANT_SERIAL"])
    )

    jobs = json.loads(service_env("scheduler", infra, 1, {})["WEBOOK_SCHEDULER_JOBS"])
    called = {job["executor_config"]["service"] for job in jobs}
    assert called == {"ranking", "payment", "account"}
    assert called <= set(spec("scheduler").peers)
    reward = {"reward", "payment", "article", *spec("article").peers}
    assert set(with_peers(["reward"])) == reward


def test_a_port_block_leaves_out_the_ports_it_must_avoid() -> None:
    avoid = range(20000, 20090)
    for _ in range(20):
        base = free_port_block(10, low=20000, high=20200, avoid=avoid)
        assert not set(range(base, base + 10)) & set(avoid)


def test_ports_the_launcher_picks_itself_are_outside_the_planned_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = Stack(DevSettings(run_dir=tmp_path), {entry.name: MAX_REPLICAS for entry in CATALOG})
    asked: list[Collection[int]] = []

    def block(size: int, *, avoid: Collection[int] = ()) -> int:
        asked.append(avoid)
        return 20999

    monkeypatch.setattr(launcher, "free_port_block", block)
    assert stack.unplanned_port() == 20999
    assert asked == [{port for port, _ in stack.planned_ports().values()}]
