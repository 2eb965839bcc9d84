"""Where the time of a dispatch or a burst goes, counted rather than timed.

Timings on a shared machine move by more than the differences the targets are about;
what code runs does not. This profiles exactly the measured windows (see ``dispatch.py``
and ``bursts.py``) and prints, per implementation, the Python function calls made per
dispatch or per result, and the functions whose call counts differ most from another
implementation's.

Usage::

    python benchmarks/callcounts.py dispatch            # asynctools against core and plain
    python benchmarks/callcounts.py burst --results 1000
    python benchmarks/callcounts.py dispatch --callgrind /path/to/libtoggle.so

With ``--callgrind``, run the script under ``valgrind --tool=callgrind --collect-atstart=no``
with one implementation (``--impls asynctools``): collection is switched on for exactly the
windows, through a library whose ``cg_toggle()`` is ``CALLGRIND_TOGGLE_COLLECT`` (from
``valgrind/callgrind.h``), and the instruction count of the output file divided by
``--samples`` is the count per dispatch.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ctypes
import pstats
import time
from collections import Counter
from typing import Any

from bursts import burst
from dispatch import DispatchSession, dispatch_impls


class _Callgrind:
    def __init__(self, path: str) -> None:
        self._lib = ctypes.CDLL(path)

    def enable(self) -> None:
        self._lib.cg_toggle()

    def disable(self) -> None:
        self._lib.cg_toggle()


def _burst_breakdown(prof: cProfile.Profile, results: int) -> None:
    stats = pstats.Stats(prof)
    cum: dict[str, float] = {}
    for (path, _, name), (_, _, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "plugins/asynctools" in path:
            cum[name] = cum.get(name, 0.0) + ct
    total = stats.total_tt  # type: ignore[attr-defined]
    submit, ended = cum.get("submit", 0.0), cum.get("_ended", 0.0)
    build = cum.get("_submit", 0.0) - submit  # BackgroundCall._submit builds, then submits
    rest = cum.get("_run", 0.0) - build - submit - ended
    print(
        f"\nper result, profiled (CPU time under cProfile; {total / results * 1e6:.1f} µs in all):"
    )
    for label, value in [
        ("building the two chat items (FunctionCall, make_tool_output)", build),
        ("adding them to the chat, queueing them (DeliveryCoordinator.submit)", submit),
        ("lifecycle events, the plugin's and core's (BackgroundCall._ended)", ended),
        ("the rest of the call's end (BackgroundCall._run, less the above)", rest),
        ("event loop, task wake-ups and the reply request", total - cum.get("_run", 0.0)),
    ]:
        print(f"  {value / results * 1e6:7.1f} µs  {value / total:5.1%}  {label}")


def _counts(prof: cProfile.Profile) -> tuple[int, Counter[str]]:
    stats = pstats.Stats(prof)
    calls: Counter[str] = Counter()
    for (path, line, name), (_, ncalls, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
        where = path.split("site-packages/")[-1].split("python3.11/")[-1]
        calls[f"{where}:{line}({name})"] += ncalls
    return stats.total_calls, calls  # type: ignore[attr-defined]


async def profile_dispatch(impl: str, samples: int, profiler: Any) -> None:
    session = DispatchSession(impl)
    await session.start()
    try:
        await session.turn()  # the session's first call sets up what it keeps
        session.llm.profiler = profiler
        for _ in range(samples):
            await session.turn()
    finally:
        await session.aclose()


async def main(args: argparse.Namespace) -> None:
    impls = args.impls.split(",") if args.impls else None
    results: dict[str, tuple[int, Counter[str]]] = {}
    for impl in impls or (dispatch_impls() if args.what == "dispatch" else ["asynctools", "core"]):
        profiler: Any = (
            _Callgrind(args.callgrind) if args.callgrind else cProfile.Profile(time.process_time)
        )
        if args.what == "dispatch":
            await profile_dispatch(impl, args.samples, profiler)
            per = args.samples
        else:
            await burst(impl, 10)  # warm
            await burst(impl, args.results, profiler=profiler)
            per = args.results
            if impl == "asynctools" and isinstance(profiler, cProfile.Profile):
                _burst_breakdown(profiler, args.results)
        if isinstance(profiler, cProfile.Profile):
            total, calls = _counts(profiler)
            results[impl] = (total, calls)
            unit = "dispatch" if args.what == "dispatch" else "result"
            print(f"{impl}: {total / per:,.1f} Python function calls per {unit}")
    if "asynctools" not in results:
        return
    total, mine = results["asynctools"]
    for other, (_, theirs) in results.items():
        if other == "asynctools":
            continue
        diff = Counter({k: mine[k] - theirs[k] for k in mine.keys() | theirs.keys()})
        unit = "dispatch" if args.what == "dispatch" else "result"
        print(f"\ncalls per {unit}, asynctools - {other}:")
        per = args.samples if args.what == "dispatch" else args.results
        for name, n in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[: args.top]:
            if n:
                print(f"  {n / per:+8.2f}  {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["dispatch", "burst"])
    parser.add_argument("--impls", help="comma-separated implementations (default: all)")
    parser.add_argument("--samples", type=int, default=50, help="dispatches to profile")
    parser.add_argument("--results", type=int, default=1000, help="results in the burst")
    parser.add_argument("--top", type=int, default=25, help="differences to list")
    parser.add_argument("--callgrind", help="library with cg_toggle() (see the module)")
    asyncio.run(main(parser.parse_args()))
