"""Re-entry without bursts, the pure rule (issue #19 item 5): which steps collapse on re-entry.

The workflow applies it after a broken plan, a lifted hold and a lapsed settlement; the
time-skipping scenario is in ``test_edges_reach_timeskipping``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from config.loader import load_policy
from models.payloads import ChannelStatus, ContactProfile, LadderState
from models.policy import Channel, ReentryMode
from workflows import account_rules as rules
from workflows import decisions

POLICIES = Path(__file__).parent / "policies"
START = dt.datetime(2027, 1, 4, 15, 0, tzinfo=dt.UTC)
PROFILE = ContactProfile(
    time_zone="America/New_York", channels={c: ChannelStatus(reachable=True) for c in Channel}
)


def _state(next_index: int) -> LadderState:
    return LadderState(balance_cents=30000, anchor_at=START, opened_at=START, next_index=next_index)


def test_steps_due_while_paused_collapse_into_the_last_one_due() -> None:
    policy = load_policy(str(POLICIES / "edges-letters.yaml")).policy
    state = _state(1)
    now = START + dt.timedelta(days=41)  # statement-2..5 (days 10-40) all came due
    skips = rules.collapse_overdue(policy, state, PROFILE, now, "settlement lapsed")
    assert [s.step.id for s in skips] == ["statement-2", "statement-3", "statement-4"]
    assert all("re-entry after settlement lapsed" in s.reason for s in skips)
    for skip in skips:
        decisions.record_skip(state, skip, now)
    decision = decisions.decide(policy, state, PROFILE, now)
    assert isinstance(decision, decisions.SendNow)
    assert decision.planned.step.id == "statement-5"


def test_a_final_notice_is_never_collapsed_away_and_resume_keeps_every_step() -> None:
    policy = load_policy(str(POLICIES / "edges-letters.yaml")).policy
    now = START + dt.timedelta(days=80)  # past the final notice (day 60)
    skips = rules.collapse_overdue(policy, _state(3), PROFILE, now, "hold lifted")
    # statement-4 and statement-5 collapse; the final notice (a 501(r) precondition) runs.
    assert [s.step.id for s in skips] == ["statement-4", "statement-5"]
    resume = policy.model_copy(
        update={"contact": policy.contact.model_copy(update={"reentry": ReentryMode.RESUME})}
    )
    assert rules.collapse_overdue(resume, _state(3), PROFILE, now, "hold lifted") == []
    # Nothing came due meanwhile: nothing collapses.
    assert (
        rules.collapse_overdue(policy, _state(1), PROFILE, START + dt.timedelta(days=5), "x") == []
    )
