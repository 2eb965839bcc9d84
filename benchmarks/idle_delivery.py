"""Delivery delay when idle: one background result, until the model is asked for the reply.

The window is ``bursts.py``'s with N = 1 (the gate opens on one running call that has
answered with its first update; it ends when the session calls ``chat()`` with the
result). The implementations run interleaved, their order alternating from sample to
sample, after a few warm-up bursts each; both the wall-clock time and the thread's CPU
time of each window are kept, and their medians printed.

Usage::

    python benchmarks/idle_delivery.py                         # asynctools against core
    python benchmarks/idle_delivery.py --samples 40 --impls asynctools,core_cancellable
    python benchmarks/idle_delivery.py --callgrind ./libtoggle.so --impls asynctools
    python benchmarks/idle_delivery.py --history 50   # 50 earlier turns in the chat

With ``--callgrind`` (see ``callcounts.py``), collection is switched on for exactly the
windows; the instruction count of the output file / ``--samples`` is the count a window.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import statistics
import time
from typing import Any

import bursts


class _Window:
    """Passed as the burst's profiler: notes the thread's CPU time at both ends."""

    def __init__(self, toggle: Any = None) -> None:
        self._toggle = toggle
        self.cpu = 0.0

    def enable(self) -> None:
        if self._toggle is not None:
            self._toggle()
        self._start = time.thread_time()

    def disable(self) -> None:
        self.cpu = time.thread_time() - self._start
        if self._toggle is not None:
            self._toggle()


async def main(args: argparse.Namespace) -> None:
    impls = args.impls.split(",")
    toggle = ctypes.CDLL(args.callgrind).cg_toggle if args.callgrind else None
    for impl in impls:
        for _ in range(3):
            await bursts.burst(impl, 1, history=args.history)
    wall: dict[str, list[float]] = {i: [] for i in impls}
    cpu: dict[str, list[float]] = {i: [] for i in impls}
    for k in range(args.samples):
        for impl in impls if k % 2 == 0 else impls[::-1]:
            window = _Window(toggle)
            burst = await bursts.burst(impl, 1, profiler=window, history=args.history)
            wall[impl].append(burst[0])
            cpu[impl].append(window.cpu)
    first = impls[0]
    for impl in impls:
        w, c = statistics.median(wall[impl]), statistics.median(cpu[impl])
        ratio = ""
        if impl != first:
            w0, c0 = statistics.median(wall[first]), statistics.median(cpu[first])
            ratio = f"  ({first} / {impl}: wall {w0 / w:.3f}x, CPU {c0 / c:.3f}x)"
        print(f"{impl}: wall {w * 1e3:.3f} ms, CPU {c * 1e3:.3f} ms{ratio}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impls", default="asynctools,core", help="comma-separated")
    parser.add_argument("--samples", type=int, default=40, help="windows per implementation")
    parser.add_argument("--history", type=int, default=0, help="earlier turns in the chat")
    parser.add_argument("--callgrind", help="library with cg_toggle() (see callcounts.py)")
    asyncio.run(main(parser.parse_args()))
