"""``scripts/ensure-tools``: what ``make test`` and ``make bench`` do about missing system tools.

The script runs with a ``PATH`` holding only a scratch directory, where the tools, ``id``
and ``apt-get`` are small fakes: so every branch — present, missing as a user, missing as
root with a working or failing apt-get — runs for real without touching the machine's
packages (CI shares it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "ensure-tools"


class FakeSystem:
    """A ``PATH`` directory with fake tools, a fake ``id`` and a fake, logging ``apt-get``."""

    def __init__(self, root: Path, *, uid: int, apt_works: bool = True) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.apt_log = root / "apt.log"
        self._script("id", f'[[ "$1" == -u ]] && echo {uid}')
        tool = f"{self.bin}/$1"
        make_tool = f"make_tool() {{ printf '#!/bin/bash\\n' > {tool}; /bin/chmod +x {tool}; }}"
        installs = (
            'for pkg in "$@"; do case "$pkg" in\n'
            "  prometheus) make_tool promtool; make_tool prometheus ;;\n"
            "  wrk) make_tool wrk ;;\n"
            "esac; done"
        )
        outcome = f'[[ "$1" == install ]] && {{ {installs}; }}\nexit 0' if apt_works else "exit 100"
        self._script("apt-get", f'echo "$*" >> {self.apt_log}\n{make_tool}\n{outcome}')

    def _script(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)

    def install(self, *tools: str) -> None:
        """Tools that are already there."""
        for tool in tools:
            self._script(tool, "exit 0")

    def apt_calls(self) -> list[str]:
        """Every apt-get command line, in order."""
        return self.apt_log.read_text().splitlines() if self.apt_log.exists() else []

    def run(self, *tools: str) -> subprocess.CompletedProcess[str]:
        """``scripts/ensure-tools tools...`` with only the fakes on ``PATH``."""
        return subprocess.run(
            ["/bin/bash", str(SCRIPT), *tools],
            env={"PATH": str(self.bin)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def test_nothing_happens_when_every_tool_is_there(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, uid=0)
    system.install("promtool", "prometheus", "kubectl")

    result = system.run("promtool", "prometheus", "kubectl")

    assert result.returncode == 0, result.stderr
    assert system.apt_calls() == []


def test_a_user_is_told_the_one_command_and_nothing_is_installed(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, uid=1000)
    system.install("kubectl")

    result = system.run("promtool", "prometheus", "kubectl")

    assert result.returncode == 1
    assert "missing promtool prometheus" in result.stderr
    assert "sudo apt-get install -y --no-install-recommends prometheus\n" in result.stderr
    assert system.apt_calls() == []


def test_root_installs_each_missing_package_once(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, uid=0)
    system.install("kubectl")

    result = system.run("promtool", "prometheus", "kubectl")

    assert result.returncode == 0, result.stderr
    assert system.apt_calls() == [
        "update -qq",
        "install -y -qq --no-install-recommends prometheus",
    ]
    assert system.run("promtool", "prometheus", "kubectl").returncode == 0
    assert len(system.apt_calls()) == 2  # installed: nothing more to do


def test_bench_gets_wrk(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, uid=0)

    assert system.run("wrk").returncode == 0
    assert system.apt_calls()[-1] == "install -y -qq --no-install-recommends wrk"


def test_a_failed_install_stops_with_the_reason(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, uid=0, apt_works=False)

    result = system.run("promtool", "kubectl")

    assert result.returncode == 1
    assert "apt-get could not install prometheus kubectl" in result.stderr
    assert "kubernetes.io" in result.stderr  # where kubectl comes from otherwise


def test_a_package_that_does_not_provide_the_tool_is_reported(tmp_path: Path) -> None:
    system = FakeSystem(tmp_path, uid=0)

    result = system.run("kubectl")  # the fake apt-get "installs" kubectl without the binary

    assert result.returncode == 1
    assert "kubectl still missing" in result.stderr


def test_an_unknown_tool_is_refused(tmp_path: Path) -> None:
    result = FakeSystem(tmp_path, uid=0).run("docker")

    assert result.returncode == 1
    assert "unknown tool 'docker'" in result.stderr
