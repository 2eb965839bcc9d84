"""Where the heap of a running call goes: ``calls.py``'s heap window, by allocation site.

Runs the window of :func:`calls.heap_per_task` (warm: once before, unmeasured) for an
implementation and for the plain tool, with tracemalloc keeping deep tracebacks, and
prints the bytes per call that differ, each under the innermost frame of the plugin or
the benchmark that led to it (``core`` when none did) and the line that allocated them.

Usage::

    python benchmarks/heap_sites.py                    # asynctools over plain, 200 calls
    python benchmarks/heap_sites.py --impl core --calls 100
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tracemalloc
from collections import Counter

import calls
from harness import Gate

_HARNESS = ("benchmarks/harness.py", "benchmarks/calls.py")


def _where(frame: tracemalloc.Frame) -> str:
    path = frame.filename.split("site-packages/")[-1].split("python3.11/")[-1]
    return f"{path.split('livekit/plugins/')[-1]}:{frame.lineno}"


async def _sites(impl: str, tasks: int) -> tuple[float, Counter[str]]:
    gate, model = Gate(), calls._model(tasks)
    session = await calls._session(impl, gate, model)
    try:
        gc.collect()
        tracemalloc.start(30)
        before = tracemalloc.take_snapshot()
        total = tracemalloc.get_traced_memory()[0]
        await session.run(user_input="go")
        model.requests.clear()
        gc.collect()
        total = tracemalloc.get_traced_memory()[0] - total
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        gate.open()
    finally:
        await session.aclose()
    sites: Counter[str] = Counter()
    for stat in after.compare_to(before, "traceback"):
        frames = list(stat.traceback)  # oldest first
        ours = next(
            (
                f
                for f in reversed(frames)
                if "asynctools/" in f.filename or f.filename.endswith(_HARNESS)
            ),
            None,
        )
        key = f"{_where(ours) if ours else 'core'} <- {_where(frames[-1])}"
        sites[key] += stat.size_diff / tasks
    return total / tasks, sites


async def main(args: argparse.Namespace) -> None:
    for impl in (args.impl, "plain"):
        await _sites(impl, args.calls)  # warm: first-use caches are not a call's
    mine_total, mine = await _sites(args.impl, args.calls)
    plain_total, plain = await _sites("plain", args.calls)
    print(
        f"{args.impl}: {mine_total:,.0f} B a call, plain {plain_total:,.0f} B, over plain "
        f"{mine_total - plain_total:,.0f} B"
    )
    diff = {k: mine[k] - plain[k] for k in mine.keys() | plain.keys()}
    for key, size in sorted(diff.items(), key=lambda kv: -abs(kv[1])):
        if abs(size) >= args.min_bytes:
            print(f"{size:8.1f} B  {key}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", default="asynctools")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--min-bytes", type=float, default=8.0, help="smallest difference listed")
    asyncio.run(main(parser.parse_args()))
