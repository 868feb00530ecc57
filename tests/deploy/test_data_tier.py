"""The data tier of deploy/k8s (docs/persistence.md, docs/backup.md), rendered and run.

- **Connection budget**: every service's SQL pool (its ``DATABASE_POOL_SIZE`` and
  ``DATABASE_MAX_OVERFLOW`` in webook-config) times its most pods (the autoscaler's maximum,
  or the fixed replicas, plus the rolling update's surge), plus the migrations, the backup,
  the exporter and the operators' reserve, fits MySQL's ``max_connections``; and the table of
  docs/persistence.md is that computation, row by row.
- **Migrations once per release**: the ``webook-migrate`` Job runs each service's
  ``migrate`` with that service's Secret and certificate only; the service pods no longer
  migrate, they wait for their schema (``wait-for-schema``).
- **Backups**: the ``mysql-backup`` CronJob runs ``mysql-backup.sh dump`` from the ConfigMap
  generated from that file; the very script is run here against the local MariaDB: two
  services' schemas with rows (unicode, NULLs, binary), dumped, restored into a new
  database, compared row by row; it keeps the newest N backups and refuses to restore over
  tables.
- **Redis split**: caches on ``redis-cache`` (allkeys-lru, maxmemory set), state on ``redis``
  (noeviction); each workload's URL names the instance docs/persistence.md assigns it, and
  each instance's ACL init container renders exactly its workloads' users.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import MetaData, Table, inspect, select, text
from sqlalchemy.engine import Connection

from devstack.infra import find_binary, free_port
from kit.migrations import upgrade
from kit.sql import create_engine, drop_database, mysql_test_server, scratch_database
from kit.sql.databases import database_url
from tests.deploy.test_manifests import (
    K8S,
    WITH_DATABASE,
    Manifest,
    _config_data,
    _of_kind,
    _secret_data,
    _unhashed,
    rendered,
)

ROOT = K8S.parents[1]
DOC = ROOT / "docs" / "persistence.md"
BACKUP_SCRIPT = K8S / "base" / "data" / "mysql-backup.sh"
# Connections of the others, each at its most (docs/persistence.md, "Connection budget"):
# a migration holds its named lock on one connection and migrates on another, one service
# at a time; mysqldump uses one; the exporter's MySQL user is capped at 3
# (MAX_USER_CONNECTIONS, exporters/mysqld-exporter.yaml); operators keep a reserve.
MIGRATION_CONNECTIONS = 2
BACKUP_CONNECTIONS = 1
EXPORTER_CONNECTIONS = 3
OPERATORS_RESERVE = 20
# Services whose Redis holds caches only (every key a copy of MySQL a miss reloads).
CACHE_ONLY = {"article", "interactive", "comment", "follow"}


def _secrets(objects: list[Manifest]) -> dict[str, dict[str, str]]:
    """The dev overlay's generated Secrets by name (without kustomize's hash suffix)."""
    return {_unhashed(name): _secret_data(s) for name, s in _of_kind(objects, "Secret").items()}


def _max_pods(objects: list[Manifest], name: str) -> int:
    """Most pods of workload ``name`` at once: its autoscaler's maximum (else its replicas),
    plus the surge of a rolling update."""
    workloads = {**_of_kind(objects, "Deployment"), **_of_kind(objects, "StatefulSet")}
    workload = workloads[name]
    autoscalers = [
        h
        for h in _of_kind(objects, "HorizontalPodAutoscaler").values()
        if h["spec"]["scaleTargetRef"]["name"] == name
    ]
    pods = autoscalers[0]["spec"]["maxReplicas"] if autoscalers else workload["spec"]["replicas"]
    if workload["kind"] == "Deployment":
        surge = workload["spec"]["strategy"].get("rollingUpdate", {}).get("maxSurge", "25%")
        if isinstance(surge, str):
            surge = math.ceil(pods * int(surge.rstrip("%")) / 100)
        pods += int(surge)
    return int(pods)


def _max_connections(objects: list[Manifest]) -> int:
    mysql = _of_kind(objects, "StatefulSet")["mysql"]
    containers = mysql["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "mysql"]
    flag = "--max-connections="
    (value,) = [a.removeprefix(flag) for a in container["args"] if a.startswith(flag)]
    return int(value)


def connection_budget(objects: list[Manifest]) -> dict[str, tuple[int, str, int]]:
    """Who connects to MySQL: name -> (pods at most, connections each, connections)."""
    config = _config_data(objects, "webook-config")
    rows: dict[str, tuple[int, str, int]] = {}
    for name in sorted(WITH_DATABASE):
        prefix = f"WEBOOK_{name.upper()}_"
        size = int(config[f"{prefix}DATABASE_POOL_SIZE"])
        overflow = int(config[f"{prefix}DATABASE_MAX_OVERFLOW"])
        pods = _max_pods(objects, name)
        rows[name] = (pods, f"{size} + {overflow}", pods * (size + overflow))
    job = _of_kind(objects, "Job")["webook-migrate"]
    assert job["spec"].get("parallelism", 1) == 1
    rows["webook-migrate Job"] = (1, str(MIGRATION_CONNECTIONS), MIGRATION_CONNECTIONS)
    backup = _of_kind(objects, "CronJob")["mysql-backup"]
    assert backup["spec"]["concurrencyPolicy"] == "Forbid"
    rows["mysql-backup CronJob"] = (1, str(BACKUP_CONNECTIONS), BACKUP_CONNECTIONS)
    exporter = _of_kind(objects, "Deployment").get("mysqld-exporter")
    if exporter is not None:
        replicas = int(exporter["spec"].get("replicas", 1))
        rows["mysqld-exporter"] = (
            replicas,
            str(EXPORTER_CONNECTIONS),
            replicas * EXPORTER_CONNECTIONS,
        )
    return rows


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_pool_at_its_most_fits_max_connections(overlay: str) -> None:
    objects = rendered(overlay)
    total = sum(row[2] for row in connection_budget(objects).values())
    assert total + OPERATORS_RESERVE <= _max_connections(objects), (total, overlay)


def _doc_budget() -> dict[str, tuple[str, str, str]]:
    """The rows of the budget table of docs/persistence.md: who -> the other three cells."""
    lines = DOC.read_text().split("### Connection budget", 1)[1].splitlines()
    rows: dict[str, tuple[str, str, str]] = {}
    for line in lines:
        if rows and not line.startswith("|"):
            break
        if not line.startswith("|") or set(line) <= {"|", "-", " "}:
            continue
        cells = [c.strip().strip("*`") for c in line.strip("|").split("|")]
        if cells[0] != "Who":
            rows[cells[0]] = (cells[1], cells[2], cells[3])
    return rows


def test_the_documented_budget_is_the_rendered_one() -> None:
    objects = rendered("prod")
    budget = connection_budget(objects)
    documented = _doc_budget()
    expected = {name: (str(p), each, str(c)) for name, (p, each, c) in budget.items()}
    total = sum(row[2] for row in budget.values())
    expected["operators' reserve"] = ("", "", str(OPERATORS_RESERVE))
    expected["Total"] = ("", "", str(total + OPERATORS_RESERVE))
    expected["max_connections"] = ("", "", str(_max_connections(objects)))
    assert documented == expected


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_migrations_run_once_per_release_in_the_job_and_pods_wait(overlay: str) -> None:
    objects = rendered(overlay)
    job = _of_kind(objects, "Job")["webook-migrate"]
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "webook-migrate"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert "ttlSecondsAfterFinished" not in job["spec"], "a removed Job would run again"
    volumes = {v["name"]: v for v in spec["volumes"]}
    migrated = []
    for container in [*spec["initContainers"], *spec["containers"]]:
        name = container["name"]
        assert container["command"] == ["python", "-m", f"services.{name}", "migrate"]
        secrets = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
        assert [_unhashed(s) for s in secrets] == [f"webook-{name}-secrets"], name
        (tls,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/var/run/webook/tls"]
        assert volumes[tls["name"]]["secret"]["secretName"] == f"{name}-tls"
        migrated.append(name)
    assert sorted(migrated) == sorted(WITH_DATABASE)
    for name in WITH_DATABASE:
        workload = _of_kind(objects, "Deployment")[name]
        pod_spec = workload["spec"]["template"]["spec"]
        inits = {c["name"]: c for c in pod_spec.get("initContainers", [])}
        assert "migrate" not in inits, name
        wait = inits["wait-for-schema"]
        assert wait["command"] == ["python", "-m", f"services.{name}", "wait-for-schema"]
        (main,) = pod_spec["containers"]
        assert wait["envFrom"] == main["envFrom"], name


def _init_workloads(workload: Manifest) -> dict[str, str]:
    """Workload users the ACL init container renders -> the Secret key of their URL."""
    (init,) = workload["spec"]["template"]["spec"]["initContainers"]
    script = init["command"][-1]
    variables = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
        for e in init["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    found = re.findall(r'^\s*workload (\S+) "\$(\w+)"', script, re.MULTILINE)
    return {name: variables[variable] for name, variable in found}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_caches_on_an_evicting_redis_and_state_on_one_that_never_evicts(overlay: str) -> None:
    objects = rendered(overlay)
    cache = _of_kind(objects, "Deployment")["redis-cache"]
    state = _of_kind(objects, "StatefulSet")["redis"]
    assert cache["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == (
        "redis-cache"
    )
    service = _of_kind(objects, "Service")["redis-cache"]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "redis-cache"}
    assert [p["port"] for p in service["spec"]["ports"]] == [6379]

    def args(workload: Manifest) -> list[str]:
        containers = workload["spec"]["template"]["spec"]["containers"]
        (redis,) = [c for c in containers if c["name"] == "redis"]
        return list(redis["args"])

    cache_args, state_args = args(cache), args(state)
    assert cache_args[cache_args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert cache_args[cache_args.index("--maxmemory") + 1].endswith("mb")
    assert state_args[state_args.index("--maxmemory-policy") + 1] == "noeviction"
    # Each workload logs in where its URL points, and only there.
    on_cache, on_state = _init_workloads(cache), _init_workloads(state)
    assert set(on_cache) == CACHE_ONLY
    assert not set(on_cache) & set(on_state)
    config = _config_data(objects, "webook-config")
    for name in on_state.keys() | on_cache.keys():
        host = urlsplit(config.get(f"WEBOOK_{name.upper()}_REDIS_URL", "redis://redis")).hostname
        assert host == ("redis-cache" if name in CACHE_ONLY else "redis"), name
    if overlay == "dev":
        secrets = _secrets(objects)
        for name, key in {**on_cache, **on_state}.items():
            host = urlsplit(secrets[f"webook-{name}-secrets"][key]).hostname
            assert host == ("redis-cache" if name in CACHE_ONLY else "redis"), name


def test_the_backup_cronjob_runs_the_script_of_this_repository() -> None:
    objects = rendered("prod")
    cron = _of_kind(objects, "CronJob")["mysql-backup"]
    template = cron["spec"]["jobTemplate"]["spec"]["template"]
    assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "mysql-backup"
    (container,) = template["spec"]["containers"]
    assert re.fullmatch(r"mysql:\d+\.\d+\.\d+", container["image"]), "a pinned image"
    assert container["command"] == ["sh", "/opt/mysql-backup/mysql-backup", "dump", "/backups"]
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claim = volumes[mounts["/backups"]]["persistentVolumeClaim"]["claimName"]
    assert claim in _of_kind(objects, "PersistentVolumeClaim")
    config_name = volumes[mounts["/opt/mysql-backup"]]["configMap"]["name"]
    config = _of_kind(objects, "ConfigMap")[config_name]
    assert config["data"]["mysql-backup"] == BACKUP_SCRIPT.read_text()
    env = {e["name"]: e for e in container["env"]}
    assert env["MYSQL_BACKUP_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
        "webook-mysql-backup"
    )


# --- the script, run against the local MariaDB --------------------------------------------

SERVICES_DUMPED = ("user", "comment")
TRICKY_TEXT = "ünïcødé 中文 ✓ 😀 'quote' \"double\" back\\slash\ttab"


def _value(column: Any, row: int) -> Any:
    """A value of ``column``'s type for row ``row`` (1, 2, 3); row 2 leaves nullable
    columns NULL."""
    if row == 2 and column.nullable and not column.primary_key:
        return None
    enums = getattr(column.type, "enums", None)
    if enums:
        return enums[row % len(enums)]
    try:
        kind = column.type.python_type
    except NotImplementedError:
        kind = str
    if kind is bool:
        return row % 2 == 0
    if kind is int:
        return row
    if kind is Decimal:
        return Decimal(f"{row}.25")
    if kind is float:
        return row + 0.5
    if kind is dt.datetime:
        return dt.datetime(2026, 1, row, 12, 30, 15)
    if kind is dt.date:
        return dt.date(2026, 1, row)
    if kind is bytes:
        return bytes([0, 255, row, 10, 13, 39])
    if kind is dict:
        return {"text": TRICKY_TEXT, "row": row}
    length = getattr(column.type, "length", None) or 4096
    return f"{row}:{TRICKY_TEXT}"[:length]


def _fill(connection: Connection) -> dict[str, int]:
    """Three rows in every table of the database but the version tables; rows per table."""
    metadata = MetaData()
    metadata.reflect(connection)
    counts = {}
    for table in metadata.sorted_tables:
        if table.name.startswith("alembic_version_"):
            continue
        rows = [{c.name: _value(c, row) for c in table.columns} for row in (1, 2, 3)]
        connection.execute(table.insert(), rows)
        counts[table.name] = len(rows)
    return counts


def _everything(connection: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order, and each table's columns."""
    metadata = MetaData()
    metadata.reflect(connection)
    out: dict[str, list[tuple[Any, ...]]] = {}
    for name, table in sorted(metadata.tables.items()):
        assert isinstance(table, Table)
        order = list(table.primary_key.columns) or list(table.columns)
        out[name] = [tuple(r) for r in connection.execute(select(table).order_by(*order))]
        columns = inspect(connection).get_columns(name)
        out[f"{name} (columns)"] = [(c["name"], str(c["type"]), c["nullable"]) for c in columns]
    return out


def _script_env(server: str, **more: str) -> dict[str, str]:
    parts = urlsplit(server)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQL")}
    env.update(
        MYSQL_HOST=parts.hostname or "127.0.0.1",
        MYSQL_PORT=str(parts.port or 3306),
        MYSQL_BACKUP_USER=parts.username or "root",
        **more,
    )
    if parts.password:
        env["MYSQL_BACKUP_PASSWORD"] = parts.password
    return env


def _run_script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(BACKUP_SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.fixture
def restored_name() -> Iterator[str]:
    """The name of the database a restore creates, dropped afterwards."""
    name = f"webook_restored_{uuid.uuid4().hex[:10]}"
    yield name
    asyncio.run(drop_database(mysql_test_server(), name))


@pytest.mark.integration
@pytest.mark.mysql
async def test_the_backup_script_dumps_and_restores_every_row(
    tmp_path: Path, restored_name: str
) -> None:
    server = mysql_test_server()
    async with scratch_database(prefix="webook_backup") as source_url:
        for service in SERVICES_DUMPED:
            await asyncio.to_thread(upgrade, service, source_url)
        source = create_engine(source_url)
        try:
            async with source.begin() as conn:
                filled = await conn.run_sync(_fill)
            async with source.connect() as conn:
                before = await conn.run_sync(_everything)
        finally:
            await source.dispose()
        assert {"users", "comments"} <= filled.keys()
        source_name = source_url.rsplit("/", 1)[1].split("?")[0]

        backups = tmp_path / "backups"
        env = _script_env(server, MYSQL_BACKUP_DATABASES=source_name, MYSQL_BACKUP_KEEP="2")
        for _ in range(3):
            result = _run_script(env, "dump", str(backups))
            assert result.returncode == 0, result.stderr
        listed = _run_script(env, "list", str(backups))
        assert listed.returncode == 0, listed.stderr
        kept = listed.stdout.split()
        assert len(kept) == 2, "MYSQL_BACKUP_KEEP=2 keeps the newest two"
        assert sorted(p.name for p in backups.iterdir()) == sorted(kept)
        newest = backups / kept[0]
        assert (newest / "MANIFEST").read_text().split() == [source_name]

        result = _run_script(env, "restore", str(newest), source_name, restored_name)
        assert result.returncode == 0, result.stderr
        restored = create_engine(database_url(server, restored_name))
        try:
            async with restored.connect() as conn:
                after = await conn.run_sync(_everything)
                charset = await conn.scalar(
                    text(
                        "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA "
                        "WHERE SCHEMA_NAME = :name"
                    ),
                    {"name": restored_name},
                )
        finally:
            await restored.dispose()
        assert after == before
        assert charset == "utf8mb4"
        # Some rows hold NULLs and the unicode text, so the comparison saw both.
        flat = [value for name, rows in after.items() for row in rows for value in row]
        assert None in flat
        assert any(isinstance(v, str) and "😀" in v for v in flat)
        # A restore never writes over tables.
        again = _run_script(env, "restore", str(newest), source_name, restored_name)
        assert again.returncode != 0
        assert "restore into an empty one" in again.stderr


def test_redis_cache_loads_its_users_and_evicts_when_full(tmp_path: Path) -> None:
    # redis-cache's init container, run by a real shell on the dev Secrets' values, and a
    # real redis-server started with the container's own arguments (maxmemory lowered so
    # that the test fills it): each cache workload reaches its own keys only, and a full
    # cache evicts old keys instead of refusing writes.
    objects = rendered("dev")
    cache = _of_kind(objects, "Deployment")["redis-cache"]
    pod = cache["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    secrets = _secrets(objects)
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin"}
    for variable in init["env"]:
        ref = variable["valueFrom"]["secretKeyRef"]
        env[variable["name"]] = secrets[_unhashed(ref["name"])][ref["key"]]
    acl_dir = init["volumeMounts"][0]["mountPath"]
    script = init["command"][-1].replace(acl_dir, str(tmp_path))
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=30)

    (container,) = [c for c in pod["containers"] if c["name"] == "redis"]
    args = [str(a) for a in container["args"]]
    args[args.index("--maxmemory") + 1] = "4mb"
    args[args.index("--aclfile") + 1] = str(tmp_path / "users.acl")
    args[args.index("--dir") + 1] = str(tmp_path)
    port = free_port()
    server = subprocess.Popen(
        [find_binary("redis-server"), *args, "--port", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    clients: list[redis.Redis] = []
    try:

        def login(name: str) -> redis.Redis:
            url = secrets[f"webook-{name}-secrets"][f"WEBOOK_{name.upper()}_REDIS_URL"]
            parts = urlsplit(url)
            client = redis.Redis(
                host="127.0.0.1",
                port=port,
                username=parts.username,
                password=parts.password,
                socket_timeout=30,
            )
            clients.append(client)
            return client

        admin = redis.Redis(
            host="127.0.0.1",
            port=port,
            username="admin",
            password=secrets["webook-redis-credentials"]["admin-password"],
            socket_timeout=30,
        )
        clients.append(admin)
        deadline = time.monotonic() + 60
        while True:
            try:
                admin.ping()
                break
            except redis.ConnectionError:
                assert server.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)
        assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        article = login("article")
        follow = login("follow")
        assert article.set("webook:article:first_page:1", "x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            article.set("sms:code:{login:1}", "x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            follow.get("webook:article:first_page:1")
        with pytest.raises(redis.AuthenticationError):
            login("sms").ping()  # state stays on redis: no user here
        # Ten times maxmemory written: every write succeeds, old keys make room.
        value = "v" * 1024
        for batch in range(40):
            pipeline = article.pipeline(transaction=False)
            for i in range(1000):
                pipeline.set(f"webook:article:published:{batch}:{i}", value)
            assert all(pipeline.execute())
        stats = admin.info("stats")
        assert stats["evicted_keys"] > 0
        assert admin.dbsize() < 40_000
    finally:
        for client in clients:
            client.close()
        server.kill()
        server.wait()
