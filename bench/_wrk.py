"""HTTP load for the benchmarks from ``wrk``, with the servers' CPU per request.

The load generator runs on the same two cores as the servers it measures, so it must cost
little: a Python client spent about 1.3 ms of CPU per request, as much as a server process,
and pulled every ratio towards 1. ``wrk`` (Debian package ``wrk``, C) costs a few tens of
microseconds. :func:`wrk_binary` finds it or stops the run with the one command that
installs it.

:func:`load` runs a warm-up, then one measured ``wrk --latency`` run over keep-alive
connections against one URL, or against several paths picked at random per request (a
small Lua script). It samples the user + system CPU time of the named server processes
(``psutil``) around the measured run, and wrk's own CPU apart, so a table of CPU per
request shows the servers only.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

INSTALL_HINT = "wrk not found on PATH: install it with `apt-get install wrk` (Debian package wrk)"


def wrk_binary() -> str:
    """The path of ``wrk``; exits the benchmark with one line naming the install command."""
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(INSTALL_HINT)
    return found


@dataclass
class Window:
    """One measured wrk run: throughput, latency percentiles and CPU seconds per process."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_s: dict[str, float]
    errors: int
    loader_cpu_s: float

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds

    def cpu_ms_per_request(self) -> dict[str, float]:
        """CPU milliseconds per request of each server process."""
        return {name: cpu / self.requests * 1000 for name, cpu in self.cpu_s.items()}

    @property
    def loader_ms_per_request(self) -> float:
        """CPU milliseconds per request of wrk itself (not part of :meth:`cpu_ms_per_request`)."""
        return self.loader_cpu_s / self.requests * 1000


class CpuMeter:
    """User + system CPU seconds of a set of processes (threads included)."""

    def __init__(self, processes: Mapping[str, int]) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in processes.items()}

    def sample(self) -> dict[str, float]:
        """CPU seconds so far of every process."""
        out = {}
        for name, proc in self._procs.items():
            times = proc.cpu_times()
            out[name] = times.user + times.system
        return out


_LATENCY = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}

# Picks one of the paths at random for every request; wrk.format adds the -H headers.
_PATHS_SCRIPT = """\
local paths = {paths}
math.randomseed({seed})
request = function()
  return wrk.format(nil, paths[math.random(#paths)])
end
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse(output: str) -> tuple[int, float, float, float, int]:
    """Requests, seconds, p50 ms, p99 ms and errors (non-2xx and socket) of a wrk report."""
    requests_match = _REQUESTS.search(output)
    if requests_match is None:
        raise RuntimeError(f"cannot parse wrk output:\n{output}")
    requests = int(requests_match.group(1))
    seconds = float(requests_match.group(2)) * _UNIT_MS[requests_match.group(3)] / 1000
    pct = {int(p): float(v) * _UNIT_MS[u] for p, v, u in _LATENCY.findall(output)}
    errors = sum(int(n) for n in _NON_2XX.findall(output))
    socket_errors = _SOCKET_ERRORS.search(output)
    if socket_errors is not None:
        errors += sum(int(n) for n in socket_errors.groups())
    return requests, seconds, pct.get(50, float("nan")), pct.get(99, float("nan")), errors


def load(
    url: str,
    *,
    headers: Mapping[str, str],
    processes: Mapping[str, int],
    connections: int,
    seconds: float,
    warmup: float,
    paths: Sequence[str] = (),
    seed: int = 1,
) -> Window:
    """Warm up for ``warmup`` s, then measure ``seconds`` s of load on ``url``.

    With ``paths``, every request goes to one of them (on ``url``'s host) chosen at random.
    Raises ``RuntimeError`` if wrk fails, or if any answer was not a 2xx or any socket error
    happened (a benchmark of errors measures nothing).
    """
    wrk = wrk_binary()
    header_args = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
    with tempfile.TemporaryDirectory() as tmp:
        script: list[str] = []
        if paths:
            lua = Path(tmp) / "paths.lua"
            table = "{" + ", ".join(json.dumps(p) for p in paths) + "}"
            lua.write_text(_PATHS_SCRIPT.format(paths=table, seed=seed))
            script = ["-s", str(lua)]
        base = [wrk, "-t1", f"-c{connections}", "--timeout", "10s", *header_args, *script]
        if warmup > 0:
            subprocess.run(
                [*base, f"-d{max(1, round(warmup))}s", url], capture_output=True, check=True
            )
        meter = CpuMeter(processes)
        before, loader_before = meter.sample(), _children_cpu()
        out = subprocess.run(
            [*base, "--latency", f"-d{max(1, round(seconds))}s", url],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        after, loader_after = meter.sample(), _children_cpu()
    requests, measured, p50, p99, errors = parse(out)
    if errors:
        raise RuntimeError(f"{url}: {errors} answers were errors\n{out}")
    if not requests:
        raise RuntimeError(f"{url}: no request completed\n{out}")
    cpu = {name: after[name] - before[name] for name in after}
    return Window(requests, measured, p50, p99, cpu, errors, loader_after - loader_before)
