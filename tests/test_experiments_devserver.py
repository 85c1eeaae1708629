"""A champion and challenger experiment end to end, on the real Temporal dev server and
PostgreSQL: start (CLI), balances imported through ``Intake`` get a pinned arm whose policy their
workflow runs, a new charge keeps the arm, a payment shows in the per-arm outcomes (CLI and API),
the chart, the permissions, then promotion with migration of the champion's running balances and
the stored default policy honoured by the next import."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import POLICY_DIR, Settings
from models.orm import Account, DefaultPolicy, Experiment, ExperimentArm, ExperimentAssignment
from starter import Intake, get_status
from tests.api_support import running_api
from tests.console_support import person
from tests.factories import balance_row, instant_policy, midday_zone, write_csv
from tests.identities import signed_in
from tests.support.cli import invoke_in_thread
from tests.support.waits import eventually

pytestmark = pytest.mark.devserver


def _arms(session_factory: sessionmaker[Session], numbers: list[str]) -> dict[str, str]:
    """Account number -> the name of its arm."""
    with session_factory() as session:
        rows = session.execute(
            select(Account.account_number, ExperimentArm.name)
            .join(ExperimentAssignment, ExperimentAssignment.account_id == Account.id)
            .join(ExperimentArm, ExperimentArm.id == ExperimentAssignment.arm_id)
            .where(Account.account_number.in_(numbers))
        ).all()
    return {number: arm for number, arm in rows}


async def test_an_experiment_runs_end_to_end(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    zone = midday_zone()
    tag = uuid.uuid4().hex[:8]
    # Policies of this test's own: no other test's balance is eligible for this experiment.
    champ, chall = f"exp-champ-{tag}", f"exp-chall-{tag}"
    folder = tmp_path / "policies"
    folder.mkdir()
    text = instant_policy(tmp_path, zone).read_text(encoding="utf-8")
    (folder / f"{champ}.yaml").write_text(text.replace("name: instant", f"name: {champ}"))
    (folder / f"{chall}.yaml").write_text(
        text.replace("name: instant", f"name: {chall}").replace(
            "{id: notice-1, day: 4", "{id: notice-1, day: 2"
        )
    )
    settings.practice.policy_dirs.append(folder)
    key = f"e2e-{tag}"
    config = tmp_path / f"{key}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "id": key,
                "champion": {"name": "champion", "policy": champ, "share": 50},
                "challengers": [{"name": "challenger", "policy": chall, "share": 50}],
                "starts_on": (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat(),
                "statistics": {"min_detectable_effect": 10.0, "bootstrap_resamples": 500},
                "forecast": {"balances": 100},
            }
        ),
        encoding="utf-8",
    )

    assert settings.database.url is not None
    monkeypatch.setenv("DUNNING_DATABASE__URL", settings.database.url.get_secret_value())
    monkeypatch.setenv(
        "DUNNING_TEMPORAL__ADDRESS", dev_env.client.service_client.config.target_host
    )
    monkeypatch.setenv("DUNNING_TEMPORAL__NAMESPACE", dev_env.client.namespace)
    monkeypatch.setenv("DUNNING_TEMPORAL__TASK_QUEUE", settings.temporal.task_queue)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DUNNING_PRACTICE__POLICY_DIRS", json.dumps([str(POLICY_DIR), str(folder)]))
    lead_token, lead = signed_in(session_factory, "billing_lead")
    staff_token, _ = signed_in(session_factory, "staff")

    checked = await invoke_in_thread("experiment", "check", str(config))
    assert checked.exit_code == 0, checked.output
    assert f"{config}: ok" in checked.output

    monkeypatch.setenv("DUNNING_TOKEN", staff_token)
    refused = await invoke_in_thread("experiment", "start", str(config))
    assert refused.exit_code == 6, refused.output  # staff may not start an experiment
    monkeypatch.setenv("DUNNING_TOKEN", lead_token)
    started = await invoke_in_thread("experiment", "start", str(config))
    assert started.exit_code == 0, started.output
    with session_factory() as session:
        experiment = session.scalars(select(Experiment).where(Experiment.key == key)).one()
        assert experiment.started_by == lead

    client = dev_env.client
    try:
        async with running_api(client, settings, session_factory) as api:
            intake = Intake(session_factory, client, settings)
            rows = [balance_row(time_zone=zone, policy=champ) for _ in range(12)]
            await intake.import_balances(write_csv(tmp_path / "a.csv", rows))
            numbers = [r["account_number"] for r in rows]
            arms = _arms(session_factory, numbers)
            assert set(arms) == set(numbers)
            assert set(arms.values()) == {"champion", "challenger"}
            policy_of = {"champion": champ, "challenger": chall}

            # Each workflow runs its arm's policy.
            for number, arm in arms.items():
                account_id = intake.account_id(number)

                async def on_policy(a: str = account_id, p: str = policy_of[arm]) -> bool:
                    return (await get_status(client, a)).policy.name == p

                await eventually(on_policy)

            # A new charge joins the challenger balance's running workflow and keeps its arm.
            row = next(r for r in rows if arms[r["account_number"]] == "challenger")
            number = row["account_number"]
            account_id = intake.account_id(number)
            again = {**row, "charge_ref": f"C2-{tag}", "charges": "150.00"}  # owes $20.00
            await intake.import_balances(write_csv(tmp_path / "b.csv", [again]))

            async def joined() -> bool:
                view = await get_status(client, account_id)
                return view.balance_cents == 5500 + 2000 and view.policy.name == chall

            await eventually(joined)
            assert _arms(session_factory, [number]) == {number: "challenger"}
            with session_factory() as session:
                pinned = session.scalars(
                    select(ExperimentAssignment.id).where(
                        ExperimentAssignment.account_id == uuid.UUID(account_id)
                    )
                ).all()
            assert len(pinned) == 1

            # A payment on a champion balance shows in the champion's outcomes only.
            paid = next(n for n in numbers if arms[n] == "champion")
            await intake.post_payment(paid, 2000, f"PAY-{tag}")
            result = await invoke_in_thread(
                "experiment", "status", key, "--json", "--chart", str(tmp_path / "c.svg")
            )
            assert result.exit_code == 0, result.output
            report = json.loads(result.stdout)
            by_arm = {a["name"]: a for a in report["arms"]}
            counts = {a: list(arms.values()).count(a) for a in ("champion", "challenger")}
            assert by_arm["champion"]["balances"] == counts["champion"]
            assert by_arm["challenger"]["balances"] == counts["challenger"]
            assert by_arm["champion"]["collected_cents"] == 2000
            assert by_arm["challenger"]["collected_cents"] == 0
            assert by_arm["challenger"]["balance_cents"] == 5500 * counts["challenger"]
            assert by_arm["champion"]["forecast"] is not None  # the simulation ran beside it
            (effect,) = report["effects"]
            assert "too few balances" in effect["warning"]
            svg = (tmp_path / "c.svg").read_text(encoding="utf-8")
            assert 'data-arm="champion"' in svg and 'data-arm="challenger"' in svg

            # The API: read for status, the billing lead's permission to change anything.
            staff = {"Authorization": f"Bearer {staff_token}"}
            lead_auth = {"Authorization": f"Bearer {lead_token}"}
            seen = await api.http.get(f"/experiments/{key}", headers=staff)
            assert seen.status_code == 200, seen.text
            api_arms = {a["name"]: a for a in seen.json()["arms"]}
            assert api_arms["champion"]["collected_cents"] == 2000
            chart = await api.http.get(f"/experiments/{key}/chart.svg", headers=staff)
            assert chart.status_code == 200
            assert chart.headers["content-type"].startswith("image/svg+xml")
            stop = await api.http.post(
                f"/experiments/{key}/stop", json={"reason": "test"}, headers=staff
            )
            assert stop.status_code == 403
            unknown = await api.http.get(f"/experiments/no-such-{tag}", headers=staff)
            assert unknown.status_code == 404

            # The console's read-only page: the arms, their figures and the chart.
            reader = person(session_factory, "reader", "staff")
            form = await api.http.get("/console/sign-in")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf is not None
            signed = await api.http.post(
                "/console/sign-in",
                data={"csrf": csrf.group(1), "name": reader.name, "password": reader.password},
            )
            assert signed.status_code == 303, signed.text
            listed = await api.http.get("/console/experiments")
            assert listed.status_code == 200 and f"/console/experiments/{key}" in listed.text
            page = await api.http.get(f"/console/experiments/{key}")
            assert page.status_code == 200
            assert 'data-arm="challenger"' in page.text and "$20.00" in page.text
            assert "too few balances" in page.text

            # Stop: the champion alone cannot be stopped; the billing lead stops the experiment,
            # and a new eligible balance then gets no arm.
            monkeypatch.setenv("DUNNING_TOKEN", lead_token)
            alone = await invoke_in_thread(
                "experiment", "stop", key, "--arm", "champion", "--reason", "no"
            )
            assert alone.exit_code == 2 and "the champion cannot be stopped alone" in alone.output
            stopped = await api.http.post(
                f"/experiments/{key}/stop", json={"reason": "enough data"}, headers=lead_auth
            )
            assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
            late = balance_row(time_zone=zone, policy=champ)
            await intake.import_balances(write_csv(tmp_path / "late.csv", [late]))
            assert _arms(session_factory, [late["account_number"]]) == {}

            # Promote the challenger: preview, then the champion's running balances move.
            monkeypatch.setenv("DUNNING_TOKEN", lead_token)
            promoted = await invoke_in_thread("experiment", "promote", key, "challenger", "--yes")
            assert promoted.exit_code == 0, promoted.output
            champions = sorted(n for n in numbers if arms[n] == "champion")
            for n in champions:
                assert f"{n}: moved" in promoted.output
            assert "resumes on the new version at:" in promoted.output
            moved_id = intake.account_id(champions[0])
            assert (await get_status(client, moved_id)).policy.name == chall

            again_promote = await api.http.post(
                f"/experiments/{key}/promote", json={"arm": "challenger"}, headers=lead_auth
            )
            assert again_promote.status_code == 409

            # Starting through the API: the same checks as the file's, the field named.
            body = yaml.safe_load(config.read_text(encoding="utf-8"))
            taken = await api.http.post("/experiments", json=body, headers=lead_auth)
            assert taken.status_code == 409 and "exists already" in taken.json()["detail"]
            body["challengers"][0]["share"] = 60
            bad = await api.http.post("/experiments", json=body, headers=lead_auth)
            assert bad.status_code == 422
            assert "champion.share: the shares add up to 110" in bad.json()["detail"]
            by_staff = await api.http.post("/experiments", json=body, headers=staff)
            assert by_staff.status_code == 403

            # New balances that name no policy now get the promoted one, and no arm.
            fresh = balance_row(time_zone=zone, policy="")
            await intake.import_balances(write_csv(tmp_path / "d.csv", [fresh]))
            with session_factory() as session:
                account = session.scalars(
                    select(Account).where(Account.account_number == fresh["account_number"])
                ).one()
                assert account.policy_name == chall
                assert _arms(session_factory, [fresh["account_number"]]) == {}

            # The report stays available after promotion.
            after = await invoke_in_thread("experiment", "status", key, "--no-forecast")
            assert after.exit_code == 0, after.output
            assert "promoted" in after.output
            table = await invoke_in_thread("experiment", "status", key, "--csv", "--no-forecast")
            assert table.exit_code == 0, table.output
            header, champion_row = table.stdout.splitlines()[:2]
            assert header.startswith("arm,policy,status,balances,collected_cents")
            assert champion_row.startswith(f"champion,{champ},active,{counts['champion']},2000,")
    finally:
        # The stored default is the whole database's: leave it as the other tests expect.
        with session_factory.begin() as session:
            ids = select(Experiment.id).where(Experiment.key == key)
            session.execute(delete(DefaultPolicy).where(DefaultPolicy.experiment_id.in_(ids)))
