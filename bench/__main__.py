"""``python -m bench [--quick]``: every benchmark, a table, and bench/results.json."""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Callable

from bench import history_cost, import_rows, memory, simulation, start_rate, step_throughput
from bench.common import Result, machine, quick_from_argv, report, timed, write_results

NOTE = (
    "Timings depend on what else runs on the machine; load_average_at_start shows how busy it "
    "was. Each benchmark's baseline runs on the same servers in the same run."
)


def main() -> int:
    quick = quick_from_argv(__doc__ or "")
    info = machine()
    suites: list[tuple[str, Callable[[], list[Result]]]] = [
        ("simulation", lambda: [simulation.measure(quick)]),
        ("start_rate", lambda: [asyncio.run(start_rate.measure(quick))]),
        ("step_throughput", lambda: [asyncio.run(step_throughput.measure(quick))]),
        ("history_cost", lambda: asyncio.run(history_cost.measure(quick))),
        ("memory", lambda: [asyncio.run(memory.measure(quick))]),
        ("import_rows", lambda: [asyncio.run(import_rows.measure(quick))]),
    ]
    results: list[Result] = []
    failed: list[str] = []
    with timed() as elapsed:
        for name, suite in suites:
            with timed() as took:
                try:
                    got = suite()
                except Exception:
                    traceback.print_exc()
                    failed.append(name)
                    continue
            for result in got:
                result.details.setdefault("seconds", round(took(), 1))
                print(result.line(), flush=True)
            results.extend(got)
    print()
    report(results)
    note = NOTE + (f" FAILED: {', '.join(failed)}." if failed else "")
    write_results(results, quick=quick, seconds=elapsed(), machine_info=info, note=note)
    print(
        f"\nmachine: {info['nproc']} x {info['cpu_model']}, Python {info['python']}, "
        f"load {info['load_average_at_start']}; {elapsed():.0f}s; written bench/results.json"
    )
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
