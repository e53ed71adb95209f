"""A fake device with a fake clock: an oracle for timers (inf01-inf03 tests, benchmark harness tests).

A GPU runs work asynchronously: a kernel launch returns at once and the work finishes later, so a timer
that reads the clock without synchronizing measures the launch, not the work. `FakeDevice` models that
exactly, with a clock that no real noise can disturb:

    dev = FakeDevice()
    dev.launch(0.010)        # queue 10 ms of device work; the host clock does not move
    dev.clock()              # 0.0: an unsynchronized timer would read this
    dev.synchronize()        # the host waits until the queue is empty
    dev.clock()              # 0.010

`host(seconds)` spends time on the host (Python overhead, a `time.sleep`): the clock moves at once, and
queued device work runs meanwhile. Pass `dev.clock` and `dev.synchronize` wherever a timer accepts a
`clock` and a `synchronize` function, and the times it reports can be checked to the nanosecond.
"""
from __future__ import annotations


class FakeDevice:
    """A host clock plus one in-order device queue. Invariant: `now <= busy_until` or the queue is idle."""

    def __init__(self, start_s: float = 0.0):
        self.now = float(start_s)            # the host's clock
        self.busy_until = float(start_s)     # when the last queued device work finishes
        self.num_syncs = 0

    def clock(self) -> float:
        """The host clock in seconds (what `time.perf_counter` would read)."""
        return self.now

    def host(self, seconds: float) -> None:
        """Spend `seconds` on the host: the clock moves now; device work keeps running meanwhile."""
        if seconds < 0:
            raise ValueError(f"host time must be >= 0, got {seconds}")
        self.now += seconds

    def launch(self, seconds: float) -> None:
        """Queue `seconds` of device work after whatever is queued; return at once (as a kernel launch)."""
        if seconds < 0:
            raise ValueError(f"device work must take >= 0 s, got {seconds}")
        self.busy_until = max(self.busy_until, self.now) + seconds

    def synchronize(self) -> None:
        """Wait for every queued piece of work: the host clock jumps to when the device is idle."""
        self.num_syncs += 1
        self.now = max(self.now, self.busy_until)

    @property
    def pending_s(self) -> float:
        """Seconds of queued work not finished at the host's current time."""
        return max(0.0, self.busy_until - self.now)
