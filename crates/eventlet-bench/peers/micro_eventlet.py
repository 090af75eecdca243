"""The Python eventlet peer of eventlet-bench's `spawn` and `switch` scenarios.

spawn: spawns a green thread, lets it run and waits for it
(``eventlet.spawn`` + ``GreenThread.wait``), one at a time.
switch: a ping-pong round trip between the main green thread and an echoing
one over two ``eventlet.queue.Queue`` objects (one each way).

Usage: ``python3 micro_eventlet.py spawn|switch MILLIS``. Measures for MILLIS
ms after a warm-up of a tenth of that and prints nanoseconds per spawn + run +
wait, or per round trip.
"""

import sys
import time
import warnings

warnings.simplefilter("ignore")  # eventlet announces its deprecation on import

import eventlet  # noqa: E402
from eventlet.queue import Queue  # noqa: E402

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


def spawn(budget):
    def run(k):
        for _ in range(k):
            eventlet.spawn(one).wait()

    measure(budget / 10, run)
    return measure(budget, run)


def echo(ping, pong):
    while True:
        item = ping.get()
        if item is None:
            return
        pong.put(item)


def ping_pong(budget):
    ping, pong = Queue(), Queue()
    echoer = eventlet.spawn(echo, ping, pong)

    def run(k):
        for i in range(k):
            ping.put(i)
            if pong.get() != i:
                raise RuntimeError("reply out of order")

    measure(budget / 10, run)
    ns = measure(budget, run)
    ping.put(None)
    echoer.wait()
    return ns


def main():
    args = sys.argv[1:]
    if len(args) != 2 or args[0] not in ("spawn", "switch") or not args[1].isdigit() or int(args[1]) <= 0:
        sys.exit("usage: micro_eventlet.py spawn|switch MILLIS")
    budget = int(args[1]) / 1000
    ns = spawn(budget) if args[0] == "spawn" else ping_pong(budget)
    print(f"{ns:.3f}")


if __name__ == "__main__":
    main()
