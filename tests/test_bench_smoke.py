"""Every benchmark of bench/ at its quick size: it runs, and its figures make sense.

No timing is asserted: only that each benchmark measures a positive figure and a positive
baseline and computes their ratio, and that bench/results.json can be written from them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import history_cost, memory, simulation, start_rate, step_throughput
from bench.common import Result, write_results


def _check(result: Result, unit: str) -> None:
    assert result.unit == unit
    assert result.figure > 0, result
    assert result.baseline > 0, result
    assert math.isclose(result.ratio, result.figure / result.baseline)
    data = result.as_dict()
    assert {"figure", "baseline", "ratio", "unit"} <= set(data)


def test_simulation_quick() -> None:
    _check(simulation.measure(quick=True), "balances/s")


@pytest.mark.devserver
async def test_start_rate_quick() -> None:
    _check(await start_rate.measure(quick=True), "balances/s")


@pytest.mark.devserver
async def test_step_throughput_quick() -> None:
    result = await step_throughput.measure(quick=True)
    _check(result, "steps/s")
    assert result.target == ">= 0.8" and result.met is not None
    assert result.details["history_per_balance"]["activities"] == step_throughput.STEPS


@pytest.mark.timeskipping
async def test_history_cost_quick() -> None:
    results = {r.name: r for r in await history_cost.measure(quick=True)}
    assert set(results) == {
        "history_physician",
        "history_bytes_physician",
        "history_plan12",
        "history_bytes_plan12",
    }
    for name, result in results.items():
        _check(result, "bytes/balance" if "bytes" in name else "events/balance")
    physician = results["history_physician"].details
    assert physician["activities"] == 8  # seven steps sent, the referral's approval task opened
    assert not physician["completed"]  # parked on the referral's approval
    plan = results["history_plan12"].details
    # twelve installments: the charge came in the start's input, not as a signal
    assert plan["completed"] and plan["signals"] == 12


@pytest.mark.devserver
async def test_memory_quick() -> None:
    result = await memory.measure(quick=True)
    _check(result, "MiB")
    assert result.details["open_balances"] == 100


def test_results_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results([Result("x", 3.0, 2.0, "things/s", target=">= 0.8")], path, quick=True)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["benchmarks"]["x"] == {
        "name": "x",
        "figure": 3.0,
        "baseline": 2.0,
        "ratio": 1.5,
        "unit": "things/s",
        "note": "",
        "target": ">= 0.8",
        "details": {},
        "target_met": True,
    }
    assert {"nproc", "cpu_model", "python", "date"} <= set(data["machine"])
