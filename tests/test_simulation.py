"""The portfolio simulation: cache exactness, reproducibility, the response model and the CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from config.loader import load_policy, shipped_policies
from simulation.engine import DecisionCache, simulate_balance
from simulation.portfolio import synthetic
from simulation.response import ResponseModel
from simulation.runner import Job, Portfolio, response_rng, run
from tests.factories import balance_row, write_csv
from tests.support.cli import invoke

START = dt.datetime(2026, 12, 1, 14, tzinfo=dt.UTC)
TWELVE_MONTH = Path(__file__).parent.parent / "bench" / "policies" / "twelve-month.yaml"
POLICIES = [*shipped_policies(), TWELVE_MONTH]


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_cached_decisions_equal_uncached(path: Path) -> None:
    """The cache is an optimisation only: every balance's history is the same without it."""
    policy = load_policy(path).policy
    cache = DecisionCache(policy)
    response = ResponseModel()
    end = START + dt.timedelta(days=400)
    for i, balance in enumerate(synthetic(1500, policy, START, seed=7)):
        cached = simulate_balance(
            policy, balance, end, response=response, rng=response_rng(7, i), cache=cache
        )
        plain = simulate_balance(
            policy, balance, end, response=response, rng=response_rng(7, i), cache=None
        )
        assert cached.state.history == plain.state.history, balance
        assert (cached.outcome, cached.payments) == (plain.outcome, plain.payments)
    assert cache.hits > 0


def test_same_seed_same_result_in_one_or_two_processes() -> None:
    bundle = load_policy("physician")
    job = Job(
        bundle.policy,
        "physician",
        Portfolio(START, synthetic=6000, seed=3),
        ResponseModel(),
        3,
        365,
    )
    one, two = run(job, workers=1), run(job, workers=2)
    assert one.to_dict(job.response) == two.to_dict(job.response)
    assert 0 < one.collected_cents < one.initial_cents
    assert one.outcomes["paid"] > 0 and one.outcomes["placed"] > 0
    assert sum(one.sends.values()) > 6000


def test_response_model_yaml_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "response.yaml"
    path.write_text("channels:\n  letter: {pay_probability: 0.5}\npartial_probability: 0\n")
    model = ResponseModel.load(path)
    assert model.channels["letter"].pay_probability == 0.5  # type: ignore[index]
    assert model.channels["letter"].cost_micros == 750_000  # type: ignore[index]
    assert model.partial_probability == 0
    assert ResponseModel().channels["email"].cost_micros == 1_000  # type: ignore[index]


def test_cli_compares_two_policies(tmp_path: Path) -> None:
    chart, out = tmp_path / "chart.png", tmp_path / "totals.json"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "physician",
            "--synthetic",
            "400",
            "--compare",
            str(TWELVE_MONTH),
            "--seed",
            "5",
            "--start",
            "2026-12-01",
            "--chart",
            str(chart),
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert chart.stat().st_size > 10_000
    totals = json.loads(out.read_text())
    assert [t["policy"] for t in totals] == ["physician", "twelve-month"]
    assert all(t["balances"] == 400 for t in totals)
    # A longer ladder sends more letters to the same portfolio.
    assert totals[1]["sends"]["letter"] > totals[0]["sends"]["letter"]


@pytest.mark.parametrize("sources", ["neither", "both"])
def test_cli_refuses_both_or_neither_source(sources: str, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "balances.csv", [balance_row()])
    given = [] if sources == "neither" else ["--balances", str(csv), "--synthetic", "10"]
    result = invoke("simulate", "physician", *given)
    assert result.exit_code == 1, result.output
    assert "give exactly one of --balances FILE.csv and --synthetic N" in result.output
