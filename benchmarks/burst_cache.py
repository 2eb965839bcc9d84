"""A burst's window under callgrind's cache simulation: what a result costs at 1,000 and at
10,000 results, in instructions, cache misses and mispredicted branches.

Usage (one process per size and mode; the figures are in callgrind's output file)::

    printf '%s\n' '#include <valgrind/callgrind.h>' \
      'void cg_toggle(void){CALLGRIND_TOGGLE_COLLECT;}' \
      'void cg_start(void){CALLGRIND_START_INSTRUMENTATION;}' \
      'void cg_stop(void){CALLGRIND_STOP_INSTRUMENTATION;}' > cg.c
    gcc -O2 -shared -fPIC -o libcg.so cg.c
    PYTHONHASHSEED=0 valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no \
      --cache-sim=yes --branch-sim=yes --LL=1048576,8,64 --callgrind-out-file=out \
      .nox/bench-agents-1-8-9/bin/python benchmarks/burst_cache.py 10000 --gc off --lib ./libcg.so
    grep -E '^(events|totals):' out          # / 10,000: per result
    callgrind_annotate --inclusive=yes out | grep gc_collect_main   # the collector's share

``--LL`` is the simulated last level: valgrind takes this machine's shared cache for it, as
large as 384 MB in a virtual machine, where nothing misses; 1 MB 8-way is one core's L2
here. Simulating from the process start takes too long for 10,000 calls, so instrumentation
starts once the calls run; one full collection then walks the live heap, so the simulated
caches hold what a real run's would, and the window is collected alone (``--gc auto``: as
``bursts.py`` runs it; ``--gc off``: with automatic collection off in the window).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc

import bursts


class _Window:
    def __init__(self, lib: ctypes.CDLL, collect: bool) -> None:
        self._lib = lib
        self._collect = collect

    def enable(self) -> None:
        if not self._collect:
            gc.disable()
        self._lib.cg_toggle()

    def disable(self) -> None:
        self._lib.cg_toggle()
        self._lib.cg_stop()
        gc.enable()


def _warm_caches(lib: ctypes.CDLL) -> None:
    lib.cg_start()
    gc.collect()


async def main(args: argparse.Namespace) -> None:
    lib = ctypes.CDLL(args.lib)
    await bursts.burst("asynctools", 10)  # warm, as callcounts.py does
    seconds, replies = await bursts.burst(
        "asynctools",
        args.results,
        profiler=_Window(lib, collect=args.gc == "auto"),
        before_window=lambda: _warm_caches(lib),
    )
    print(f"{args.results} results, gc {args.gc}: {seconds * 1e3:.1f} ms, {replies} reply")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=int)
    parser.add_argument("--gc", choices=["auto", "off"], default="auto")
    parser.add_argument("--lib", required=True, help="library with cg_toggle, cg_start, cg_stop")
    asyncio.run(main(parser.parse_args()))
