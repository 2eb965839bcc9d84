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
    python benchmarks/idle_delivery.py --processes 20 --samples 100

With ``--processes N``, N fresh processes run one after another, each with ``--samples``
windows per implementation, and the median of their ratios is printed: where objects and
code land in memory differs from process to process and moves one process's ratio by a
few percent (0.91x to 1.07x over 70 processes on 1.5.17), which more samples in one
process do not average out.

With ``--callgrind`` (see ``callcounts.py``), collection is switched on for exactly the
windows; the instruction count of the output file / ``--samples`` is the count a window.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import statistics
import subprocess
import sys
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
    medians = {i: [statistics.median(wall[i]), statistics.median(cpu[i])] for i in impls}
    if args.json:
        print(json.dumps(medians))
        return
    first = impls[0]
    w0, c0 = medians[first]
    for impl in impls:
        w, c = medians[impl]
        ratio = ""
        if impl != first:
            ratio = f"  ({first} / {impl}: wall {w0 / w:.3f}x, CPU {c0 / c:.3f}x)"
        print(f"{impl}: wall {w * 1e3:.3f} ms, CPU {c * 1e3:.3f} ms{ratio}")


def across_processes(args: argparse.Namespace) -> None:
    """Run ``args.processes`` fresh processes in turn; print each one's ratios of the first
    implementation to the others, then their medians."""
    impls = args.impls.split(",")
    command = [sys.executable, __file__, "--impls", args.impls, "--samples", str(args.samples)]
    command += ["--history", str(args.history), "--json"]
    ratios: dict[str, tuple[list[float], list[float]]] = {i: ([], []) for i in impls[1:]}
    for _ in range(args.processes):
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        medians = json.loads(out.splitlines()[-1])
        w0, c0 = medians[impls[0]]
        for impl in impls[1:]:
            ratios[impl][0].append(w0 / medians[impl][0])
            ratios[impl][1].append(c0 / medians[impl][1])
    for impl, (wall, cpu) in ratios.items():
        each = " ".join(f"{r:.3f}" for r in sorted(wall))
        print(f"{impls[0]} / {impl}, per process (wall): {each}")
        print(
            f"{impls[0]} / {impl}: median over {args.processes} processes: wall "
            f"{statistics.median(wall):.3f}x, CPU {statistics.median(cpu):.3f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impls", default="asynctools,core", help="comma-separated")
    parser.add_argument("--samples", type=int, default=40, help="windows per implementation")
    parser.add_argument("--history", type=int, default=0, help="earlier turns in the chat")
    parser.add_argument("--callgrind", help="library with cg_toggle() (see callcounts.py)")
    parser.add_argument("--processes", type=int, default=1, help="fresh processes, in turn")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    parsed = parser.parse_args()
    if parsed.processes > 1:
        across_processes(parsed)
    else:
        asyncio.run(main(parsed))
