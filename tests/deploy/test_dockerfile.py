"""The Dockerfile, parsed: a slim base, a non-root user, locked dependencies, real commands.

There is no Docker engine on CI, so the image cannot be built here; these checks read the
instructions the way the builder would (line continuations, stages, ``ARG`` defaults,
``.dockerignore``) and hold them against the repository.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests import distributions

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its (continuation-joined) arguments."""

    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    """The instructions from one ``FROM`` to the next."""

    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        """This stage's instructions with ``keyword``."""
        return [i for i in self.instructions if i.keyword == keyword]


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile, comments dropped and ``\\`` continuations joined."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(part for part in pending if part)
        pending = []
        keyword, _, arguments = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def parse_stages(instructions: list[Instruction]) -> list[Stage]:
    """Build stages with ``ARG`` defaults declared before the first ``FROM`` substituted."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            base = re.sub(
                r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0]
            )
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base, name))
        elif not stages:
            assert instruction.keyword == "ARG", f"{instruction.keyword} before the first FROM"
            key, _, default = instruction.arguments.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(instruction)
    return stages


def exec_form(instruction: Instruction) -> list[str]:
    """The JSON array of an exec-form ``CMD``/``ENTRYPOINT`` (fails on shell form)."""
    value = json.loads(instruction.arguments)
    assert isinstance(value, list), f"line {instruction.line}: not in exec form"
    return [str(v) for v in value]


def ignored_by_dockerignore(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` (relative to the context) is left out by ``.dockerignore`` rules."""
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        # A pattern matches the path itself or any of its parent directories.
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        candidates = [pattern]
        if pattern.startswith("**/"):
            candidates.append(pattern[3:])
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            excluded = not negated
    return excluded


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_stages(parse_instructions((ROOT / "Dockerfile").read_text()))


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_every_stage_builds_from_a_slim_python_image(stages: list[Stage]) -> None:
    external = [s.base for s in stages if s.base not in {t.name for t in stages}]
    assert external
    for base in external:
        image, _, tag = base.partition(":")
        assert image in {"python", "docker.io/library/python"}, base
        assert "slim" in tag.split("-"), f"{base} is not a slim image"
        assert re.match(r"3\.1[1-9]\b", tag), f"{base}: the project needs Python 3.11+"


def test_the_runtime_stage_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    final = stages[-1]
    users = final.of("USER")
    assert users, "the final stage never switches away from root"
    last = users[-1]
    assert all(i.keyword not in {"RUN"} for i in final.instructions if i.line > last.line), (
        "commands after USER would be the only ones running as the user; keep USER last"
    )
    uid, _, gid = last.arguments.partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can check it.
    assert uid.isdigit(), last.arguments
    assert int(uid) > 0, "uid 0 is root"
    assert not gid or (gid.isdigit() and int(gid) > 0), last.arguments
    created = " ".join(i.arguments for i in final.of("RUN"))
    assert f"--uid {uid}" in created, "the user is not created in the image"


@dataclass(frozen=True)
class Pin:
    """One entry of a requirements file: ``name==version`` and its ``--hash`` options."""

    name: str
    version: str
    hashes: tuple[str, ...]


def parse_pins(text: str) -> dict[str, Pin]:
    """Normalised name → pin, for a pip requirements file of ``name==version`` lines."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the file ends inside a continued line"
    pins: dict[str, Pin] = {}
    for line in logical:
        requirement, *options = line.split()
        name, separator, version = requirement.partition("==")
        assert separator, f"{requirement}: not pinned with =="
        assert version, f"{requirement}: no version"
        hashes = tuple(o.removeprefix("--hash=") for o in options if o.startswith("--hash="))
        assert len(hashes) == len(options), f"{requirement}: options other than --hash"
        pins[canonicalize_name(name)] = Pin(canonicalize_name(name), version, hashes)
    return pins


def pip_installs(stages: list[Stage]) -> list[tuple[Stage, Instruction, list[str]]]:
    """Every ``pip install`` of the Dockerfile: its stage, instruction and arguments."""
    found = []
    for stage in stages:
        for instruction in stage.of("RUN"):
            words = shlex.split(instruction.arguments)
            for index, word in enumerate(words):
                if word == "install" and index and words[index - 1].endswith(("pip", "pip3")):
                    end = words.index("&&", index) if "&&" in words[index:] else len(words)
                    found.append((stage, instruction, words[index + 1 : end]))
    return found


@pytest.fixture(scope="module")
def runtime_lock() -> dict[str, Pin]:
    return parse_pins((ROOT / "requirements-runtime.lock").read_text())


def test_dependencies_come_from_the_hashed_runtime_lock(stages: list[Stage]) -> None:
    installs = pip_installs(stages)
    assert installs, "nothing is installed with pip"
    from_lock = [(s, i, a) for s, i, a in installs if "-r" in a]
    project = [(s, i, a) for s, i, a in installs if "-r" not in a]
    assert len(from_lock) == 1, "the dependencies are installed once, from the runtime lock"
    stage, lock_install, args = from_lock[0]
    assert args[args.index("-r") + 1] == "requirements-runtime.lock", args
    # Every file checked against the lock's hashes; nothing resolved beyond the lock.
    assert {"--require-hashes", "--no-deps"} <= set(args), args
    assert not {"-c", "--constraint", "-e", "."} & set(args), args
    for other_stage, install, args in project:
        assert other_stage is stage, "the project is installed where its dependencies are"
        assert install.line > lock_install.line, "the project after its dependencies"
        assert "--no-deps" in args, f"line {install.line}: pip would resolve dependencies"
        assert args[-1] == ".", f"line {install.line}: not the project: {args}"
    assert project, "the project itself is never installed"

    def copied_before(line: int) -> set[str]:
        copies = [
            i.arguments for i in stage.of("COPY") if i.line < line and "--from" not in i.arguments
        ]
        return {word for c in copies for word in c.split()[:-1]}

    assert "requirements-runtime.lock" in copied_before(lock_install.line)
    # Only the lock before the dependency layer: a source or pyproject change reuses it.
    assert copied_before(lock_install.line) == {"requirements-runtime.lock"}
    assert "pyproject.toml" in copied_before(project[0][1].line)


def test_the_runtime_lock_pins_what_requirements_lock_pins_with_hashes(
    runtime_lock: dict[str, Pin],
) -> None:
    pinned = parse_pins((ROOT / "requirements.lock").read_text())
    assert runtime_lock
    for name, pin in runtime_lock.items():
        assert name in pinned, f"{name} is in the runtime lock but not in requirements.lock"
        assert pin.version == pinned[name].version, (
            f"{name}: {pin.version} here, {pinned[name].version} in requirements.lock"
        )
        assert pin.hashes, f"{name} has no hash"
        for digest in pin.hashes:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{name}: {digest}"
    header = (ROOT / "requirements-runtime.lock").read_text().split("\n", 12)[:12]
    assert any("pip-compile" in line and "--generate-hashes" in line for line in header), (
        "the header must say how the lock is regenerated"
    )


def test_the_runtime_lock_is_the_runtime_and_only_the_runtime(
    runtime_lock: dict[str, Pin],
) -> None:
    locked = set(runtime_lock)
    dev_only = locked & distributions.development_only()
    assert not dev_only, f"test/local-stack distributions in the image: {sorted(dev_only)}"
    # What `pip install .` brings here (pyproject's dependencies, closed over the metadata).
    assert locked == distributions.runtime(), (
        f"missing: {sorted(distributions.runtime() - locked)}, "
        f"extra: {sorted(locked - distributions.runtime())}; regenerate it (see its header)"
    )


def test_copied_sources_exist_and_are_in_the_build_context(
    stages: list[Stage], ignore_patterns: list[str]
) -> None:
    for stage in stages:
        for copy in stage.of("COPY"):
            words = copy.arguments.split()
            if any(w.startswith("--from") for w in words):
                continue
            for source in (w for w in words[:-1] if not w.startswith("--")):
                relative = source.rstrip("/")
                assert (ROOT / relative).exists(), f"line {copy.line}: {source} does not exist"
                assert not ignored_by_dockerignore(relative, ignore_patterns), (
                    f"line {copy.line}: {source} is excluded by .dockerignore"
                )


def test_the_context_leaves_out_local_state(ignore_patterns: list[str]) -> None:
    for path in (".venv", ".run", ".git", "services/user/tests", "kit/__pycache__"):
        assert ignored_by_dockerignore(path, ignore_patterns), path
    assert not ignored_by_dockerignore("services/user/service.py", ignore_patterns)


def test_the_default_command_is_a_module_of_the_image(stages: list[Stage]) -> None:
    final = stages[-1]
    assert not final.of("ENTRYPOINT"), "an entrypoint would stop manifests choosing the command"
    command = exec_form(final.of("CMD")[-1])
    assert command[:2] == ["python", "-m"], command
    module = command[2]
    assert (ROOT / module.replace(".", "/") / "__main__.py").is_file(), module


def test_the_image_can_run_on_a_read_only_root_filesystem(stages: list[Stage]) -> None:
    env = " ".join(i.arguments for i in stages[-1].of("ENV"))
    assert re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", env)
    compiled = " ".join(i.arguments for s in stages for i in s.of("RUN"))
    assert "compileall" in compiled, "byte-code must be compiled at build time"
