"""Experiments' pure rules: the assignment hash and split, eligibility, the statistics."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from decimal import Decimal

import numpy as np
import pytest
from pydantic import ValidationError

from models.experiment import Eligibility, ExperimentConfig, Guard, GuardMetric
from services.experiments.core import ArmSlot, Candidate, bucket, ineligible_because, pick_arm
from services.experiments.stats import compare, guard_breach, required_sample

ACCOUNTS = [
    str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://example.test/account/{i}")) for i in range(10_000)
]


def _assign(key: str, slots: list[ArmSlot]) -> list[str]:
    return [pick_arm(slots, bucket(key, a)) for a in ACCOUNTS]


@pytest.mark.parametrize(
    "shares",
    [(9000, 1000), (5000, 3000, 2000), (8000, 1000, 1000)],
    ids=["90-10", "50-30-20", "80-10-10"],
)
def test_assignment_keeps_the_split_within_one_point_on_10000_accounts(
    shares: tuple[int, ...],
) -> None:
    slots = [ArmSlot(f"arm{i}", s) for i, s in enumerate(shares)]
    first = _assign("split-test", slots)
    counts = Counter(first)
    for slot in slots:
        assert abs(counts[slot.name] / len(ACCOUNTS) - slot.share_bp / 10_000) <= 0.01, counts
    # A re-run (another process, another day) gives every account the very same arm.
    assert _assign("split-test", slots) == first


def test_assignment_depends_on_the_experiment_and_is_independent_across_experiments() -> None:
    slots = [ArmSlot("champion", 5000), ArmSlot("challenger", 5000)]
    a = _assign("exp-a", slots)
    b = _assign("exp-b", slots)
    same = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    # Independent halves agree about half the time; a key the hash ignored would agree always.
    assert 0.47 < same < 0.53


def test_the_bucket_is_sha256_of_key_and_account() -> None:
    import hashlib

    digest = hashlib.sha256(b"audit-me:" + ACCOUNTS[0].encode()).digest()
    assert bucket("audit-me", ACCOUNTS[0]) == int.from_bytes(digest[:8], "big") / 2**64


def test_a_stopped_arm_gives_its_slice_to_the_champion_and_moves_no_other_balance() -> None:
    live = [ArmSlot("champion", 8000), ArmSlot("b", 1000), ArmSlot("c", 1000)]
    stopped = [ArmSlot("champion", 8000), ArmSlot("b", 1000, active=False), ArmSlot("c", 1000)]
    before = _assign("stop-test", live)
    after = _assign("stop-test", stopped)
    assert "b" in before and "b" not in after
    for was, now in zip(before, after, strict=True):
        assert now == ("champion" if was == "b" else was)


def _candidate(**overrides: object) -> Candidate:
    fields: dict[str, object] = {
        "policy": "physician",
        "balance_cents": 12_000,
        "oldest_service_date": dt.date(2026, 11, 1),
        "state": "NY",
        "language": "en",
        "today": dt.date(2026, 12, 1),
    }
    fields.update(overrides)
    return Candidate(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "failed"),
    [
        ({}, None),
        ({"policy": "dental"}, "policy"),
        ({"balance_cents": 2_499}, "balance_min"),
        ({"balance_cents": 2_500}, None),
        ({"balance_cents": 500_001}, "balance_max"),
        ({"oldest_service_date": dt.date(2026, 5, 1)}, "age_days_max"),
        ({"state": "CA"}, "states"),
        ({"language": "es"}, "languages"),
    ],
)
def test_eligibility_names_the_condition_a_balance_fails(
    overrides: dict[str, object], failed: str | None
) -> None:
    rules = Eligibility(
        balance_min=Decimal("25.00"),
        balance_max=Decimal("5000.00"),
        age_days_max=180,
        states=["NY", "NJ"],
        languages=["en"],
    )
    assert ineligible_because(rules, ["physician"], _candidate(**overrides)) == failed


BASE = {
    "id": "cfg",
    "champion": {"name": "champion", "policy": "physician", "share": 90},
    "challengers": [{"name": "b", "policy": "dental", "share": 10}],
    "starts_on": "2027-01-04",
    "statistics": {"min_detectable_effect": 5},
}


def test_config_refuses_shares_that_do_not_add_up_naming_the_field() -> None:
    data = {**BASE, "challengers": [{"name": "b", "policy": "dental", "share": 20}]}
    with pytest.raises(ValidationError, match=r"champion.share: the shares add up to 110"):
        ExperimentConfig.model_validate(data)
    assert ExperimentConfig.model_validate(BASE).eligible_policies == ["physician"]


def test_required_sample_is_the_textbook_figure() -> None:
    # Equal arms, sd 1, effect 0.5, alpha 0.05 two-sided, power 0.8: 2 * (1.96 + 0.84)^2 / 0.25
    assert required_sample(1.0, 0.5, 0.05, 0.8, ratio=1.0) == 63
    # A 90/10 split needs fewer challenger balances than 1:1 per arm, but more in all.
    assert required_sample(1.0, 0.5, 0.05, 0.8, ratio=9.0) == 35


def test_compare_warns_while_the_sample_is_too_small_and_not_after() -> None:
    rng = np.random.default_rng(1)
    small = compare(rng.normal(10, 4, 20), rng.normal(12, 4, 20), mde=2, resamples=500)
    assert small.warning is not None and "too few" in small.warning
    assert not small.significant
    large = compare(rng.normal(10, 4, 400), rng.normal(12, 4, 400), mde=2, resamples=500)
    # From the observed spread (about 4, so about 2 * 16 * 7.85 / 4 = 63 balances per arm).
    assert large.required_per_challenger is not None
    assert 55 <= large.required_per_challenger <= 72
    assert large.warning is None
    assert large.ci_low is not None and large.ci_high is not None
    assert 0 < large.ci_low < 2 < large.ci_high
    assert large.significant and large.p_welch is not None and large.p_welch < 0.001


def test_guard_waits_for_its_minimum_then_compares_with_the_champion() -> None:
    guard = Guard(metric=GuardMetric.OPT_OUTS, max_excess=0.03, min_balances=30)
    assert guard_breach(guard, 20, 1000, 10, 29) is None  # too few balances yet
    assert guard_breach(guard, 20, 1000, 1, 30) is None  # 3.3% vs 2%: within the limit
    why = guard_breach(guard, 20, 1000, 2, 30)  # 6.7% vs 2%: 4.7 points above
    assert why is not None and "opt-outs 6.7% of 30 balances" in why
    ceiling = Guard(metric=GuardMetric.DISPUTES, max_rate=0.05, min_balances=10)
    assert guard_breach(ceiling, 0, 0, 1, 20) is None  # 5%: at the ceiling, not above
    assert guard_breach(ceiling, 0, 0, 2, 20) is not None
