"""Progress lines for the long passes that run a trained encoder over a whole set (every
training frame in ``label_clusters``, every held-out clip in ``score_clips``, every note in
``score_eval``): at the thesis' scale they take hours on a CPU, and a job log that stays empty
for that long cannot be told from a hung one.

A :class:`Progress` logs at most one line every ``every`` seconds (done, total, rate, time
left) and one line at the end; it costs a clock read per step.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

#: Seconds between two progress lines of a pass.
PROGRESS_EVERY = 60.0


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(max(seconds, 0.0))))


class Progress:
    """Count the units of a pass and log how far it is.

    :param total: units the pass will do (frames, clips, notes).
    :param what: the pass and its unit, e.g. ``"label_clusters: encode frames"``.
    :param log: the logger the lines go to (INFO).
    :param every: seconds between lines (0: a line per step).
    """

    def __init__(
        self, total: int, what: str, log: logging.Logger, every: float = PROGRESS_EVERY
    ) -> None:
        self.total, self.what, self.log, self.every = int(total), what, log, float(every)
        self.done = 0
        self.start = self.last = time.monotonic()

    def step(self, n: int = 1) -> None:
        """``n`` more units done; a line when ``every`` seconds have passed since the last."""
        self.done += int(n)
        now = time.monotonic()
        if now - self.last < self.every or self.done >= self.total:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        self.log.info(
            "%s: %d of %d (%.1f%%), %.1f/s, %s left",
            self.what,
            self.done,
            self.total,
            100.0 * self.done / max(self.total, 1),
            rate,
            _clock((self.total - self.done) / max(rate, 1e-9)),
        )

    def finish(self) -> None:
        """The closing line: how many, in how long."""
        took = time.monotonic() - self.start
        self.log.info(
            "%s: %d in %s (%.1f/s)",
            self.what,
            self.done,
            _clock(took),
            self.done / max(took, 1e-9),
        )
