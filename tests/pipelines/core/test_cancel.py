"""pipelines/core/cancel.py: a native call waited for in slices, so that an interrupt ends the
wait."""

from __future__ import annotations

import threading
import time

import pytest
from cancelling import CancelLater, finish_abandoned_native_calls

from region_repair.pipelines.core.cancel import WAIT_SLICE_S, run_cancellable, stop_if_abandoned


def test_the_result_comes_back_and_the_cancel_check_runs_while_waiting():
    checks = []
    assert run_cancellable(lambda: time.sleep(0.3) or 42, lambda: checks.append(1)) == 42
    assert len(checks) >= 0.3 / WAIT_SLICE_S / 2  # checked in slices, not once


def test_the_call_s_own_error_reaches_the_caller():
    def fail():
        raise ValueError("radius: 0 is outside 1..64")

    with pytest.raises(ValueError, match="radius: 0"):
        run_cancellable(fail, lambda: None)


def test_a_cancel_ends_the_wait_and_the_abandoned_call_finishes_in_the_background():
    done = threading.Event()
    cancel = CancelLater(0.2)
    with pytest.raises(InterruptedError):
        run_cancellable(lambda: time.sleep(1.5) or done.set(), cancel)
    assert cancel.latency() < 1.0
    assert not done.is_set()  # still running, its result to be dropped
    assert finish_abandoned_native_calls() >= 1
    assert done.is_set()


def test_abandoned_work_with_steps_stops_at_its_next_step():
    steps = []

    def work():
        for _ in range(200):
            stop_if_abandoned()
            steps.append(1)
            time.sleep(0.01)

    with pytest.raises(InterruptedError):
        run_cancellable(work, CancelLater(0.2))
    assert finish_abandoned_native_calls() == 1
    assert len(steps) < 150  # it did not run its 2 s to the end
    stop_if_abandoned()  # outside a worker: nothing to stop
