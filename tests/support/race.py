"""Racing clients for the concurrency tests: every worker in a thread of its own, all
released at once by a barrier."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence


def race(
    workers: list[Callable[[], None]],
    aborting: Sequence[threading.Barrier] = (),
    join_timeout: float = 90.0,
) -> float:
    """Run every worker in its own thread, all released at once; the wall time. A worker
    that fails breaks ``aborting`` (barriers the others wait at), so they stop at once;
    the first failure that is not such a broken barrier is reported."""
    barrier = threading.Barrier(len(workers))
    failures: list[BaseException] = []
    lock = threading.Lock()

    def run(work: Callable[[], None]) -> None:
        try:
            barrier.wait(timeout=60)
            work()
        except BaseException as exc:  # reported below, from the test's thread
            with lock:
                failures.append(exc)
            for other in aborting:
                other.abort()

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in workers]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    deadline = started + join_timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), f"clients still running after {elapsed:.0f}s"
    if failures:
        first = next((f for f in failures if not isinstance(f, threading.BrokenBarrierError)), None)
        raise AssertionError(f"{len(failures)} client(s) failed; first: {first or failures[0]!r}")
    return elapsed
