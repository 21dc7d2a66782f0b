"""Intake arithmetic of the analysis service: event rates and Wazuh's EPS limit.

Both are pure: they are told the time (the reactor's ``seconds()``) and never read a clock,
so tests drive them with :class:`twisted.internet.task.Clock`.
"""

from __future__ import annotations

import math
from collections import deque


class RateWindow:
    """Events per second over the last 10 s and the last minute, from a running counter.

    :meth:`sample` records the counter's value (the service calls it every second);
    :meth:`rate` compares the newest sample with the one ``seconds`` older.
    """

    def __init__(self, keep: int = 61) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=keep)

    def sample(self, now: float, count: int) -> None:
        """Record the counter ``count`` at time ``now``."""
        self._samples.append((now, count))

    def rate(self, seconds: float) -> float:
        """Events per second over (about) the last ``seconds``; 0 before two samples."""
        if len(self._samples) < 2:
            return 0.0
        newest_time, newest = self._samples[-1]
        oldest_time, oldest = self._samples[0]
        for when, count in self._samples:
            if newest_time - when <= seconds:
                oldest_time, oldest = when, count
                break
        span = newest_time - oldest_time
        return round((newest - oldest) / span, 1) if span > 0 else 0.0


class EpsLimiter:
    """Wazuh's ``<global><limits><eps>``: at most ``maximum × timeframe`` events analysed in
    any ``timeframe`` seconds (a circular buffer of per-second counts, as analysisd keeps).

    Events above the limit are not dropped here: the service leaves them in its queue and
    asks again at the next second (they are dropped only when the queue is full).
    ``maximum`` 0 means no limit.
    """

    def __init__(self, maximum: int, timeframe: int) -> None:
        self.maximum = maximum
        self.timeframe = max(1, timeframe)
        self.credits = maximum * self.timeframe
        self._slots: deque[tuple[int, int]] = deque()  # (second, events taken in it)
        self._used = 0
        #: How many times events had to wait for credits.
        self.waits = 0

    @property
    def enabled(self) -> bool:
        """True when a maximum is configured."""
        return self.maximum > 0

    def _expire(self, now: float) -> None:
        second = math.floor(now)
        while self._slots and self._slots[0][0] <= second - self.timeframe:
            self._used -= self._slots.popleft()[1]

    def available(self, now: float) -> int:
        """How many events may be taken at ``now`` (a large number when unlimited)."""
        if not self.enabled:
            return 1 << 62
        self._expire(now)
        return max(0, self.credits - self._used)

    def take(self, now: float, count: int) -> None:
        """Record that ``count`` events were taken for analysis at ``now``."""
        if not self.enabled or count <= 0:
            return
        second = math.floor(now)
        if self._slots and self._slots[-1][0] == second:
            self._slots[-1] = (second, self._slots[-1][1] + count)
        else:
            self._slots.append((second, count))
        self._used += count

    def used(self, now: float) -> int:
        """Events taken in the current window."""
        self._expire(now)
        return self._used
