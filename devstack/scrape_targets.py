"""Prometheus targets of the local stack: ``python -m devstack.scrape_targets``.

Under ``make run`` every gRPC service logs its metrics port at start-up (``"metrics
endpoint listening"`` with ``metrics_port``), and the gateway serves ``/metrics``
on the HTTP port uvicorn logs (``"Uvicorn running on http://host:port"``). This reads the
JSON logs in ``.run/logs`` and writes the target groups ``deploy/prometheus/prometheus.yml``
discovers (``targets/*.json``), one group per component, labelled ``job=<component>``::

    python -m devstack.scrape_targets --logs .run/logs \\
        --out deploy/prometheus/targets/webook.json

A log holds every start of its process (it is appended to): the last start counts. The file
is replaced atomically, so Prometheus never reads half of it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

METRICS_MESSAGE = "metrics endpoint listening"
_UVICORN = re.compile(r"^Uvicorn running on https?://(?P<host>[^:/\s]+):(?P<port>\d+)")
_REPLICA = re.compile(r"^(?P<component>[a-z][a-z0-9_-]*?)(-\d+)?$")


@dataclass(frozen=True)
class ScrapeTarget:
    """One process's metrics address and the component (Prometheus ``job``) it belongs to."""

    job: str
    address: str


def _last_address(lines: Iterable[str]) -> str | None:
    address = None
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line some library printed outside the JSON logger
        if not isinstance(record, dict):
            continue
        message = str(record.get("msg", ""))
        if message == METRICS_MESSAGE and isinstance(record.get("metrics_port"), int):
            address = f"127.0.0.1:{record['metrics_port']}"
        elif match := _UVICORN.match(message):
            address = f"{match['host']}:{match['port']}"
    return address


def targets_from_logs(log_dir: Path) -> list[ScrapeTarget]:
    """The metrics endpoint of every process whose log (``<component>[-<n>].log``) names one."""
    targets = []
    for path in sorted(log_dir.glob("*.log")):
        match = _REPLICA.match(path.stem)
        if match is None:
            continue
        with path.open(encoding="utf-8", errors="replace") as lines:
            address = _last_address(lines)
        if address is not None:
            targets.append(ScrapeTarget(match["component"], address))
    return targets


def target_groups(targets: Iterable[ScrapeTarget]) -> list[dict[str, object]]:
    """Prometheus ``file_sd`` groups: one per job, its addresses sorted."""
    by_job: dict[str, set[str]] = {}
    for target in targets:
        by_job.setdefault(target.job, set()).add(target.address)
    return [
        {"targets": sorted(addresses), "labels": {"job": job}}
        for job, addresses in sorted(by_job.items())
    ]


def write_targets(path: Path, targets: Iterable[ScrapeTarget]) -> None:
    """Replace ``path`` with the target groups of ``targets``, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(target_groups(targets), out, indent=2)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.scrape_targets",
        description="Write Prometheus file_sd targets for the processes of a local run.",
    )
    parser.add_argument("--logs", type=Path, default=Path(".run/logs"), help="log directory")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("deploy/prometheus/targets/webook.json"),
        help="targets file to write",
    )
    args = parser.parse_args(argv)
    targets = targets_from_logs(args.logs)
    if not targets:
        parser.exit(1, f"no metrics endpoint found in {args.logs}/*.log\n")
    write_targets(args.out, targets)
    print(f"{len(targets)} targets written to {args.out}")


if __name__ == "__main__":
    main()
