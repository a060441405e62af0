"""NCBI's request rate, kept across the threads and processes of one machine: an in-process limiter, and one
shared through an SQLite file, so that rollout workers scoring study-search rewards together stay under
NCBI's 3 (10 with a key) requests a second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

LIMIT_FILE = "ratelimit.sqlite3"
log = logging.getLogger("posttrain.rewards.search.ncbi")  # the name these warnings always had
_warned: set[str] = set()   # the one-time warnings given in this process
_warned_lock = threading.Lock()


def _warn_once(topic: str, message: str, *args) -> None:
    with _warned_lock:
        if topic in _warned:
            return
        _warned.add(topic)
    log.warning(message, *args)


def connect(path: str | Path, timeout: float, *setup: str) -> sqlite3.Connection:
    """An autocommit connection to the SQLite file `path`, in WAL mode, with `setup` run on it.

    Statements wait up to `timeout` for other writers; but turning a new file
    to WAL needs it to itself and SQLite then answers "locked" at once, with
    no waiting, when another process is opening it too: so that is retried.
    """
    deadline = time.monotonic() + timeout
    while True:
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            for statement in setup:
                db.execute(statement)
            return db
        except sqlite3.OperationalError as e:
            db.close()
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
        except BaseException:
            db.close()
            raise
        time.sleep(0.005)


class RateLimiter:
    """At most `rate` calls of `wait` per second, across the threads of one process.

    Each caller reserves the next free slot. The fallback of SharedRateLimiter,
    and what tests inject.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / rate
        self.clock, self.sleep = clock, sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until this caller may send; return how long it waited."""
        with self._lock:  # reserve under the lock, sleep outside it, so other threads queue behind meanwhile
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - now
        if delay > 0:
            self.sleep(delay)
        return delay


class SharedRateLimiter:
    """At most `rate` calls of `wait` per second across every process and thread that uses the file `path`.

    The file holds, per rate, the next free slot on the wall clock (time.time,
    which processes agree on). A caller takes a slot in one `BEGIN IMMEDIATE`
    transaction (slot = max(now, next); next = slot + 1/rate) and then sleeps
    until it, so callers queue one interval apart whichever process they are
    in. If the file cannot be used, this object keeps to the rate in its own
    process from then on and warns once.
    """

    STALE = 600.0  # seconds: a next slot further ahead than this means the wall clock went back; start from now

    def __init__(self, path: str | Path, rate: float, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, timeout: float = 30.0):
        self.path = Path(path)
        self.rate, self.interval = rate, 1.0 / rate
        self.clock, self.sleep, self.timeout = clock, sleep, timeout
        self.name = f"{rate:g}/s"
        self.last_slot: float | None = None   # the slot the latest wait in this object took (a test reads it)
        self.fallback: RateLimiter | None = None
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pid: int | None = None

    def wait(self) -> float:
        """Block until this caller may send; return how long it waited."""
        with self._lock:  # one transaction at a time on this object's connection; the sleep is outside
            if self.fallback is None:
                try:
                    now, slot = self._reserve()
                except (sqlite3.Error, OSError) as e:
                    self._fall_back(e)
                else:
                    self.last_slot = slot
            fallback = self.fallback
        if fallback is not None:
            return fallback.wait()
        delay = slot - now
        if delay > 0:
            self.sleep(delay)
        return delay

    def _reserve(self) -> tuple[float, float]:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")  # the write lock first, then the clock: slots come out in lock order
        try:
            row = db.execute("SELECT next FROM slots WHERE name = ?", (self.name,)).fetchone()
            now = self.clock()
            slot = now
            if row is not None and now < row[0] <= now + self.STALE:
                slot = row[0]
            db.execute("INSERT OR REPLACE INTO slots (name, next) VALUES (?, ?)", (self.name, slot + self.interval))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return now, slot

    def _connect(self) -> sqlite3.Connection:
        if self._db is None or self._pid != os.getpid():  # a forked child opens its own connection
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = connect(self.path, self.timeout,
                               "PRAGMA synchronous=NORMAL",  # losing the last slot in a power cut costs nothing
                               "CREATE TABLE IF NOT EXISTS slots (name TEXT PRIMARY KEY, next REAL NOT NULL)")
            self._pid = os.getpid()
        return self._db

    def _fall_back(self, error: Exception) -> None:
        if self._db is not None and self._pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None
        self.fallback = RateLimiter(self.rate, self.clock, self.sleep)
        _warn_once(f"limit {self.path}", "PubMed rate limit: cannot share it with other processes through %s (%s); "
                   "this process keeps to %g requests/s on its own, so several together may exceed NCBI's limit "
                   "(its 429 answers are retried)", self.path, error, self.rate)


_limiters: dict[tuple, RateLimiter | SharedRateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_limiter(rate: float, folder: str | Path | None = None) -> RateLimiter | SharedRateLimiter:
    """The process's limiter for `rate`, shared through `folder`/ratelimit.sqlite3 with other processes.

    Every backend object in the process with the same folder queues on the
    same one; without a folder, an in-process limiter only.
    """
    key = (rate, os.path.abspath(folder) if folder is not None else None)
    with _limiters_lock:
        if key not in _limiters:
            _limiters[key] = SharedRateLimiter(Path(key[1]) / LIMIT_FILE, rate) if folder is not None \
                else RateLimiter(rate)
        return _limiters[key]


