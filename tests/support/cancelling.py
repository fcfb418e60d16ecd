"""A `check_cancel` for interrupt tests: the user pressing Cancel some time into the work."""

from __future__ import annotations

import threading
import time

from region_repair.pipelines.core.cancel import WORKER_NAME


class CancelLater:
    """Raises InterruptedError (as ComfyUI's interrupt raises its exception) from `delay` s after
    `press()` on, or after its own first call when `on_first_call`; `latency()` is how long the
    work then took to stop."""

    def __init__(self, delay: float, on_first_call: bool = True) -> None:
        self.delay = delay
        self.on_first_call = on_first_call
        self.requested_at: float | None = None

    def press(self) -> None:
        if self.requested_at is None:
            self.requested_at = time.monotonic() + self.delay

    def __call__(self) -> None:
        if self.on_first_call:
            self.press()
        if self.requested_at is not None and time.monotonic() >= self.requested_at:
            raise InterruptedError("cancelled")

    def latency(self) -> float:
        return time.monotonic() - self.requested_at


def finish_abandoned_native_calls() -> int:
    """Wait for native calls abandoned by an interrupt (they run to their end), so that they do
    not slow the tests after; returns how many there were."""
    workers = [t for t in threading.enumerate() if t.name == WORKER_NAME]
    for worker in workers:
        worker.join()
    return len(workers)
