"""Experiments on the real PostgreSQL: intake assignment and pinning, a synthetic portfolio with
a known true effect recovered by the statistics, and the guard stopping a harmful challenger.

Every test works in a transaction rolled back at its end (``db_session``): a running experiment
of one test must never take the balances other tests import into the shared database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config.loader import load_policy
from config.settings import POLICY_DIR, Settings
from models.imports import BalanceRow
from models.orm import (
    Account,
    ArmStatus,
    AuditEvent,
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    ExperimentStatus,
    Guarantor,
    Payment,
)
from services.experiments import chart
from services.experiments import forecast as forecasting
from services.experiments.core import ArmSlot, bucket, pick_arm
from services.experiments.service import check_file, guard_loop, report, start_in
from services.identity import Actor
from starter import Intake
from tests.factories import balance_row
from tests.support.waits import eventually

LEAD = Actor(id="lead-exp-test", name="lead", roles=frozenset({"billing_lead"}))


def _policy(directory: Path, name: str, keep: set[str] | None = None) -> str:
    """The physician policy under a name of this test's own (other tests never name it), with
    only the steps in ``keep`` when given."""
    data = yaml.safe_load((POLICY_DIR / "physician.yaml").read_text(encoding="utf-8"))
    data["name"] = name
    if keep is not None:
        data["steps"] = [s for s in data["steps"] if s["id"] in keep]
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return name


def _experiment(
    settings: Settings,
    directory: Path,
    session: Session,
    arms: list[tuple[str, str, int]],
    **fields: Any,
) -> str:
    if directory not in settings.practice.policy_dirs:
        settings.practice.policy_dirs.append(directory)
    key = fields.pop("key", None) or f"exp-{uuid.uuid4().hex[:10]}"
    (champion, *challengers) = [{"name": n, "policy": p, "share": s} for n, p, s in arms]
    config = {
        "id": key,
        "champion": champion,
        "challengers": challengers,
        "starts_on": "2026-01-01",
        "statistics": {"min_detectable_effect": 5.0, "bootstrap_resamples": 1000},
        "forecast": {"balances": 0},
        **fields,
    }
    path = directory / f"{key}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    start_in(session, LEAD, check_file(path, settings))
    session.flush()
    return key


def _post(intake: Intake, session: Session, **row: str) -> tuple[str, str]:
    """Post one account's row; (account number, the policy its workflow input carries)."""
    parsed = BalanceRow.model_validate(balance_row(**row))
    inp, _ = intake.post_account(session, parsed.account_number, [parsed])
    session.flush()
    return parsed.account_number, inp.policy.name


def _assignment(session: Session, number: str) -> tuple[ExperimentAssignment, ExperimentArm] | None:
    found = session.execute(
        select(ExperimentAssignment, ExperimentArm)
        .join(ExperimentArm, ExperimentArm.id == ExperimentAssignment.arm_id)
        .join(Account, Account.id == ExperimentAssignment.account_id)
        .where(Account.account_number == number)
    ).first()
    return None if found is None else (found[0], found[1])


def test_intake_assigns_new_balances_by_the_hash_and_pins_them(
    db_session: Session,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    champ = _policy(tmp_path, f"champ-{uuid.uuid4().hex[:8]}")
    chall = _policy(tmp_path, f"chall-{uuid.uuid4().hex[:8]}")
    settings.practice.policy_dirs.append(tmp_path)
    intake = Intake(session_factory, None, settings)
    intake.refresh_experiments(db_session)
    # Running before the experiment starts: never assigned, whatever its bucket.
    before, _ = _post(intake, db_session, policy=champ)

    key = _experiment(
        settings,
        tmp_path,
        db_session,
        [("champion", champ, 50), ("challenger", chall, 50)],
        eligibility={"balance_min": "10.00"},
    )
    intake.refresh_experiments(db_session)
    posted = [_post(intake, db_session, policy=champ) for _ in range(40)]
    slots = [ArmSlot("champion", 5000), ArmSlot("challenger", 5000)]
    arms = set()
    for number, policy in posted:
        found = _assignment(db_session, number)
        assert found is not None
        assignment, arm = found
        account = db_session.get(Account, assignment.account_id)
        assert account is not None
        # Auditable: anyone recomputes the arm from the two ids.
        assert assignment.bucket == bucket(key, str(account.id))
        assert arm.name == pick_arm(slots, assignment.bucket)
        assert policy == account.policy_name == arm.policy_name
        assert assignment.policy_hash == load_policy(tmp_path / f"{arm.policy_name}.yaml").hash
        assert assignment.balance_cents == 5500
        arms.add(arm.name)
    assert arms == {"champion", "challenger"}
    assigned_audits = db_session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(
            AuditEvent.action == "experiment_assigned",
            AuditEvent.detail["experiment"].astext == key,
        )
    )
    assert assigned_audits == 40

    # The balance that was running before: a new charge joins it, still unassigned.
    _, policy = _post(
        intake,
        db_session,
        account_number=before,
        guarantor_id=f"G-{before}",
        policy=champ,
        charge_ref=f"C2-{before}",
    )
    assert _assignment(db_session, before) is None and policy == champ

    # A too-small balance is not eligible.
    small, policy = _post(intake, db_session, policy=champ, charges="135.00")
    assert _assignment(db_session, small) is None and policy == champ

    # A challenger balance's new charge keeps its arm, even after the arm is stopped.
    number = next(n for n, p in posted if p == chall)
    arm_row = db_session.scalars(
        select(ExperimentArm).where(ExperimentArm.policy_name == chall)
    ).one()
    arm_row.status = ArmStatus.STOPPED
    db_session.flush()
    intake.refresh_experiments(db_session)
    _, policy = _post(
        intake,
        db_session,
        account_number=number,
        guarantor_id=f"G-{number}",
        policy=champ,
        charge_ref=f"C2-{number}",
    )
    assert policy == chall
    ids = select(ExperimentAssignment.id).join(Account).where(Account.account_number == number)
    assert len(db_session.scalars(ids).all()) == 1
    # New balances in the stopped arm's slice now go to the champion.
    later = [_post(intake, db_session, policy=champ) for _ in range(20)]
    assert {p for _, p in later} == {champ}
    kept = [_assignment(db_session, n) for n, _ in later]
    assert {found[1].name if found else None for found in kept} == {"champion"}


def test_a_synthetic_portfolio_with_a_known_effect_is_recovered_within_the_interval(
    db_session: Session, settings: Settings, tmp_path: Path
) -> None:
    """The simulation's response model plays every balance under both policies with the same
    luck: the true effect is the mean difference over the whole portfolio. The experiment sees
    each balance under its assigned arm only, through the ledger."""
    letters = _policy(
        tmp_path, f"letters-{uuid.uuid4().hex[:8]}", {"statement-1", "statement-2", "statement-3"}
    )
    full = _policy(tmp_path, f"full-{uuid.uuid4().hex[:8]}")
    settings.practice.policy_dirs.append(tmp_path)
    n, seed = 3000, 7
    window = 90
    runs = {
        name: forecasting.simulate_arm(
            load_policy(tmp_path / f"{name}.yaml").policy, n, seed, window
        )
        for name in (letters, full)
    }
    value = {name: [sum(c for _, c in r.payments) / 100 for r in rs] for name, rs in runs.items()}
    true_effect = sum(value[full]) / n - sum(value[letters]) / n
    assert true_effect > 3  # the full ladder's texts, emails and call collect more

    key = _experiment(
        settings,
        tmp_path,
        db_session,
        [("champion", letters, 50), ("challenger", full, 50)],
        statistics={"min_detectable_effect": 15.0, "bootstrap_resamples": 2000},
        key="known-effect",  # a fixed key: the same assignment, hence the same sample, each run
    )
    arms = {
        a.name: a
        for a in db_session.scalars(
            select(ExperimentArm).where(ExperimentArm.policy_name.in_([letters, full]))
        )
    }
    guarantor = Guarantor(
        id=uuid.uuid4(),
        external_ref=f"G-{key}",
        first_name="Sim",
        last_name="Ulated",
        time_zone="America/New_York",
    )
    db_session.add(guarantor)
    db_session.flush()
    slots = [ArmSlot("champion", 5000), ArmSlot("challenger", 5000)]
    observed: dict[str, list[float]] = {"champion": [], "challenger": []}
    accounts: list[Account] = []
    dependents: list[ExperimentAssignment | Payment] = []
    for i in range(n):
        account_id = uuid.uuid5(uuid.NAMESPACE_URL, f"https://example.test/{key}/{i}")
        point = bucket(key, str(account_id))
        arm = pick_arm(slots, point)
        policy = letters if arm == "champion" else full
        run = runs[policy][i]
        accounts.append(
            Account(
                id=account_id,
                account_number=f"{key}-{i}",
                guarantor_id=guarantor.id,
                policy_name=policy,
                balance_cents=run.balance.balance_cents,
                opened_at=run.balance.opened_at,
            )
        )
        dependents.append(
            ExperimentAssignment(
                experiment_id=arms[arm].experiment_id,
                arm_id=arms[arm].id,
                account_id=account_id,
                bucket=point,
                policy_hash="synthetic",
                balance_cents=run.balance.balance_cents,
                assigned_at=run.balance.entered_at,
            )
        )
        dependents += [
            Payment(
                account_id=account_id,
                reference=f"{key}-{i}-{j}",
                amount_cents=cents,
                received_at=at,
            )
            for j, (at, cents) in enumerate(run.payments)
        ]
        observed[arm].append(value[policy][i])
    db_session.add_all(accounts)
    db_session.flush()
    db_session.add_all(dependents)
    db_session.flush()
    as_of = forecasting.FORECAST_START + dt.timedelta(days=28 + window + 1)

    found = report(db_session, key, as_of, settings, with_forecast=False)

    by_arm = {a.name: a for a in found.arms}
    for name in ("champion", "challenger"):
        assert by_arm[name].balances == len(observed[name])
        assert by_arm[name].matured_90d == len(observed[name])
        assert abs(by_arm[name].collected_90d - sum(observed[name]) / len(observed[name])) < 0.01
    (effect,) = found.effects
    assert effect.ci_low is not None and effect.ci_high is not None
    assert effect.ci_low <= true_effect <= effect.ci_high, (effect, true_effect)
    assert effect.ci_low > 0  # and the experiment does detect it
    assert effect.warning is None and effect.significant
    assert effect.required_per_challenger is not None
    assert effect.required_per_challenger < effect.n_challenger
    assert by_arm["challenger"].curve[-1] > by_arm["champion"].curve[-1]
    png = chart.png(found, tmp_path / "arms.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_the_guard_stops_a_harmful_challenger_and_spares_a_harmless_one(
    db_session: Session,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    champ = _policy(tmp_path, f"champ-{uuid.uuid4().hex[:8]}")
    harmful = _policy(tmp_path, f"harm-{uuid.uuid4().hex[:8]}")
    harmless = _policy(tmp_path, f"calm-{uuid.uuid4().hex[:8]}")
    settings.practice.policy_dirs.append(tmp_path)
    key = _experiment(
        settings,
        tmp_path,
        db_session,
        [("champion", champ, 60), ("harmful", harmful, 20), ("harmless", harmless, 20)],
        guards=[{"metric": "opt_outs", "max_excess": 0.03, "min_balances": 20}],
    )
    intake = Intake(session_factory, None, settings)
    intake.refresh_experiments(db_session)
    numbers = [_post(intake, db_session, policy=champ)[0] for _ in range(200)]
    by_arm: dict[str, list[uuid.UUID]] = {"champion": [], "harmful": [], "harmless": []}
    for number in numbers:
        found = _assignment(db_session, number)
        assert found is not None
        by_arm[found[1].name].append(found[0].account_id)
    assert min(len(v) for v in by_arm.values()) >= 20  # about 40 each; 20 is 3.5 sd below
    # Opt-outs as the ledger records them (``Intake.channel_event``): one in five of the harmful
    # arm's patients texts STOP, one in fifty elsewhere.
    # Intake assigns at the moment of posting (now): the facts and the report come after it.
    opted_at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    as_of = opted_at + dt.timedelta(days=1)
    every = {"champion": 50, "harmful": 5, "harmless": 50}
    for arm, ids in by_arm.items():
        for i, account_id in enumerate(ids):
            if i % every[arm] == 0:
                db_session.add(
                    AuditEvent(
                        actor="twilio",
                        action="opted_out",
                        account_id=account_id,
                        at=opted_at,
                        detail={"channel": "sms", "reference": f"SM{i}"},
                    )
                )
    db_session.flush()

    guarded = report(db_session, key, as_of, settings, with_forecast=False)

    assert len(guarded.guard_stops) == 1 and guarded.guard_stops[0].startswith("harmful: opt-outs")
    status = {a.name: a.status for a in guarded.arms}
    assert status == {"champion": "active", "harmful": "stopped", "harmless": "active"}
    rates = {a.name: a.harm_rates["opt_outs"] for a in guarded.arms}
    assert rates["harmful"] > 0.15 and rates["harmless"] < 0.05
    stopped = db_session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "experiment_arm_stopped",
            AuditEvent.detail["experiment"].astext == key,
        )
    ).one()
    assert stopped.actor == "experiment-guard" and stopped.detail["arm"] == "harmful"
    # From the next intake on, the harmful arm takes no balance; the harmless one still does.
    intake.refresh_experiments(db_session)
    later = {_post(intake, db_session, policy=champ)[1] for _ in range(40)}
    assert harmful not in later and harmless in later


async def test_the_worker_guard_loop_stops_a_harmful_challenger_by_itself(
    settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """The periodic path: committed rows (the loop reads in sessions of its own), policies of
    this test's own so that no other test's balance is eligible, the experiment ended after."""
    champ = _policy(tmp_path, f"champ-{uuid.uuid4().hex[:8]}")
    harmful = _policy(tmp_path, f"harm-{uuid.uuid4().hex[:8]}")
    settings.practice.policy_dirs.append(tmp_path)
    with session_factory.begin() as session:
        key = _experiment(
            settings,
            tmp_path,
            session,
            [("champion", champ, 50), ("harmful", harmful, 50)],
            guards=[{"metric": "disputes", "max_rate": 0.10, "min_balances": 10}],
        )
        arms = {
            a.name: a
            for a in session.scalars(
                select(ExperimentArm).where(ExperimentArm.policy_name.in_([champ, harmful]))
            )
        }
        guarantor = Guarantor(
            id=uuid.uuid4(), external_ref=f"G-{key}", first_name="Testy", last_name="Synthetic"
        )
        session.add(guarantor)
        session.flush()
        entered = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
        accounts: list[Account] = []
        facts: list[ExperimentAssignment | AuditEvent] = []
        for i in range(24):
            arm = "champion" if i % 2 else "harmful"
            account = Account(
                id=uuid.uuid4(),
                account_number=f"{key}-{i}",
                guarantor_id=guarantor.id,
                policy_name=arms[arm].policy_name,
                balance_cents=5000,
                opened_at=entered,
            )
            accounts.append(account)
            facts.append(
                ExperimentAssignment(
                    experiment_id=arms[arm].experiment_id,
                    arm_id=arms[arm].id,
                    account_id=account.id,
                    bucket=0.0,
                    policy_hash="test",
                    balance_cents=5000,
                    assigned_at=entered,
                )
            )
            if arm == "harmful" and i % 4 == 0:  # half of the harmful arm disputes its bill
                facts.append(
                    AuditEvent(
                        actor=LEAD.id,
                        action="hold",
                        account_id=account.id,
                        at=entered + dt.timedelta(days=1),
                        detail={"outcome": "done", "reason": "dispute"},
                    )
                )
        session.add_all(accounts)
        session.flush()
        session.add_all(facts)
    stop = asyncio.Event()
    loop = asyncio.create_task(
        guard_loop(session_factory, stop, interval=dt.timedelta(milliseconds=50))
    )

    def arm_status() -> ArmStatus:
        with session_factory() as session:
            return session.scalars(
                select(ExperimentArm.status).where(ExperimentArm.id == arms["harmful"].id)
            ).one()

    try:
        await eventually(lambda: asyncio.to_thread(lambda: arm_status() is ArmStatus.STOPPED))
    finally:
        stop.set()
        await asyncio.wait_for(loop, 10)
        with session_factory.begin() as session:
            experiment = session.scalars(select(Experiment).where(Experiment.key == key)).one()
            experiment.status = ExperimentStatus.STOPPED
    with session_factory() as session:
        harmed = session.get(ExperimentArm, arms["harmful"].id)
        assert harmed is not None and harmed.stop_reason is not None
        assert harmed.stop_reason.startswith("guard: disputes 50.0% of 12 balances")
        champion = session.get(ExperimentArm, arms["champion"].id)
        assert champion is not None and champion.status is ArmStatus.ACTIVE
