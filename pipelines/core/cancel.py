"""ComfyUI's interrupt inside one native call that cannot check for it itself.

Two callbacks carry ComfyUI's interrupt into the pipelines, named the same everywhere:
- `step()`, once per unit of work (an image, a window, a candidate, a vendor job): honours an
  interrupt (it raises) and advances the node's progress bar by one;
- `check_cancel()`, inside one unit, as often as every 0.05 s: honours an interrupt only.
A caller that cannot be cancelled passes `never_cancelled`.

A PatchMatch fill or an OpenCV cascade over a large photo is a single call of seconds (PatchMatch
took 20 s for an 800² hole). Neither can be stopped, but both release the GIL, so the call runs
on a worker thread while the caller waits in short slices and checks for a cancel between them.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

Result = TypeVar("Result")

# How long one wait lasts before the next check: an interrupt ends the wait within this.
WAIT_SLICE_S = 0.05
WORKER_NAME = "region-repair-native-call"


def never_cancelled() -> None:
    """The `step` or `check_cancel` of a caller that cannot be cancelled."""


class Abandoned(Exception):
    """Raised by `stop_if_abandoned` in work whose caller stopped waiting for it."""


def stop_if_abandoned() -> None:
    """For work run by run_cancellable that has steps of its own: raises Abandoned once the
    caller has stopped waiting, so that the work ends at its next step instead of running on.
    (ComfyUI's interrupt flag is cleared by the first check that sees it, so only the waiting
    thread checks the flag.) Does nothing on other threads."""
    abandoned = getattr(threading.current_thread(), "abandoned", None)
    if abandoned is not None and abandoned.is_set():
        raise Abandoned


def run_cancellable(call: Callable[[], Result], check_cancel: Callable[[], None]) -> Result:
    """`call()` on a worker thread, calling `check_cancel` every WAIT_SLICE_S until it returns.

    When `check_cancel` raises (ComfyUI's interrupt), its exception ends the wait at once. An
    abandoned native call cannot be stopped: it runs to its end on its daemon thread, using the
    CPU for that time, and its result is dropped (work with steps of its own ends at the next
    one through `stop_if_abandoned`). `call` must release the GIL (ctypes, OpenCV, SciPy's
    SuperLU, most NumPy and torch operations do), or the waiting thread cannot check
    meanwhile."""
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["result"] = call()
        except BaseException as error:  # handed to the waiting thread, which raises it
            outcome["error"] = error

    worker = threading.Thread(target=work, name=WORKER_NAME, daemon=True)
    worker.abandoned = threading.Event()
    worker.start()
    while worker.is_alive():
        try:
            check_cancel()
        except BaseException:
            worker.abandoned.set()
            raise
        worker.join(WAIT_SLICE_S)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
