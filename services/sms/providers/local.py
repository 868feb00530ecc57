"""The local provider of ``make run``: messages go to a file a person can read, not to phones.

Each send appends one JSON line to the configured file (default ``.run/sms.log``)::

    {"ts": "2024-05-01T12:00:00Z", "provider": "local", "tpl_id": "login_code",
     "numbers": ["13800138000"], "args": ["123456"]}

and logs the send with masked numbers and without the arguments (they may hold a code). The
settings refuse this provider in ``prod`` mode.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from services.sms.domain import mask_phones
from services.sms.providers.port import ProviderResult, ProviderUnavailable

logger = logging.getLogger(__name__)


class LocalSmsProvider:
    """Writes each message as a JSON line to ``path``."""

    def __init__(self, name: str, path: Path) -> None:
        self._name = name
        self._path = path
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        """The configured provider name."""
        return self._name

    def _append(self, line: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    async def send(
        self, tpl_id: str, args: Sequence[str], numbers: Sequence[str]
    ) -> ProviderResult:
        """Append the message to the file and log it (masked)."""
        line = json.dumps(
            {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "provider": self._name,
                "tpl_id": tpl_id,
                "numbers": list(numbers),
                "args": list(args),
            },
            ensure_ascii=False,
        )
        try:
            async with self._lock:
                await asyncio.to_thread(self._append, line)
        except OSError as exc:
            raise ProviderUnavailable(self._name, f"cannot write {self._path}") from exc
        logger.info(
            "local sms written",
            extra={"tpl_id": tpl_id, "numbers": mask_phones(numbers), "file": str(self._path)},
        )
        return ProviderResult(self._name, uuid.uuid4().hex)
