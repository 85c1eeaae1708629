"""The simulation's timeline equals the real workflow's, step for step, on the time-skipping server.

Each case imports one synthetic balance through ``Intake`` (ledger first, then signal-with-start),
runs the real worker for 100 days of skipped time, and compares the workflow's ``get_status``
history with :func:`simulation.engine.simulate_balance` run on the same row, from the same start
and with the same payments. One workflow at a time: the time-skipping server hangs with several.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.loader import load_policy
from config.settings import Settings
from models.payloads import StepOutcome, StepRecord
from simulation.engine import Payment, simulate_balance
from simulation.portfolio import from_csv
from starter import Intake, get_status, workflow_id
from tests.factories import balance_row, policy_in, write_csv
from tests.support.clock import TUESDAY_MORNING, advance_to
from worker import build_worker

pytestmark = pytest.mark.timeskipping

POLICY = Path(__file__).parent / "policies" / "faithful.yaml"
DAYS = 100
# The workflow records workflow.now() after the send activity returns: a few milliseconds after
# the moment the decision core planned, which is what the simulation records.
TOLERANCE = dt.timedelta(seconds=60)

CASES = {
    "new-york-sms-consent": ({"time_zone": "America/New_York", "sms_consent": "yes"}, None),
    "los-angeles-letters-only": (
        {"time_zone": "America/Los_Angeles", "sms_consent": "no", "email": ""},
        None,
    ),
    "honolulu-email-no-sms": ({"time_zone": "Pacific/Honolulu", "sms_consent": "no"}, None),
    # A New York number and ZIP code as well: the window is the hours both places allow.
    "honolulu-with-new-york-phone-and-address": (
        {
            "time_zone": "Pacific/Honolulu",
            "sms_consent": "no",
            "phone": "+12125550123",
            "postal_code": "10001",
        },
        None,
    ),
    # $55.00 owed, $35.00 paid on day 25: $20.00 left, so call-1 (min $25.00) is skipped.
    "chicago-pays-partially": ({"time_zone": "America/Chicago", "sms_consent": "yes"}, (25, 3500)),
}


def _steps(history: list[StepRecord]) -> list[tuple[str, str, str | None, list[str]]]:
    """Step, outcome, channel, and every reason a step was moved or skipped."""
    return [
        (r.step_id, r.outcome.value, r.channel.value if r.channel else None, list(r.reasons))
        for r in history
    ]


@pytest.mark.parametrize("case", list(CASES))
async def test_simulated_timeline_equals_the_workflow(
    case: str,
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    overrides, payment = CASES[case]
    row = balance_row(policy=policy_in(settings, POLICY), **overrides)
    csv = write_csv(tmp_path / "balances.csv", [row])
    client = ts_env.client
    intake = Intake(session_factory, client, settings)
    payments: list[Payment] = []
    async with build_worker(client, settings, session_factory):
        await advance_to(ts_env, TUESDAY_MORNING)  # weekends, Presidents' Day and DST ahead
        await intake.import_balances(csv)
        account_id = intake.account_id(row["account_number"])
        started = (await client.get_workflow_handle(workflow_id(account_id)).describe()).start_time
        assert started is not None
        if payment is None:
            await ts_env.sleep(dt.timedelta(days=DAYS))
        else:
            day, cents = payment
            await ts_env.sleep(dt.timedelta(days=day))
            paid_at = await ts_env.get_current_time()
            reference = f"PAY-{row['account_number']}"
            await intake.post_payment(row["account_number"], cents, reference)
            payments.append(Payment(paid_at, cents, reference))
            await ts_env.sleep(dt.timedelta(days=DAYS - day))
        status = await get_status(client, account_id)
        end = await ts_env.get_current_time()

    policy = load_policy(POLICY).policy
    [balance] = from_csv(csv, policy, started)
    sim = simulate_balance(policy, balance, end, payments=payments)

    real = status.history
    assert len(real) >= 6, real  # the case really walked the ladder
    assert _steps(sim.state.history) == _steps(real)
    for simulated, actual in zip(sim.state.history, real, strict=True):
        assert abs(simulated.at - actual.at) <= TOLERANCE, (simulated, actual)
    assert sim.state.balance_cents == status.balance_cents
    if payment is not None:
        assert ("call-1", StepOutcome.SKIPPED.value) in [(r[0], r[1]) for r in _steps(real)]
