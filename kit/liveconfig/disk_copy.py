"""The local copy of a process's applied remote settings, for starts during an etcd outage.

After each apply that changed the remote values, :func:`save` writes
``<cache dir>/<environment>/<service>.json`` (``{"version", "values"}``) atomically: a
temporary file in the same directory, flushed to disk, then renamed over the old one, so a
crash leaves the old copy or the new one, never half of one. :func:`load` reads it back when
etcd cannot be reached at start; an unreadable copy is ``None`` (logged), the process then
starts on its base settings.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiskCopy:
    """Applied remote values and the etcd revision they came from."""

    version: int
    values: dict[str, Any]


def copy_path(cache_dir: Path, environment: str, service: str) -> Path:
    """Where the copy of ``service``'s settings in ``environment`` lives."""
    return cache_dir / environment / f"{service}.json"


def save(path: Path, copy: DiskCopy) -> None:
    """Write ``copy`` to ``path`` atomically (see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = json.dumps({"version": copy.version, "values": copy.values}, sort_keys=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load(path: Path) -> DiskCopy | None:
    """The copy at ``path``; ``None`` if there is none or it cannot be read."""
    try:
        payload = json.loads(path.read_text())
        return DiskCopy(version=int(payload["version"]), values=dict(payload["values"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning(
            "ignoring an unreadable copy of the settings",
            extra={"path": str(path), "error": repr(exc)},
        )
        return None
