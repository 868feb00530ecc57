"""The double-write mode of a migration and the holder that switches it at run time.

A migration moves through four modes, one step at a time, with a barrier between the two
"first" modes::

    source_only → source_first → switching → destination_first → destination_only

- ``source_only``: the application uses the source alone (before the destination exists,
  and to roll back);
- ``source_first``: writes commit on the source, then are copied to the destination; reads
  come from the source. A failed destination write never fails the caller;
- ``destination_first``: the same with the sides swapped: the destination is now the
  reference, the source the copy (so that rolling back to the source stays possible);
- ``destination_only``: the source is no longer written;
- ``switching``: the barrier between ``source_first`` and ``destination_first`` (either
  way). A unit of work that begins in it waits (:meth:`ModeHolder.begin`) until the mode is
  another one, up to a bound, then runs in that mode; none runs in ``switching`` itself.
  Why: replicas apply a new mode a moment apart, and a counter changed relatively on the
  source by one replica and on the destination by another at the same time loses one of
  the changes when each side's row image is copied over the other. Switching through the
  barrier, once every replica is in it with no unit of work in flight
  (:attr:`ModeHolder.in_flight`), no two units of work of the two modes ever overlap.

:class:`ModeHolder` holds the current mode. It is switched with :meth:`ModeHolder.set` (an
admin endpoint) or follows a callable (:meth:`ModeHolder.follow`, e.g. a live setting:
``holder.follow(lambda: live.current.migration_mode)``). A unit of work reads it **once**,
when it begins (:meth:`ModeHolder.begin`, which counts it in flight until
:meth:`ModeHolder.end`), so one request sees one mode from start to end even when the mode
changes while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from enum import StrEnum

from kit.migrator.errors import MigratorUnavailable, Reason
from kit.migrator.metrics import IN_FLIGHT, MODE

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
    SWITCHING = "switching"
    DESTINATION_FIRST = "destination_first"
    DESTINATION_ONLY = "destination_only"

    @property
    def first(self) -> Side:
        """The side written in the caller's transaction, and read from.

        ``switching`` runs no unit of work; it answers the source for what needs a side
        (a validation's default base): with nothing in flight both sides agree.
        """
        if self in (Mode.SOURCE_ONLY, Mode.SOURCE_FIRST, Mode.SWITCHING):
            return Side.SOURCE
        return Side.DESTINATION

    @property
    def second(self) -> Side | None:
        """The side written after the first one committed; ``None`` in the ``*_only`` modes."""
        if self in (Mode.SOURCE_FIRST, Mode.SWITCHING, Mode.DESTINATION_FIRST):
            return self.first.other
        return None

    @property
    def step(self) -> float:
        """The mode's place in the migration: 0 to 3, ``switching`` 1.5 (the mode gauge)."""
        return _STEPS[self]


_STEPS = {
    Mode.SOURCE_ONLY: 0.0,
    Mode.SOURCE_FIRST: 1.0,
    Mode.SWITCHING: 1.5,
    Mode.DESTINATION_FIRST: 2.0,
    Mode.DESTINATION_ONLY: 3.0,
}
# The switches made without force: one step either way, through the barrier between the
# two "first" modes.
_NEXT = {
    Mode.SOURCE_ONLY: {Mode.SOURCE_FIRST},
    Mode.SOURCE_FIRST: {Mode.SOURCE_ONLY, Mode.SWITCHING},
    Mode.SWITCHING: {Mode.SOURCE_FIRST, Mode.DESTINATION_FIRST},
    Mode.DESTINATION_FIRST: {Mode.SWITCHING, Mode.DESTINATION_ONLY},
    Mode.DESTINATION_ONLY: {Mode.DESTINATION_FIRST},
}


def is_step(before: Mode, after: Mode) -> bool:
    """Whether ``before`` → ``after`` is one step (or no change): what needs no force."""
    return before is after or after in _NEXT[before]


class ModeRefused(ValueError):
    """A mode switch :meth:`ModeHolder.set` does not make (unknown mode, or a skipped step)."""


class ModeSwitching(MigratorUnavailable):
    """A unit of work waited its bound at the ``switching`` barrier (UNAVAILABLE, retryable:
    the switch is taking longer than expected)."""


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

    Units of work begin with :meth:`begin` and end with :meth:`end`: the holder counts them
    in flight (:attr:`in_flight`, the ``webook_migrator_units_in_flight`` gauge) and holds
    those that begin in ``switching`` until the mode changes (module docstring).
    """

    def __init__(self, migration: str, initial: Mode | str = Mode.SOURCE_ONLY) -> None:
        self._migration = migration
        self._mode = parse_mode(initial)
        self._source: Callable[[], Mode | str] | None = None
        self._last_bad: object = None
        self._lock = threading.RLock()
        self._in_flight = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        MODE.labels(migration).set(self._mode.step)
        IN_FLIGHT.labels(migration).set(0)

    @property
    def migration(self) -> str:
        """The migration's name."""
        return self._migration

    @property
    def in_flight(self) -> int:
        """Units of work of this process that began (:meth:`begin`) and have not ended."""
        return self._in_flight

    async def begin(self, wait_s: float) -> Mode:
        """The mode a unit of work runs in, counted in flight until :meth:`end`.

        In ``switching`` it waits until the mode is another one (woken by the switch, not
        by polling), at most ``wait_s`` seconds; then :class:`ModeSwitching`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            # Registered before the mode is read, so that a switch in between wakes it.
            waiter: asyncio.Future[None] = loop.create_future()
            entry = (loop, waiter)
            with self._lock:
                self._waiters.append(entry)
            try:
                with self._lock:
                    mode = self.current()
                    if mode is not Mode.SWITCHING:
                        self._in_flight += 1
                        IN_FLIGHT.labels(self._migration).set(self._in_flight)
                        return mode
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._timed_out(wait_s)
                try:
                    await asyncio.wait_for(waiter, remaining)
                except TimeoutError:
                    raise self._timed_out(wait_s) from None
            finally:
                with self._lock:
                    self._waiters.remove(entry)

    def end(self) -> None:
        """A unit of work that :meth:`begin` counted has ended (committed or not)."""
        with self._lock:
            self._in_flight = max(self._in_flight - 1, 0)
            IN_FLIGHT.labels(self._migration).set(self._in_flight)

    def refresh(self) -> Mode:
        """Read a followed source now (call it when the source changed: units of work
        waiting at the barrier wake on the switch this makes); the mode."""
        return self.current()

    def _timed_out(self, wait_s: float) -> ModeSwitching:
        logger.warning(
            "unit of work gave up waiting for the mode switch",
            extra={"migration": self._migration, "wait_s": wait_s},
        )
        return ModeSwitching(
            Reason.MODE_SWITCHING,
            f"migration {self._migration!r} is switching modes for longer than {wait_s:g} s; "
            "try again",
            metadata={"migration": self._migration},
        )

    def current(self) -> Mode:
        """The mode now (``switching`` included); units of work use :meth:`begin`."""
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

        A switch skipping a step (``source_only`` → ``destination_first``, or between the
        two "first" modes without ``switching``) is refused with :class:`ModeRefused` unless
        ``force``: each step relies on the previous one having converged, and the barrier on
        every replica having drained (docs/migration.md, "Switching modes").
        """
        wanted = parse_mode(mode)
        with self._lock:
            before = self.current()
            if not is_step(before, wanted) and not force:
                through = (
                    " (through switching)"
                    if {before, wanted} == {Mode.SOURCE_FIRST, Mode.DESTINATION_FIRST}
                    else ""
                )
                raise ModeRefused(
                    f"migration {self._migration!r}: {before} → {wanted} skips a step"
                    f"{through} (force it if you mean it)"
                )
            self._source = None
            self._switch(wanted, "set")
            return before

    def follow(self, source: Callable[[], Mode | str]) -> None:
        """Read the mode from ``source`` at each :meth:`current` from now on (a live value).

        A followed value is applied even when it skips a step (the operator changed the
        setting), with a warning. Units of work waiting at the barrier notice a change of
        the source at the next read of it: call :meth:`refresh` (or ``follow`` again) when
        it changes, as the owner of a live setting does in its change callback.
        """
        with self._lock:
            self._source = source
            self._last_bad = None
        self.current()

    def _switch(self, mode: Mode, how: str) -> None:
        with self._lock:
            before, self._mode = self._mode, mode
            if before is mode:
                return
            waiters = list(self._waiters)
        for loop, waiter in waiters:
            # Switches may come from another thread: the waiter's loop resolves it.
            loop.call_soon_threadsafe(_wake, waiter)
        MODE.labels(self._migration).set(mode.step)
        level = logging.INFO if is_step(before, mode) else logging.WARNING
        logger.log(
            level,
            "migration mode switched",
            extra={"migration": self._migration, "from": before, "to": mode, "how": how},
        )


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
