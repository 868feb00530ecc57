"""Scrape targets from the local stack's logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.scrape_targets import (
    ScrapeTarget,
    main,
    target_groups,
    targets_from_logs,
)


def _log(path: Path, *records: dict[str, object] | str) -> None:
    with path.open("a", encoding="utf-8") as out:
        for record in records:
            out.write((record if isinstance(record, str) else json.dumps(record)) + "\n")


def test_the_last_start_of_each_process_counts(tmp_path: Path) -> None:
    listening = {"msg": "metrics endpoint listening", "service": "user"}
    _log(tmp_path / "user-0.log", {**listening, "metrics_port": 4001}, "Traceback (oops)")
    _log(tmp_path / "user-0.log", {**listening, "metrics_port": 4002})
    _log(tmp_path / "user-1.log", {**listening, "metrics_port": 4003})
    _log(
        tmp_path / "gateway.log",
        {"msg": "Uvicorn running on http://127.0.0.1:8080 (Press CTRL+C to quit)"},
    )
    # Migrations and infrastructure name no metrics endpoint.
    _log(tmp_path / "user-migrate.log", {"msg": "migrations applied"})
    _log(tmp_path / "etcd.log", "not json at all")

    targets = targets_from_logs(tmp_path)

    assert targets == [
        ScrapeTarget("gateway", "127.0.0.1:8080"),
        ScrapeTarget("user", "127.0.0.1:4002"),
        ScrapeTarget("user", "127.0.0.1:4003"),
    ]
    assert target_groups(targets) == [
        {"targets": ["127.0.0.1:8080"], "labels": {"job": "gateway"}},
        {"targets": ["127.0.0.1:4002", "127.0.0.1:4003"], "labels": {"job": "user"}},
    ]


def test_the_command_writes_the_file_prometheus_discovers(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    _log(logs / "sms-0.log", {"msg": "metrics endpoint listening", "metrics_port": 4100})
    out = tmp_path / "targets" / "webook.json"

    main(["--logs", str(logs), "--out", str(out)])

    assert json.loads(out.read_text()) == [
        {"targets": ["127.0.0.1:4100"], "labels": {"job": "sms"}}
    ]
    assert [p.name for p in out.parent.iterdir()] == ["webook.json"]


def test_the_command_fails_when_nothing_runs(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--logs", str(tmp_path), "--out", str(tmp_path / "t.json")])
    assert exit_info.value.code == 1
    assert not (tmp_path / "t.json").exists()
