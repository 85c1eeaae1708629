"""Payments, adjustments, credits and write-offs on the status timeline, in dollars, from the
ledger: ``dunning status`` (text and ``--json``) and the API's status, on the dev server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.actions import AdjustmentKind, AdjustmentSignal, WriteOffRequest
from models.orm import ApiRole
from models.payloads import Decision, StepDecision
from services.identity import SYSTEM
from services.users import add_user, issue_token
from starter import Intake, decide_step, get_status, request_write_off
from tests.api_support import api_settings, ec_key_pair, running_api
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.support.cli import cli_env, run_dunning
from tests.support.waits import eventually

pytestmark = pytest.mark.devserver


async def test_money_on_the_timeline_in_dollars(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    database_url: str,
) -> None:
    client = dev_env.client
    intake = Intake(session_factory, client, settings)
    tag = uuid.uuid4().hex[:6]
    with session_factory.begin() as session:
        add_user(session, f"reader-{tag}", ["staff"], SYSTEM)
        token = issue_token(session, SYSTEM, user=f"reader-{tag}")[0]
    env = cli_env(settings, database_url, client, DUNNING_TOKEN=token)
    zone = midday_zone()
    policy = policy_in(settings, instant_policy(tmp_path, zone))
    owing = balance_row(time_zone=zone, policy=policy)  # $55.00 owed
    # Insurance paid $160.00 of $185.00 and adjusted $40.00: $15.00 is owed to the patient.
    credit = balance_row(time_zone=zone, policy=policy, insurance_paid="160.00")
    number = owing["account_number"]
    _, public = ec_key_pair()
    async with running_api(client, api_settings(settings, public), session_factory) as api:
        await intake.import_balances(write_csv(tmp_path / "rows.csv", [owing, credit]))
        account_id = intake.account_id(number)
        await intake.post_payment_fact(number, 1500, f"CHK-{tag}")
        await intake.post_adjustment_fact(
            number,
            AdjustmentSignal(
                reference=f"ADJ-{tag}", kind=AdjustmentKind.ADJUSTMENT, amount_cents=-500
            ),
        )
        opened = await request_write_off(
            client, account_id, WriteOffRequest(amount_cents=1000, requested_by="clerk-t")
        )
        await decide_step(
            client,
            account_id,
            StepDecision(
                task_id=opened.task_id,
                decision=Decision.APPROVE,
                decided_by="sup-t",
                role="supervisor",
            ),
        )

        async def written_off() -> bool:
            return (await get_status(client, account_id)).balance_cents == 2500

        await eventually(written_off, timeout=60)

        expected = {
            ("payment", -1500, "-$15.00"),
            ("adjustment", -500, "-$5.00"),
            # the ledger's own record of the approved write-off (once: not again as the
            # workflow's "written_off")
            ("write_off", -1000, "-$10.00"),
        }
        r = await api.http.get(f"/accounts/{number}/status", headers=api.auth(ApiRole.STAFF))
        assert r.status_code == 200, r.text
        ledger = r.json()["ledger"]
        got = {(e["kind"], e["amount_cents"], e["amount"], e["reference"]) for e in ledger}
        assert {g[:3] for g in got} == expected
        assert ("payment", -1500, "-$15.00", f"CHK-{tag}") in got
        assert ("adjustment", -500, "-$5.00", f"ADJ-{tag}") in got
        assert ("write_off", -1000, "-$10.00", f"write-off:{opened.task_id}") in got
        r = await api.http.get(f"/accounts/{number}/actions", headers=api.auth(ApiRole.STAFF))
        assert r.status_code == 200 and " cents" not in r.text, r.text

        code, out = await run_dunning(env, "status", number)
        assert code == 0, out
        assert "-$15.00" in out and "-$5.00" in out and "-$10.00" in out
        assert "cents" not in out, out
        assert "payment" in out and "adjustment" in out and "write_off" in out
        code, out = await run_dunning(env, "status", number, "--json")
        assert code == 0, out
        shown = json.loads(out)
        assert {e["amount"] for e in shown["ledger"]} == {"-$15.00", "-$5.00", "-$10.00"}
        assert all("cents" not in e["detail"] for e in shown["events"]["events"])

        # An account in credit: the credit line is on its timeline, owed back, in dollars.
        code, out = await run_dunning(env, "status", credit["account_number"], "--json")
        assert code == 0, out
        assert [(e["kind"], e["amount"]) for e in json.loads(out)["ledger"]] == [
            ("credit", "-$15.00")
        ]
