"""The double-write mode of a migration and the holder that switches it at run time.

A migration moves through four modes, one step at a time::

    source_only → source_first → destination_first → destination_only

- ``source_only``: the application uses the source alone (before the destination exists,
  and to roll back);
- ``source_first``: writes commit on the source, then are copied to the destination; reads
  come from the source. A failed destination write never fails the caller;
- ``destination_first``: the same with the sides swapped: the destination is now the
  reference, the source the copy (so that rolling back to the source stays possible);
- ``destination_only``: the source is no longer written.

:class:`ModeHolder` holds the current mode. It is switched with :meth:`ModeHolder.set` (an
admin endpoint) or follows a callable (:meth:`ModeHolder.follow`, e.g. a live setting:
``holder.follow(lambda: live.current.migration_mode)``). A unit of work reads it **once**,
when it begins (:meth:`ModeHolder.current`), so one request sees one mode from start to end
even when the mode changes while it runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import StrEnum

from kit.migrator.metrics import MODE

logger = logging.getLogger(__name__)


class Side(StrEnum):
    """One of the two databases of a migration."""

    SOURCE = "source"
    DESTINATION = "destination"

    @property
    def other(self) -> Side:
        """The other database."""
        return Side.DESTINATION if self is Side.SOURCE else Side.SOURCE


class Mode(StrEnum):
    """Where writes go, in which order, and where reads come from (module docstring)."""

    SOURCE_ONLY = "source_only"
    SOURCE_FIRST = "source_first"
    DESTINATION_FIRST = "destination_first"
    DESTINATION_ONLY = "destination_only"

    @property
    def first(self) -> Side:
        """The side written in the caller's transaction, and read from."""
        return Side.SOURCE if self in (Mode.SOURCE_ONLY, Mode.SOURCE_FIRST) else Side.DESTINATION

    @property
    def second(self) -> Side | None:
        """The side written after the first one committed; ``None`` in the ``*_only`` modes."""
        if self in (Mode.SOURCE_FIRST, Mode.DESTINATION_FIRST):
            return self.first.other
        return None

    @property
    def step(self) -> int:
        """The mode's place in the migration (0 to 3)."""
        return _ORDER.index(self)


_ORDER = (Mode.SOURCE_ONLY, Mode.SOURCE_FIRST, Mode.DESTINATION_FIRST, Mode.DESTINATION_ONLY)


class ModeRefused(ValueError):
    """A mode switch :meth:`ModeHolder.set` does not make (unknown mode, or a skipped step)."""


def parse_mode(value: Mode | str) -> Mode:
    """``value`` as a :class:`Mode` (its name in any case); :class:`ModeRefused` otherwise."""
    if isinstance(value, Mode):
        return value
    try:
        return Mode(str(value).strip().lower())
    except ValueError:
        raise ModeRefused(
            f"unknown migration mode {value!r}; one of {[m.value for m in Mode]}"
        ) from None


class ModeHolder:
    """The current :class:`Mode` of one migration, switched at run time.

    Args:
        migration: the migration's name (logs, the ``webook_migrator_mode`` gauge).
        initial: the mode before anything sets it.

    Either it holds a mode given with :meth:`set`, or it follows a source given with
    :meth:`follow`, read at each :meth:`current`; the last call of the two wins. A value the
    source gives that is not a mode is ignored (the last good mode stays, logged once per
    bad value). Thread-safe: reads take no lock, switches do.
    """

    def __init__(self, migration: str, initial: Mode | str = Mode.SOURCE_ONLY) -> None:
        self._migration = migration
        self._mode = parse_mode(initial)
        self._source: Callable[[], Mode | str] | None = None
        self._last_bad: object = None
        self._lock = threading.Lock()
        MODE.labels(migration).set(self._mode.step)

    @property
    def migration(self) -> str:
        """The migration's name."""
        return self._migration

    def current(self) -> Mode:
        """The mode now. Read it once per unit of work, at its start."""
        source = self._source
        if source is None:
            return self._mode
        try:
            value = parse_mode(source())
        except Exception as exc:
            raw = repr(exc)
            if raw != self._last_bad:
                self._last_bad = raw
                logger.warning(
                    "migration mode source gave no valid mode; keeping the last one",
                    extra={"migration": self._migration, "mode": self._mode, "error": raw},
                )
            return self._mode
        if value is not self._mode:
            self._switch(value, "followed")
        return value

    def set(self, mode: Mode | str, *, force: bool = False) -> Mode:
        """Hold ``mode`` from now on (stops following a source); the mode held before.

        A switch skipping a step (``source_only`` → ``destination_first``) is refused with
        :class:`ModeRefused` unless ``force``: each step relies on the previous one having
        converged (docs/migration.md, "Switching modes").
        """
        wanted = parse_mode(mode)
        with self._lock:
            before = self.current()
            if abs(wanted.step - before.step) > 1 and not force:
                raise ModeRefused(
                    f"migration {self._migration!r}: {before} → {wanted} skips a step "
                    "(force it if you mean it)"
                )
            self._source = None
            self._switch(wanted, "set")
            return before

    def follow(self, source: Callable[[], Mode | str]) -> None:
        """Read the mode from ``source`` at each :meth:`current` from now on (a live value).

        A followed value is applied even when it skips a step (the operator changed the
        setting), with a warning.
        """
        with self._lock:
            self._source = source
            self._last_bad = None
        self.current()

    def _switch(self, mode: Mode, how: str) -> None:
        before, self._mode = self._mode, mode
        if before is mode:
            return
        MODE.labels(self._migration).set(mode.step)
        level = logging.WARNING if abs(mode.step - before.step) > 1 else logging.INFO
        logger.log(
            level,
            "migration mode switched",
            extra={"migration": self._migration, "from": before, "to": mode, "how": how},
        )
