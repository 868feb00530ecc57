"""Credentials of the local stack's infrastructure: etcd users and roles, Redis ACL users.

A stack runs its infrastructure with authentication on, as a cluster does (docs/security.md,
"Infrastructure credentials"). :func:`stack_credentials` makes (once) and reuses a random
password for every workload — every catalog service and the gateway — and for the
administrators (etcd's ``root``, Redis's ``admin``), kept in ``<state dir>/credentials.json``
(mode 0600) next to the PKI, so a restarted stack finds its users again.

- etcd: :func:`bootstrap_etcd` creates ``root``, one user and one role per workload (a
  service reads the whole registry prefix, for discovery, and writes only
  ``<prefix>/<name>/``; the gateway only reads; each workload reads its own live settings,
  ``/webook/config/<environment>/<name>/``, and writes none), the ``config-operator`` user
  and role (``webookctl``: reads and writes ``/webook/config/`` and
  ``/webook/config-history/``, nobody else writes there), then turns authentication on. It is
  idempotent: on an etcd whose authentication is already on it logs in as ``root`` and
  brings users, passwords and permissions back to what the credentials say.
- Redis: :func:`redis_acl_rules` gives each workload its own key and channel patterns
  (:data:`REDIS_KEY_PATTERNS`) and no administrative command, and disables ``default``;
  :func:`write_redis_acl_file` writes them for ``redis-server --aclfile`` and
  :func:`apply_redis_acl` sets them on a running server.

Kafka stays without authentication locally: the local broker (tansu) supports SASL/SCRAM
only with users created through itself, which its in-memory storage cannot keep.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import grpc
import redis
from aetcd.rpc import rpc_pb2, rpc_pb2_grpc
from aetcd.rpc.auth_pb2 import Permission

from devstack.catalog import CATALOG
from devstack.infra import ManagedProcess, etcd_process, free_port, redis_process
from devstack.tls import GATEWAY, stack_identities
from kit.liveconfig import HISTORY_ROOT, KEY_ROOT

logger = logging.getLogger(__name__)

CREDENTIALS_FILE: Final = "credentials.json"
ETCD_ROOT: Final = "root"
CONFIG_OPERATOR: Final = "config-operator"
# The environments whose live settings a stack's workloads may read (kit.config's modes).
CONFIG_ENVIRONMENTS: Final = ("dev", "test", "prod")
REDIS_ADMIN: Final = "admin"
DEFAULT_REGISTRY_PREFIX: Final = "/webook/services"

# The keys (and pub/sub channels) each workload's Redis user may touch: each service's
# from its catalog entry (``redis_keys``), the gateway's those of its sessions and rate
# limits. A new key prefix needs a pattern there, or the service's commands are refused.
REDIS_KEY_PATTERNS: Final[Mapping[str, tuple[str, ...]]] = {
    **{entry.name: entry.redis_keys for entry in CATALOG},
    GATEWAY: (
        "users:ssid:*",
        "users:revoked-before:*",
        "webook:ratelimit:*",
        "webook:gateway:*",
    ),
}
# Every command but the administrative and dangerous ones (CONFIG, FLUSHALL, KEYS, ...).
_REDIS_COMMANDS: Final = "+@all -@admin -@dangerous"


class CredentialsError(RuntimeError):
    """The stack's credentials cannot be made, read or applied."""


@dataclass(frozen=True)
class Credential:
    """A user name and its password."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class StackCredentials:
    """Every credential of one stack: administrators, the configuration operator
    (``webookctl config``) and one user per workload."""

    etcd_root: Credential
    redis_admin: Credential
    workloads: Mapping[str, Credential]
    config_operator: Credential

    def workload(self, identity: str) -> Credential:
        """The credential of workload ``identity`` (its etcd and its Redis user)."""
        try:
            return self.workloads[identity]
        except KeyError:
            raise CredentialsError(f"the stack has no credentials for {identity!r}") from None

    def env(self, identity: str, prefix: str, redis_url: str) -> dict[str, str]:
        """The settings that log process ``identity`` in to etcd and Redis.

        ``redis_url``: the stack's Redis URL, into which the workload's user is written.
        """
        credential = self.workload(identity)
        return {
            f"{prefix}ETCD_USERNAME": credential.username,
            f"{prefix}ETCD_PASSWORD": credential.password,
            f"{prefix}REDIS_URL": url_with_credential(redis_url, credential),
        }


def url_with_credential(url: str, credential: Credential) -> str:
    """``url`` (``redis://host:port/db``) with ``credential`` as its user and password."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    userinfo = f"{quote(credential.username, safe='')}:{quote(credential.password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


def _new_password() -> str:
    return secrets.token_urlsafe(24)


def stack_credentials(state_dir: Path, identities: Iterable[str] | None = None) -> StackCredentials:
    """The stack's credentials in ``state_dir/credentials.json``, made or completed, reused.

    Passwords already in the file are kept; a workload without one gets a new one. The file
    is written with mode 0600.
    """
    names = tuple(identities) if identities is not None else stack_identities()
    path = state_dir / CREDENTIALS_FILE
    stored: dict[str, Any] = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CredentialsError(f"cannot read {path}: {exc}") from exc
    passwords: dict[str, str] = dict(stored.get("workloads", {}))
    changed = not path.exists()
    for name in names:
        if name not in passwords:
            passwords[name] = _new_password()
            changed = True
    admins = {
        "etcd_root": stored.get("etcd_root"),
        "redis_admin": stored.get("redis_admin"),
        "config_operator": stored.get("config_operator"),
    }
    for key, value in admins.items():
        if not value:
            admins[key] = _new_password()
            changed = True
    if changed:
        state_dir.mkdir(parents=True, exist_ok=True)
        content = json.dumps({**admins, "workloads": passwords}, indent=2, sort_keys=True)
        # Created 0600 from the start: the passwords are never readable by others.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(content)
        os.chmod(path, 0o600)
    return StackCredentials(
        etcd_root=Credential(ETCD_ROOT, str(admins["etcd_root"])),
        redis_admin=Credential(REDIS_ADMIN, str(admins["redis_admin"])),
        workloads={name: Credential(name, passwords[name]) for name in names},
        config_operator=Credential(CONFIG_OPERATOR, str(admins["config_operator"])),
    )


# --- etcd ---------------------------------------------------------------------------------


def _prefix_end(key: bytes) -> bytes:
    """The end of etcd's range of every key starting with ``key``."""
    for i in range(len(key) - 1, -1, -1):
        if key[i] < 0xFF:
            return key[:i] + bytes([key[i] + 1])
    return b"\0"


@dataclass(frozen=True)
class EtcdGrant:
    """What one workload's etcd role may do: read the registry, write its own prefix, read
    its own live settings (one prefix per environment)."""

    read_prefix: str
    write_prefix: str | None
    config_prefixes: tuple[str, ...] = ()


def config_prefix(environment: str, name: str) -> str:
    """``/webook/config/<environment>/<name>/``: the live settings of workload ``name``."""
    return f"{KEY_ROOT}/{environment}/{name}/"


def etcd_grants(
    identities: Iterable[str],
    registry_prefix: str,
    environments: Sequence[str] = CONFIG_ENVIRONMENTS,
) -> dict[str, EtcdGrant]:
    """The permissions of each workload's role under ``registry_prefix``.

    A service reads ``<prefix>/`` (it discovers its peers) and reads and writes
    ``<prefix>/<name>/`` (its registrations, leases included); the gateway only reads.
    Every workload reads its own live settings in each of ``environments``
    (``/webook/config/<environment>/<name>/``) and nothing else of the configuration.
    """
    root = registry_prefix.rstrip("/") + "/"
    return {
        name: EtcdGrant(
            read_prefix=root,
            write_prefix=None if name == GATEWAY else f"{root}{name}/",
            config_prefixes=tuple(config_prefix(env, name) for env in environments),
        )
        for name in identities
    }


def config_operator_prefixes() -> tuple[str, ...]:
    """What the ``config-operator`` role reads and writes: the settings and their history."""
    return (f"{KEY_ROOT}/", f"{HISTORY_ROOT}/")


class _EtcdAdmin:
    """The few calls of etcd's auth API the bootstrap needs, over a blocking channel."""

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._auth = rpc_pb2_grpc.AuthStub(channel)
        self._timeout = timeout
        self._metadata: Sequence[tuple[str, str]] = ()
        self._login: Credential | None = None

    def login(self, credential: Credential) -> None:
        answer = self._auth.Authenticate(
            rpc_pb2.AuthenticateRequest(name=credential.username, password=credential.password),
            timeout=self._timeout,
        )
        self._login = credential
        self._metadata = (("token", answer.token),)

    def _call(self, method: str, request: Any, *, exists_ok: bool = False) -> None:
        try:
            try:
                getattr(self._auth, method)(request, timeout=self._timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                # Every change to users and roles makes etcd refuse the tokens issued before.
                if self._login is None or exc.code() is not grpc.StatusCode.UNAUTHENTICATED:
                    raise
                self.login(self._login)
                getattr(self._auth, method)(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            details = str(exc.details())
            if exists_ok and "already exists" in details:
                return
            raise

    def login_if_enabled(self, credential: Credential) -> bool:
        """Log in as ``credential``; ``False`` (and no login) if etcd's auth is still off."""
        try:
            self.login(credential)
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
                return False
            raise CredentialsError(
                f"etcd has authentication on and refuses {credential.username}'s password "
                "(its data directory belongs to another state directory?)"
            ) from exc
        return True

    def ensure_user(self, credential: Credential) -> None:
        if self._login is not None and self._login.username == credential.username:
            return  # logged in with this very password
        self._call(
            "UserAdd",
            rpc_pb2.AuthUserAddRequest(name=credential.username, password=credential.password),
            exists_ok=True,
        )
        self._call(
            "UserChangePassword",
            rpc_pb2.AuthUserChangePasswordRequest(
                name=credential.username, password=credential.password
            ),
        )

    def ensure_role(self, role: str, user: str) -> None:
        self._call("RoleAdd", rpc_pb2.AuthRoleAddRequest(name=role), exists_ok=True)
        self._call("UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user=user, role=role))

    def grant(self, role: str, prefix: str, perm_type: int) -> None:
        key = prefix.encode()
        permission = Permission(permType=perm_type, key=key, range_end=_prefix_end(key))
        self._call(
            "RoleGrantPermission",
            rpc_pb2.AuthRoleGrantPermissionRequest(name=role, perm=permission),
        )

    def enable(self) -> None:
        self._call("AuthEnable", rpc_pb2.AuthEnableRequest())


def bootstrap_etcd(
    endpoint: str,
    credentials: StackCredentials,
    registry_prefix: str = DEFAULT_REGISTRY_PREFIX,
    *,
    timeout: float = 5.0,
) -> None:
    """Create ``root`` and the workloads' users and roles in etcd, then turn auth on.

    ``endpoint``: ``host:port`` of etcd's client URL. Safe to run again on the same etcd
    (a restarted stack): it then logs in as ``root`` and re-applies users, passwords and
    grants. :class:`CredentialsError` if etcd's authentication is on and ``root``'s password
    is not the one in ``credentials`` (the state directory was replaced).
    """
    target = endpoint.split("://", 1)[-1]
    with grpc.insecure_channel(target) as channel:
        admin = _EtcdAdmin(channel, timeout)
        try:
            admin.login_if_enabled(credentials.etcd_root)
            admin.ensure_user(credentials.etcd_root)
            admin.ensure_role("root", ETCD_ROOT)
            grants = etcd_grants(credentials.workloads, registry_prefix)
            for name, grant in grants.items():
                admin.ensure_user(credentials.workload(name))
                admin.ensure_role(name, name)
                admin.grant(name, grant.read_prefix, Permission.READ)
                if grant.write_prefix is not None:
                    admin.grant(name, grant.write_prefix, Permission.READWRITE)
                for prefix in grant.config_prefixes:
                    admin.grant(name, prefix, Permission.READ)
            admin.ensure_user(credentials.config_operator)
            admin.ensure_role(CONFIG_OPERATOR, CONFIG_OPERATOR)
            for prefix in config_operator_prefixes():
                admin.grant(CONFIG_OPERATOR, prefix, Permission.READWRITE)
            admin.enable()
        except grpc.RpcError as exc:
            raise CredentialsError(f"cannot set up etcd authentication at {target}: {exc}") from exc
    logger.info(
        "etcd authentication on",
        extra={
            "endpoint": target,
            "prefix": registry_prefix,
            "users": [*sorted(grants), CONFIG_OPERATOR],
        },
    )


@dataclass(frozen=True)
class SecureEtcd:
    """A running etcd with authentication on, and the credentials of its users."""

    server: ManagedProcess
    endpoint: str
    registry_prefix: str
    credentials: StackCredentials


@contextmanager
def secure_etcd(state_dir: Path, registry_prefix: str) -> Iterator[SecureEtcd]:
    """An etcd of its own on free ports with authentication on, stopped on exit.

    Its users are the stack's (:func:`stack_credentials` of ``state_dir``), with grants under
    ``registry_prefix``. A test stack uses one of its own so that no other stack shares its
    registry.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # The lowest password-hash cost: a test stack's every process logs in, on a busy machine.
    proc = etcd_process(state_dir / "etcd-data", port, free_port(), state_dir, bcrypt_cost=4)
    proc.die_with_parent = True
    proc.start()
    try:
        credentials = stack_credentials(state_dir)
        endpoint = f"127.0.0.1:{port}"
        bootstrap_etcd(endpoint, credentials, registry_prefix)
        yield SecureEtcd(proc, endpoint, registry_prefix, credentials)
    finally:
        proc.stop()


@contextmanager
def acl_redis(state_dir: Path, credentials: StackCredentials) -> Iterator[str]:
    """A redis-server of its own whose users are the stack's (``default`` disabled); yields
    its URL without a user (each process gets its own written in), stopped on exit."""
    state_dir.mkdir(parents=True, exist_ok=True)
    acl_file = write_redis_acl_file(state_dir / "redis-users.acl", credentials)
    port = free_port()
    proc = redis_process(port, state_dir, acl_file=acl_file)
    proc.die_with_parent = True
    proc.start()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


# --- Redis --------------------------------------------------------------------------------


def redis_acl_rules(credentials: StackCredentials) -> dict[str, str]:
    """The ACL rules of every Redis user of the stack, by user name (``default`` disabled)."""
    rules = {
        "default": "off resetkeys resetchannels -@all",
        REDIS_ADMIN: f"on >{credentials.redis_admin.password} ~* &* +@all",
    }
    for name, credential in credentials.workloads.items():
        patterns = REDIS_KEY_PATTERNS.get(name, ())
        keys = " ".join(f"~{p}" for p in patterns)
        channels = " ".join(f"&{p}" for p in patterns)
        rules[name] = (
            f"on >{credential.password} resetkeys resetchannels {keys} {channels} {_REDIS_COMMANDS}"
        ).replace("  ", " ")
    return rules


def write_redis_acl_file(path: Path, credentials: StackCredentials) -> Path:
    """Write the stack's Redis users to ``path`` (mode 0600) for ``redis-server --aclfile``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"user {name} {rule}\n" for name, rule in redis_acl_rules(credentials).items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.writelines(lines)
    os.chmod(path, 0o600)
    return path


def apply_redis_acl(url: str, credentials: StackCredentials) -> None:
    """Set the stack's Redis users on the server at ``url`` (which must allow ``ACL``).

    For a server that is already running (a shared test Redis); ``default`` is disabled
    last, so ``url`` may still use it.
    """
    client = redis.Redis.from_url(url)
    command: Any = client.execute_command  # untyped in redis-py
    try:
        rules = redis_acl_rules(credentials)
        for name, rule in rules.items():
            if name != "default":
                command("ACL", "SETUSER", name, "reset", *rule.split())
        command("ACL", "SETUSER", "default", "reset", *rules["default"].split())
    except redis.RedisError as exc:
        raise CredentialsError(f"cannot set the Redis users: {exc}") from exc
    finally:
        client.close()
