"""The Python eventlet peer of eventlet-bench's `spawn` scenario.

Spawns a green thread, lets it run and waits for it (``eventlet.spawn`` +
``GreenThread.wait``), one at a time.

Usage: ``python3 spawn_eventlet.py MILLIS``. Measures for MILLIS ms after a
warm-up of a tenth of that and prints nanoseconds per spawn + run + wait.
"""

import sys
import time
import warnings

warnings.simplefilter("ignore")  # eventlet announces its deprecation on import

import eventlet  # noqa: E402

MAX_ITERS = 1 << 32


def measure(budget_s, run):
    """Runs ``run(k)`` in growing batches until ``budget_s`` seconds have
    passed; returns nanoseconds per iteration (the harness's Meter loop)."""
    start = time.perf_counter()
    done, batch = 0, 1
    while True:
        run(batch)
        done += batch
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s or done >= MAX_ITERS:
            return elapsed * 1e9 / done
        per_iter = max(elapsed / done, 1e-9)
        batch = max(1, min(done + 1, int((budget_s - elapsed) / per_iter)))


def one():
    return 1


def run(k):
    for _ in range(k):
        eventlet.spawn(one).wait()


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit() or int(sys.argv[1]) <= 0:
        sys.exit("usage: spawn_eventlet.py MILLIS")
    budget = int(sys.argv[1]) / 1000
    measure(budget / 10, run)
    print(f"{measure(budget, run):.3f}")


if __name__ == "__main__":
    main()
