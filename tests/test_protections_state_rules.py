"""Rules by where the patient lives and time-barred debt, in the pure decision core (issue 18,
items 2 and 8).

Before: state rules were keyed on the policy's ``state`` only (a Massachusetts resident under a
policy without a state got no cap), and a 2017 New York debt was billed and placed like any other.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cli.main import app
from models.payloads import ChannelStatus, ContactProfile, LadderState, StepOutcome
from models.policy import Channel, Policy
from workflows.decisions import timeline
from workflows.state_rules import STATE_RULES, effective_rule

FIRST = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)  # a Monday, 10:00 in New York


def _policy(steps: list[dict[str, Any]], **extra: Any) -> Policy:
    return Policy.model_validate(
        {
            "name": "t",
            "practice": {"name": "Synthetic Clinic", "phone": "(555) 010-9999"},
            "thresholds": {"minimum_balance": "0"},
            "contact": {
                "business_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "min_spacing_hours": 0,
                "caps": [{"channel": "call", "max": 7, "per_days": 7}],
            },
            "steps": steps,
            **extra,
        }
    )


def _profile(state: str | None) -> ContactProfile:
    ok = ChannelStatus(reachable=True, consent=True)
    return ContactProfile(channels=dict.fromkeys(Channel, ok), state=state)


CALLS = _policy(
    [
        {"id": "statement", "day": 0, "channels": ["letter"], "template": "t"},
        {"id": "text", "day": 1, "channels": ["sms"], "template": "t"},
        {"id": "call-1", "day": 2, "channels": ["call"], "template": "t"},
        {"id": "call-2", "day": 3, "channels": ["call"], "template": "t"},
    ]
)


def test_the_table_has_sources_and_the_more_protective_rule_wins() -> None:
    assert all(rule.sources for rule in STATE_RULES.values())
    assert effective_rule("MA", None).contacts_per_7_days == 2
    both = effective_rule("OH", "MA")
    assert both.contacts_per_7_days == 2 and both.limitations_years == 6
    ny_ma = effective_rule("NY", "MA")
    assert ny_ma.limitations_years == 3 and ny_ma.bans_credit_reporting
    assert effective_rule(None, None).contacts_per_7_days is None


def test_a_massachusetts_resident_gets_the_cap_under_a_policy_without_a_state() -> None:
    assert CALLS.state is None
    free = {e.step.id: e for e in timeline(CALLS, 30000, FIRST, _profile(None))}
    assert (free["call-2"].at - FIRST).days == 3  # no state cap: on its day
    capped = {e.step.id: e for e in timeline(CALLS, 30000, FIRST, _profile("MA"))}
    assert capped["call-2"].outcome is StepOutcome.SENT
    # The text (day 1) and the first call (day 2) used Massachusetts' 2 in 7 days.
    assert capped["call-2"].at >= capped["text"].at + dt.timedelta(days=7)
    assert any(
        "MA cap of 2 calls, texts or voicemails in 7 days" in r for r in capped["call-2"].reasons
    )


REFERRAL = _policy(
    [
        {"id": "statement", "day": 0, "channels": ["letter"], "template": "t"},
        {
            "id": "final",
            "day": 90,
            "channels": ["letter"],
            "template": "t",
            "kind": "final_notice",
        },
        {
            "id": "referral",
            "day": 120,
            "channels": ["letter"],
            "template": "t",
            "kind": "agency_referral",
            "approval": {"approvers": ["supervisor"]},
        },
    ]
)


def test_a_2017_new_york_debt_is_time_barred_no_final_notice_or_referral() -> None:
    opened = dt.datetime(2017, 5, 1, tzinfo=dt.UTC)
    state = LadderState(balance_cents=30000, opened_at=opened)
    entries = {e.step.id: e for e in timeline(REFERRAL, 30000, FIRST, _profile("NY"), state=state)}
    assert entries["statement"].outcome is StepOutcome.SENT
    for step in ("final", "referral"):
        assert entries[step].outcome is StepOutcome.SKIPPED
        assert (
            "time-barred: the 3-year statute of limitations (NY) ran on 2020-05-01"
            in (entries[step].reasons[0])
        )


def test_a_recent_debt_or_an_unknown_state_is_not_time_barred() -> None:
    for opened, state in ((dt.datetime(2025, 5, 1, tzinfo=dt.UTC), "NY"), (None, "NY")):
        ladder = LadderState(balance_cents=30000, opened_at=opened)
        entries = {
            e.step.id: e for e in timeline(REFERRAL, 30000, FIRST, _profile(state), state=ladder)
        }
        assert entries["referral"].outcome is StepOutcome.SENT
    ladder = LadderState(balance_cents=30000, opened_at=dt.datetime(2010, 5, 1, tzinfo=dt.UTC))
    entries = {e.step.id: e for e in timeline(REFERRAL, 30000, FIRST, _profile("TX"), state=ladder)}
    assert entries["referral"].outcome is StepOutcome.SENT  # no limitation in the table for TX


def test_the_residence_state_shortens_the_policy_states_limitation() -> None:
    massachusetts = REFERRAL.model_copy(update={"state": "MA"})  # MA: 6 years
    ladder = LadderState(balance_cents=30000, opened_at=dt.datetime(2022, 1, 10, tzinfo=dt.UTC))
    entries = {
        e.step.id: e for e in timeline(massachusetts, 30000, FIRST, _profile("MD"), state=ladder)
    }
    # Maryland's 3 years ran in January 2025: the more protective rule applies.
    assert entries["referral"].outcome is StepOutcome.SKIPPED
    assert "(MA+MD)" in entries["referral"].reasons[0]


def test_a_letter_saying_care_will_be_refused_fails_check(tmp_path: Path) -> None:
    folder = tmp_path / "templates" / "custom" / "en"
    folder.mkdir(parents=True)
    (folder / "letter.j2").write_text(
        "Dear {{ guarantor.first_name }},\nYour balance is {{ balance }}.\n"
        "Future care will be refused until the balance is paid.\n",
        encoding="utf-8",
    )
    path = tmp_path / "policy.yaml"
    path.write_text(
        "name: t\nstate: MN\npractice: {name: Synthetic Clinic, phone: (555) 010-9999}\n"
        "steps:\n  - {id: s, day: 0, channels: [letter], template: custom}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1, result.output
    assert "custom/en/letter.j2: line 3: a message may not say 'until the balance is paid'" in (
        result.output
    )
    assert "Minn. Stat. 62J.806" in result.output
