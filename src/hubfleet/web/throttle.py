"""Failed sign-ins at the portal slow the guesser down, per (username, client) and per client, never locking anyone out.

Two counters, each a progressive delay rather than a lock-out:

* per **(username, client)**: after ``free`` failures, the next attempt for that username *from that client* must
  wait ``base`` seconds, then twice as long after each further failure, up to ``cap``. That is what stops guessing
  at one account: a few hundred guesses a day at most, against generated passwords.
* per **client** (any username): the same with a larger allowance (``client_free``), against one client spraying
  many usernames. One address is often a whole lab behind NAT, where typos add up.

Why not per username alone (as before): anyone could then lock a classmate's account, from anywhere, by failing on
purpose before an exam. Keyed by (username, client), an attacker's failures slow down only the attacker's client;
the owner signs in from their own. Refused attempts are not counted (they would push the delay forever), and a
successful sign-in clears that (username, client) pair. A key is forgotten ``forget`` seconds after its last failure.

What "client" means is the caller's job: the address the front door saw (``portal.client_address``), never a
header a client can write; or a known device of that user (``devices.py``), so that a classmate behind the same
NAT address cannot slow down the owner's own browser. The counters live in this process's memory: the portal is
one uvicorn worker, so every attempt is seen here; a restart forgets them, which at worst grants another ``free``
attempts.

Known limit: guessing one account from many real addresses (a botnet) is slowed per address only; the answer to
that is password strength (``members.PasswordBook`` generates them) or the institution's own identity provider.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SignInThrottle"]

# Bound on tracked keys, so a spray of random usernames cannot grow memory without limit.
_MAX_KEYS = 100_000


@dataclass
class _Failures:
    count: int
    last: float


class SignInThrottle:
    def __init__(self, free: int = 5, client_free: int = 30, base: float = 5.0, cap: float = 300.0,
                 forget: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.free, self.client_free, self.base, self.cap, self.forget = free, client_free, base, cap, forget
        self.clock = clock
        self._failures: dict[tuple[str, ...], _Failures] = {}
        self._lock = threading.Lock()  # sync endpoints run in FastAPI's thread pool

    def _keys(self, username: str, client: str) -> list[tuple[tuple[str, ...], int]]:
        return [(("user", username, client), self.free), (("client", client), self.client_free)]

    def delay(self, count: int, free: int) -> float:
        """Seconds an attempt must wait after the last of ``count`` failures: 0 within the allowance, then doubling."""
        if count < free:
            return 0.0
        return min(self.base * 2 ** (count - free), self.cap)

    def retry_after(self, username: str, client: str) -> float | None:
        """Seconds until this username may be tried again from this client, or None if it may be tried now."""
        now = self.clock()
        waits = []
        with self._lock:
            for key, free in self._keys(username, client):
                seen = self._current(key, now)
                if seen is not None:
                    wait = seen.last + self.delay(seen.count, free) - now
                    if wait > 0:
                        waits.append(wait)
        return max(waits) if waits else None

    def failed(self, username: str, client: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) >= _MAX_KEYS:
                self._prune(now)
            for key, _ in self._keys(username, client):
                seen = self._current(key, now)
                if seen is None:
                    self._failures[key] = _Failures(1, now)
                else:
                    seen.count, seen.last = seen.count + 1, now

    def succeeded(self, username: str, client: str) -> None:
        with self._lock:
            self._failures.pop(("user", username, client), None)

    def _current(self, key: tuple[str, ...], now: float) -> _Failures | None:
        seen = self._failures.get(key)
        if seen is not None and now - seen.last > self.forget:
            del self._failures[key]
            return None
        return seen

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._failures.items() if now - v.last > self.forget]:
            del self._failures[key]
        if len(self._failures) >= _MAX_KEYS:  # all recent: forget the oldest half rather than grow
            for key in sorted(self._failures, key=lambda k: self._failures[k].last)[: _MAX_KEYS // 2]:
                del self._failures[key]
