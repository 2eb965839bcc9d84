"""Benchmarks: this plugin side by side with the installed release's own async tools.

Every scenario runs real ``AgentSession``s with zero-latency scripted models, in one
process, the implementations interleaved round by round (see ``harness.py`` for what
``asynctools``, ``core``, ``core_cancellable`` and ``plain`` are). Each scenario's module
says exactly where its clock starts and stops:

- ``dispatch.py``: the model emits a call -> the model receives its first answer;
- ``bursts.py``: N results released together -> the model is asked about all of them;
- ``calls.py``: a whole turn with one call; the cost of one update; heap per call;
- ``sessions.py``: 100 voice sessions in one process (loop lag, CPU, heap, listeners).

Usage::

    python benchmarks/run.py --quick                 # a fast run, checks nothing rots
    python benchmarks/run.py --out benchmarks/last-run.md

Figures are medians over the rounds unless a row says otherwise; ratios compare
implementations within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import bursts
import calls
import dispatch
import sessions
from harness import core_kind, has_silent_updates

Row = tuple[str, dict[str, float], str]


async def rounds(fn: Callable[[], Awaitable[float]], n: int) -> float:
    return statistics.median([await fn() for _ in range(n)])


async def paired_ratio(
    base: Callable[[], Awaitable[float]], other: Callable[[], Awaitable[float]], n: int
) -> float:
    """The median over ``n`` rounds of ``other() / base()``, both measured in each round,
    back to back, their order alternating: a drift in the machine's speed moves both
    measurements of a round (a ratio of two medians taken apart moved by 10 points)."""
    ratios = []
    for k in range(n):
        if k % 2 == 0:
            base_time = await base()
            other_time = await other()
        else:
            other_time = await other()
            base_time = await base()
        ratios.append(other_time / base_time)
    return statistics.median(ratios)


def fmt(v: float | None, unit: str) -> str:
    if v is None or v != v:
        return "-"
    if unit == "s":
        return f"{v * 1e3:.3f} ms"
    if unit == "us":
        return f"{v * 1e6:.1f} µs"
    if unit == "B":
        return f"{v:,.0f} B"
    if unit == "x":
        return f"{v:.3f}x"
    if unit == "%":
        return f"{v * 100:.0f}%"
    return f"{v:.2f}".rstrip("0").rstrip(".")


def table(title: str, columns: list[str], rows: list[Row]) -> list[str]:
    lines = [f"### {title}", "", f"| | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
    for name, values, unit in rows:
        lines.append(f"| {name} | {' | '.join(fmt(values.get(c), unit) for c in columns)} |")
    return [*lines, ""]


def ratios(values: dict[str, float], of: str, to: list[str]) -> dict[str, float]:
    return {c: values[of] / values[c] for c in to if c in values}


async def dispatch_section(quick: bool) -> list[str]:
    impls = dispatch.dispatch_impls()
    first, first_cpu, steady, steady_cpu = await dispatch.measure(
        impls, rounds=3 if quick else 12, turns=3 if quick else 10
    )
    m = {k: dispatch.medians(v) for k, v in [("s", steady), ("sc", steady_cpu)]}
    f = {k: dispatch.medians(v) for k, v in [("f", first), ("fc", first_cpu)]}
    rows: list[Row] = [
        ("steady state: wall-clock time", m["s"], "s"),
        ("steady state: CPU time of the thread", m["sc"], "s"),
        ("asynctools / this column, wall-clock", ratios(m["s"], "asynctools", impls), "x"),
        ("asynctools / this column, CPU", ratios(m["sc"], "asynctools", impls), "x"),
        ("a session's first call: wall-clock time", f["f"], "s"),
        ("a session's first call: CPU time", f["fc"], "s"),
        ("asynctools / this column, first call, CPU", ratios(f["fc"], "asynctools", impls), "x"),
    ]
    n = len(next(iter(steady.values())))
    return table(f"Dispatch of one call ({n} steady samples each)", impls, rows)


async def burst_section(quick: bool, n: int) -> list[str]:
    impls = ["asynctools", "core"]
    rows: list[Row] = []
    delays: dict[str, list[float]] = {i: [] for i in impls}
    for _ in range(n * 4):
        for i in impls:
            delays[i].append((await bursts.burst(i, 1))[0])
    rows.append(
        (
            "1 result, idle session: median",
            {i: statistics.median(v) for i, v in delays.items()},
            "s",
        )
    )
    rows.append(("1 result, idle session: p95", {i: _pct(v, 0.95) for i, v in delays.items()}, "s"))
    per_result: dict[int, float] = {}
    # per size, the collection time of the plugin's windows, and those windows less it
    collected: dict[int, list[float]] = {}
    net: dict[int, list[float]] = {}
    for size in [10, 100] if quick else [10, 100, 1000]:
        times: dict[str, list[float]] = {i: [] for i in impls}
        replies: dict[str, list[float]] = {i: [] for i in impls}
        for _ in range(n):
            for i in impls:
                gc_time = bursts.CollectionTime()
                t, r = await bursts.burst(i, size, profiler=gc_time)
                times[i].append(t)
                replies[i].append(r)
                if i == "asynctools":
                    collected.setdefault(size, []).append(gc_time.total)
                    net.setdefault(size, []).append(t - gc_time.total)
        med = {i: statistics.median(v) for i, v in times.items()}
        per_result[size] = med["asynctools"] / size
        rows.append((f"{size:,} results: time to the reply that covers them", med, "s"))
        rows.append(
            (
                f"{size:,} results: result replies asked",
                {i: max(v) for i, v in replies.items()},
                "n",
            )
        )
    if not quick:
        gc_1000, net_1000 = statistics.median(collected[1000]), statistics.median(net[1000])
        ten, gc_ten, full = [], [], []
        for _ in range(3):
            gc_time = bursts.CollectionTime()
            ten.append((await bursts.burst("asynctools", 10_000, profiler=gc_time))[0])
            gc_ten.append(gc_time.total)
            full.append(gc_time.seconds[2])
        per_result[10_000] = statistics.median(ten) / 10_000
        rows.append(
            (
                "10,000 results: time to the reply (core: not run)",
                {"asynctools": statistics.median(ten)},
                "s",
            )
        )
        rows.append(
            (
                "10,000 results: / the 1,000-result time",
                {"asynctools": statistics.median(ten) / (per_result[1000] * 1000)},
                "x",
            )
        )
        # what the garbage collector took of those windows (see RESULTS.md, Bursts)
        rows.append(("1,000 results: of which garbage collection", {"asynctools": gc_1000}, "s"))
        rows += [
            (
                "10,000 results: of which garbage collection",
                {"asynctools": statistics.median(gc_ten)},
                "s",
            ),
            (
                "10,000 results: of which full (generation 2) collections",
                {"asynctools": statistics.median(full)},
                "s",
            ),
            (
                "10,000 / 1,000 results, collection time left out",
                {
                    "asynctools": statistics.median(t - g for t, g in zip(ten, gc_ten, strict=True))
                    / net_1000
                },
                "x",
            ),
        ]
        # the same windows with no collection in them at all (nor its after-effects)
        off: dict[int, list[float]] = {1000: [], 10_000: []}
        for _ in range(3):
            for size in off:
                t, _r = await bursts.burst("asynctools", size, profiler=bursts.CollectionOff())
                off[size].append(t)
        rows.append(
            (
                "10,000 / 1,000 results, automatic collection off in both windows",
                {"asynctools": statistics.median(off[10_000]) / statistics.median(off[1000])},
                "x",
            )
        )
    build = bursts.item_cost(1000)
    biggest = max(per_result)
    rows.append((f"per result at {biggest:,}", {"asynctools": per_result[biggest]}, "us"))
    rows.append(("per result: building its two chat items alone", {"asynctools": build}, "us"))
    rows.append(("per result: what is left", {"asynctools": per_result[biggest] - build}, "us"))
    return table("Results released together (bursts.py)", impls, rows)


async def calls_section(quick: bool, n: int) -> list[str]:
    impls = ["asynctools", "core"]
    rows: list[Row] = []
    res = {i: await rounds(lambda i=i: calls.call_overhead(i), n) for i in [*impls, "plain"]}
    rows.append(("a user turn with one call, answered", res, "s"))
    for history in [10, 1000] if quick else [10, 1000, 10000]:
        for burst in (16, 1):
            res = {
                i: await rounds(lambda i=i, h=history, b=burst: calls.update_cost(i, h, b), n)
                for i in impls
            }
            kind = "burst of 16" if burst == 16 else "isolated"
            rows.append((f"one update, {kind}, {history:,} chat items", res, "s"))
        ratio = await paired_ratio(
            lambda h=history: calls.update_cost("asynctools", h, 16),
            lambda h=history: calls.update_cost("asynctools", h, 16, progress=True),
            3 * n if quick else 10 * n,
        )
        rows.append(
            (
                f"an update with structured progress / one without ({history:,} items)",
                {"asynctools": ratio},
                "x",
            )
        )
    tasks = 50 if quick else 200
    heap = {i: await calls.heap_per_task(i, tasks) for i in [*impls, "plain"]}
    rows.append((f"heap per running call ({tasks} calls)", heap, "B"))
    rows.append(
        ("heap per running call, over plain", {i: heap[i] - heap["plain"] for i in impls}, "B")
    )
    return table("Calls, updates, heap (calls.py)", [*impls, "plain"], rows)


async def sessions_rounds(
    impls: list[str], variants: list[str], n: int, options: dict[str, Any]
) -> dict[str, dict[str, dict[str, float]]]:
    """Each variant of the 100-session run ``n`` times per implementation, interleaved
    (the order alternating from round to round): per variant and implementation, the
    median of each figure, and of the marginal CPU time of a later update, which pairs
    each run with the run without later updates of the same round."""
    figures: dict[tuple[str, str], list[dict[str, float]]] = {}
    for k in range(n):
        for impl in impls if k % 2 == 0 else impls[::-1]:
            rounds = {v: await sessions.many_sessions(impl, **options, later=v) for v in variants}
            for v, run in rounds.items():
                if v != "none":
                    run["marginal"] = sessions.marginal_cpu_per_update(run, rounds["none"])
                figures.setdefault((v, impl), []).append(run)
    return {
        v: {
            i: {key: statistics.median(r[key] for r in figures[v, i]) for key in figures[v, i][0]}
            for i in impls
        }
        for v in variants
    }


async def sessions_section(quick: bool) -> list[str]:
    impls = ["asynctools", "core"]
    count = 10 if quick else 100
    options: dict[str, Any] = {"sessions": count, "updates": 4 if quick else 10}
    # what a later update adds: the same runs with the later updates left out, and, where
    # core has them, silent (recorded, no reply: the update's own path)
    variants = ["spoken", "none", *(["silent"] if has_silent_updates() else [])]
    runs = await sessions_rounds(impls, variants, 1 if quick else 3, options)
    res, without = runs["spoken"], runs["none"]
    silent = runs.get("silent")
    heap = {i: await sessions.heap_per_session(i, sessions=4 if quick else 20) for i in impls}

    def pick(key: str) -> dict[str, float]:
        return {i: res[i][key] for i in impls}

    rows: list[Row] = [
        ("window (first `go` to the last result reply heard)", pick("window"), "s"),
        ("event-loop lag, p50", pick("lag_p50"), "s"),
        ("event-loop lag, p99", pick("lag_p99"), "s"),
        ("event-loop lag, p99, same sessions idle", pick("idle_lag_p99"), "s"),
        ("event-loop lag, longest", pick("lag_max"), "s"),
        ("garbage collection in the window: full (generation 2)", pick("gc_full"), "s"),
        ("garbage collection in the window: longest collection", pick("gc_longest"), "s"),
        ("CPU time per update (net of the idle sessions' CPU)", pick("cpu_per_update"), "us"),
        ("CPU use in the window (1 = one core)", pick("cpu_share"), "n"),
        ("replies per session (model requests after `go`)", pick("replies_per_session"), "n"),
        ("heap per session, calls running", heap, "B"),
        ("plugin listeners per idle session (all events)", pick("listeners_idle"), "n"),
        ("of which on `close` (emitted once)", pick("listeners_idle_close"), "n"),
        ("plugin listeners' cost per emit, idle session", pick("listener_emit_cost"), "us"),
    ]
    rows.append(
        (
            "marginal CPU time of a later update, its replies included",
            {i: res[i]["marginal"] for i in impls},
            "us",
        )
    )
    if silent is not None:
        rows += [
            (
                "marginal CPU time of a silent later update (no reply)",
                {i: silent[i]["marginal"] for i in impls},
                "us",
            ),
            (
                "replies per session, later updates silent",
                {i: silent[i]["replies_per_session"] for i in impls},
                "n",
            ),
        ]
    rows.append(
        (
            "replies per session, later updates left out",
            {i: without[i]["replies_per_session"] for i in impls},
            "n",
        )
    )
    title = (
        f"{count} sessions in one process, 5 calls each (sessions.py"
        f"{'' if quick else '; medians of 3 interleaved rounds, heap: 1'})"
    )
    return table(title, impls, rows)


async def main(quick: bool, out: Path | None) -> int:
    n = 3 if quick else 7
    release = importlib.metadata.version("livekit-agents")
    lines = [
        f"## Benchmarks on livekit-agents {release}",
        "",
        f"core implementation: {core_kind()}; {'quick' if quick else 'full'} run, "
        f"median of {n} rounds unless said; Python {sys.version.split()[0]}",
        "",
    ]
    lines += await dispatch_section(quick)
    lines += await burst_section(quick, n)
    lines += await calls_section(quick, n)
    lines += await sessions_section(quick)
    report = "\n".join(lines)
    print(report)
    if out is not None:
        out.write_text(report)
    return 0


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[int(q * (len(values) - 1))]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, small sizes")
    parser.add_argument("--out", type=Path, help="write the markdown tables here")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.quick, args.out)))
