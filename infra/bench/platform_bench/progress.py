"""Progress lines on stderr: every long step says what it does, and how long it took."""

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_STARTED = time.monotonic()


def load() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (the machine is shared; figures carry them)."""
    return os.getloadavg()


def say(message: str) -> None:
    elapsed = time.monotonic() - _STARTED
    print(f"[bench {elapsed:6.0f}s load {load()[0]:4.1f}] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(message: str) -> Iterator[None]:
    say(f"{message} ...")
    started = time.perf_counter()
    yield
    say(f"{message}: {time.perf_counter() - started:.1f}s")
