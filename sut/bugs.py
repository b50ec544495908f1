"""The switchable bugs (eight failures, two regressions of a tunable size) and their switch.

State lives in one small JSON file in the data dir, replaced atomically on every change and
re-read when its inode or mtime changes (checked at most every 100 ms), so a switch made through
any worker of any service is seen by every gunicorn worker well within a second.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

BUGS: tuple[str, ...] = (
    "missing_index",
    "n_plus_one",
    "cache_bypass",
    "slow_downstream",
    "serial_fanout",
    "error_burst",
    "broken_propagation",
    "n_plus_one_http",
    "cpu_regression",
    "tail_regression",
)

#: Bugs of a tunable size, switched on as "name:N" (N percent); see `magnitude` and `slow_down`.
SIZED = {"cpu_regression": 10.0, "tail_regression": 10.0}

POLL_SECONDS = 0.1


class UnknownBug(ValueError):
    """A bug name that is not one of BUGS; the message lists the valid ones."""


def bug_name(entry: str) -> str:
    """'cpu_regression:10' -> 'cpu_regression'; other names unchanged."""
    return entry.split(":", 1)[0]


def _size_ok(entry: str) -> bool:
    name, _, size = entry.partition(":")
    if not size:
        return True
    if name not in SIZED:
        return False
    try:
        return 0 < float(size) <= 1000
    except ValueError:
        return False


def validate(names: Iterable[str]) -> list[str]:
    names = [n for n in names if n]
    unknown = [n for n in names if bug_name(n) not in BUGS]
    if unknown:
        raise UnknownBug(
            f"unknown bug {', '.join(repr(n) for n in unknown)}; valid bugs: {', '.join(BUGS)}"
        )
    bad = [n for n in names if not _size_ok(n)]
    if bad:
        raise UnknownBug(f"bad bug size {', '.join(repr(n) for n in bad)}: a size is a percentage "
                         f"0 < N <= 1000, and only {', '.join(SIZED)} take one (e.g. "
                         "cpu_regression:10)")
    return sorted(set(names), key=lambda n: BUGS.index(bug_name(n)))


def write_state(path: Path, bugs: Iterable[str]) -> list[str]:
    """Atomically replace the state file (a fresh inode, so readers notice)."""
    bugs = validate(bugs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(json.dumps({"version": 1, "bugs": bugs}))
    os.replace(tmp, path)
    return bugs


class BugState:
    """Which bugs are on, as seen by this process; `on_change` callbacks run on a change."""

    def __init__(self, path: Path, initial: Iterable[str] | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._bugs: frozenset[str] = frozenset()
        self._checked = 0.0
        self._callbacks: list[Callable[[frozenset[str]], None]] = []
        self._notify_lock = threading.Lock()
        self._notified: frozenset[str] | None = None
        if initial is not None or not self.path.exists():
            write_state(self.path, initial or [])
        self._reload()

    def on_change(self, callback: Callable[[frozenset[str]], None]) -> None:
        """Register `callback(bugs)`; it runs now for the current state, then on each change."""
        self._callbacks.append(callback)
        self._notified = None
        self._notify()

    def _reload(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp == self._stamp:
            return False
        try:
            data = json.loads(self.path.read_text())
            bugs = frozenset(b for b in data.get("bugs", []) if bug_name(b) in BUGS)
        except (OSError, ValueError):
            return False  # mid-write by a foreign tool: keep the last good state
        self._stamp = stamp
        self._bugs = bugs
        return True

    def _notify(self) -> None:
        """Run the callbacks once per distinct state, whoever changed the file."""
        with self._notify_lock:
            bugs = self._bugs
            if bugs == self._notified:
                return
            for callback in self._callbacks:
                callback(bugs)
            self._notified = bugs

    def current(self, fresh: bool = False) -> frozenset[str]:
        """The bugs on now (re-reading the file at most every POLL_SECONDS unless `fresh`)."""
        now = time.monotonic()
        if fresh:
            self._checked = 0.0
        if now - self._checked >= POLL_SECONDS:
            with self._lock:
                if now - self._checked >= POLL_SECONDS:
                    self._checked = now
                    self._reload()
            if self._callbacks and self._bugs != self._notified:
                self._notify()
        return self._bugs

    def enabled(self, name: str) -> bool:
        return name in self.current()

    def magnitude(self, name: str) -> float:
        """The size in percent of a sized bug that is on ("cpu_regression:20" -> 20.0), else 0.

        A sized bug named without a size takes its default (SIZED)."""
        for entry in self.current():
            base, _, size = entry.partition(":")
            if base == name:
                return float(size) if size else SIZED.get(name, 0.0)
        return 0.0

    def slow_down(self, started: float) -> float:
        """Do the extra work of `cpu_regression` / `tail_regression`; returns seconds spent.

        cpu_regression:N: every request spins the CPU for N% of the time it has taken so far
        (since `started`, a time.perf_counter()), so the request takes N% longer whatever the
        machine's speed: a regression of a known size, for measuring the gate's sensitivity.
        tail_regression:N: one request in ten (at random) spins for 10 x N% instead: the mean
        moves by about N%, the median hardly, the tail a lot.
        """
        share = self.magnitude("cpu_regression") / 100.0
        tail = self.magnitude("tail_regression") / 100.0
        if tail and random.random() < 0.1:
            share += 10 * tail
        if share <= 0:
            return 0.0
        now = time.perf_counter()
        deadline = now + (now - started) * share
        x = 0
        while time.perf_counter() < deadline:  # real CPU work, not a sleep
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        return time.perf_counter() - now

    def update(self, *, enable: Iterable[str] = (), disable: Iterable[str] = (),
               replace: Iterable[str] | None = None) -> list[str]:
        """Apply a change (validated first), write it, run callbacks; returns the new list."""
        enable, disable = validate(enable), validate(disable)
        with self._lock:
            self._reload()
            new = set(validate(replace)) if replace is not None else set(self._bugs)
            # A sized bug is one bug whatever its size: enabling a size replaces the one on,
            # disabling by name (with or without a size) switches it off.
            off = {bug_name(n) for n in [*enable, *disable]}
            new = {n for n in new if bug_name(n) not in off} | set(enable)
            result = write_state(self.path, new)
            self._reload()
            self._checked = time.monotonic()
        self._notify()
        return result
