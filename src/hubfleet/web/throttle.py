"""A limit on failed sign-ins at the portal, per username and per client address, against password guessing.

After ``user_limit`` failures for one username within ``window`` seconds, that username is refused (HTTP 429)
until the oldest of those failures is ``window`` old, whoever tries and whatever password they send: the check
comes before the password is even hashed, so a refused attempt also costs no scrypt work. The same holds per
client address with the higher ``ip_limit``, because one address is often a whole lab or campus behind NAT, where
five typos in a quarter of an hour are ordinary; the per-username limit is the one that stops guessing at an
account. Refused attempts are not counted (they would keep an account locked forever), and a successful sign-in
clears that username's failures (not the address's: one's own account must not reset a guessing address).

The counters live in this process's memory: the portal is one uvicorn worker (see ``portal.main``), so every
attempt is seen here; a restart forgets them, which at worst grants one more window of attempts. The client address
is ``request.client.host``, which uvicorn takes from ``X-Forwarded-For`` only when the connection comes from the
trusted front door on 127.0.0.1 (``proxy_headers=True``, uvicorn's default ``forwarded_allow_ips``).

Known trade-off of any per-account limit: anyone can lock an account for one window by failing on purpose; the
window is short, and the operator can restart the portal to clear it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["SignInThrottle"]

# Bound on tracked keys, so a spray of random usernames cannot grow memory without limit.
_MAX_KEYS = 100_000


class SignInThrottle:
    def __init__(self, user_limit: int = 5, ip_limit: int = 30, window: float = 15 * 60,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.user_limit, self.ip_limit, self.window, self.clock = user_limit, ip_limit, window, clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()  # sync endpoints run in FastAPI's thread pool

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def _keys(self, username: str, ip: str) -> list[tuple[tuple[str, str], int]]:
        return [(("user", username), self.user_limit), (("ip", ip), self.ip_limit)]

    def retry_after(self, username: str, ip: str) -> float | None:
        """Seconds until this username and address may try again, or None if they may try now."""
        now = self.clock()
        waits = []
        with self._lock:
            for key, limit in self._keys(username, ip):
                times = self._recent(key, now)
                if len(times) >= limit:
                    # Free again once enough failures have aged out to leave one below the limit.
                    waits.append(times[len(times) - limit] + self.window - now)
        return max(waits) if waits else None

    def failed(self, username: str, ip: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) >= _MAX_KEYS:
                for key in list(self._failures):
                    self._recent(key, now)
                if len(self._failures) >= _MAX_KEYS:  # all recent: forget the oldest half rather than grow
                    for key in sorted(self._failures, key=lambda k: self._failures[k][-1])[: _MAX_KEYS // 2]:
                        del self._failures[key]
            for key, _ in self._keys(username, ip):
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(("user", username), None)
