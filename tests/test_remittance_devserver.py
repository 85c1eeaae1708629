"""An X12 835 posted end to end on the dev server: claims matched to accounts, the payer's payment
and write-offs in the ledger and in the workflow once, the patient's share explained, unmatched
claims listed; the CLI's dry run and its errors."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import Account, Adjustment, RemittanceClaim, SignalOutbox
from services.context import Services
from services.identity import SYSTEM
from services.remittance import import_remittance
from starter import Intake, get_status
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.identities import signed_in
from tests.support.cli import run_dunning
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.devserver

DATA = Path(__file__).parent / "data" / "remittance"


def _accounts(settings: Settings, tmp_path: Path, tag: str) -> tuple[Path, dict[str, str]]:
    """Three accounts billed at the gross charge, before the payer adjudicated their claims."""
    policy = policy_in(settings, instant_policy(tmp_path, midday_zone()))
    gross = {"insurance_paid": "0", "insurance_adjustment": "0", "policy": policy}
    gross["time_zone"] = midday_zone()
    a = balance_row(charge_ref=f"A-{tag}", charges="185.00", **gross)
    b = balance_row(charge_ref=f"B-{tag}", charges="200.00", **gross)
    c = balance_row(charge_ref=f"C-{tag}", charges="90.00", **gross)
    csv = write_csv(tmp_path / f"balances-{tag}.csv", [a, b, c])
    refs = {
        "CLAIM-A": a["charge_ref"],  # the visit's own reference
        "CLAIM-B": b["charge_ref"],
        "CLAIM-C": c["account_number"],  # or the account number
        "CLAIM-U": f"U-{tag}",  # nobody's
        "TRACE-0001": f"TR-{tag}",
    }
    return csv, refs | {"a": a["account_number"], "b": b["account_number"]}


def _era(tmp_path: Path, refs: dict[str, str]) -> Path:
    text = (DATA / "guide_5010_example.835").read_text()
    for placeholder, value in refs.items():
        if not placeholder.isupper():
            continue
        text = text.replace(f"*{placeholder}*", f"*{value}*")
    path = tmp_path / f"era-{refs['TRACE-0001']}.835"
    path.write_text(text)
    return path


def _balances(session_factory: sessionmaker[Session], numbers: list[str]) -> list[int]:
    with session_factory() as session:
        by_number: dict[str, int] = dict(
            session.execute(
                select(Account.account_number, Account.balance_cents).where(
                    Account.account_number.in_(numbers)
                )
            ).all()
        )
    return [by_number[n] for n in numbers]


async def test_an_835_posts_once_and_explains_the_patients_share(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    client = dev_env.client
    tag = uuid.uuid4().hex[:8].upper()
    csv, refs = _accounts(settings, tmp_path, tag)
    era = _era(tmp_path, refs)
    numbers = [refs["a"], refs["b"], refs["CLAIM-C"]]
    svc = Services(settings, session_factory, client)
    async with build_worker(client, settings, session_factory):
        await Intake(session_factory, client, settings).import_balances(csv)
        assert _balances(session_factory, numbers) == [18500, 20000, 9000]

        dry = await import_remittance(svc, SYSTEM, era, dry_run=True)
        assert [c.account_number for c in dry.claims] == [*numbers, None]
        assert dry.unmatched[0].claim.claim_ref == refs["CLAIM-U"]
        assert "no charge line or account" in dry.unmatched[0].unmatched
        # What would change: paid 90 + 122, written off 40 + 58; the claims' PR stays owed.
        assert (dry.total("paid_cents"), dry.total("written_off_cents")) == (21200, 9800)
        assert dry.total("balance_change_cents") == -31000
        assert _balances(session_factory, numbers) == [18500, 20000, 9000]  # nothing written
        with session_factory() as session:
            assert _posted(session, refs["TRACE-0001"]) == 0

        report = await import_remittance(svc, SYSTEM, era)
        assert (report.posted, report.accounts, report.queued) == (3, 3, 0)
        owed = _balances(session_factory, numbers)
        assert owed == [5500, 2000, 9000]
        # The dry run's totals are the true amounts now owed: the matched claims' PR.
        assert sum(owed) == 18500 + 20000 + 9000 + dry.total("balance_change_cents")
        assert sum(owed) == sum(c.claim.patient_responsibility_cents for c in report.matched)
        with session_factory() as session:
            reasons: dict[str, list[dict[str, object]]] = dict(
                session.execute(
                    select(RemittanceClaim.claim_ref, RemittanceClaim.patient_reasons).where(
                        RemittanceClaim.trace_number == refs["TRACE-0001"]
                    )
                ).all()
            )
            assert reasons[refs["CLAIM-A"]] == [
                {"reason": "1", "label": "deductible", "cents": 3000},
                {"reason": "2", "label": "co-insurance", "cents": 2500},
            ]
            assert reasons[refs["CLAIM-B"]] == [
                {"reason": "3", "label": "co-payment", "cents": 2000}
            ]
            assert reasons[refs["CLAIM-C"]][0]["label"] == "not covered under the benefit plan"
            assert _pending(session, numbers) == 0  # every message delivered

        account_a = Intake(session_factory, client, settings).account_id(refs["a"])

        async def workflow_heard() -> bool:
            return (await get_status(client, account_a)).balance_cents == 5500

        assert await eventually(workflow_heard)

        # The same file again (a retry, a second download): nothing changes.
        again = await import_remittance(svc, SYSTEM, era)
        assert (again.posted, again.already_posted, len(again.unmatched)) == (0, 3, 1)
        assert _balances(session_factory, numbers) == [5500, 2000, 9000]
        with session_factory() as session:
            assert _posted(session, refs["TRACE-0001"]) == 3
            assert _adjustments(session, numbers) == 4  # paid + CO for A and B; none for C
        assert (await get_status(client, account_a)).balance_cents == 5500


async def test_a_reversal_of_a_payment_never_posted_here_is_listed_not_posted(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    """pyx12's 4010 sample: a reversal (CLP02 22) and its corrected claim in one payment."""
    tag = uuid.uuid4().hex[:8].upper()
    ref = f"R-{tag}"
    row = balance_row(
        charge_ref=ref, charges="300.00", insurance_paid="0", insurance_adjustment="0"
    )
    intake = Intake(session_factory, None, settings)  # Temporal away: the outbox keeps it all
    await intake.import_balances(write_csv(tmp_path / "r.csv", [row]))
    text = (DATA / "pyx12_835_simple.835").read_text()
    era = tmp_path / "simple.835"
    era.write_text(text.replace("123839-24635", ref).replace("*0004926*", f"*T{tag}*"))
    svc = Services(settings, session_factory, None)
    report = await import_remittance(svc, SYSTEM, era)
    reversal, corrected, other = report.claims
    assert reversal.account_number is None
    assert reversal.unmatched == "reverses a payment that was never posted here"
    assert corrected.account_number == row["account_number"] and report.posted == 1
    assert other.account_number is None  # 134158-27488: no such claim here
    # The corrected claim: paid 200.00 and a 100.00 correction on a 300.00 charge.
    assert _balances(session_factory, [row["account_number"]]) == [0]
    assert report.queued == 1
    with session_factory() as session:
        assert _pending(session, [row["account_number"]]) == 3  # start + the two adjustments

    # The same file again: its reversal still takes back nothing posted from an earlier payment.
    again = await import_remittance(svc, SYSTEM, era)
    assert again.posted == 0
    assert again.claims[0].account_number is None
    # A later payment reverses the corrected claim (posted above) and pays it again: posted.
    later = tmp_path / "later.835"
    later.write_text(
        era.read_text()
        .replace(f"*T{tag}*", f"*L{tag}*")
        .replace(f"CLP*{ref}*22*-310*-210*", f"CLP*{ref}*22*-300*-200*")
    )
    reversed_later = await import_remittance(svc, SYSTEM, later)
    assert reversed_later.claims[0].account_number == row["account_number"]
    assert reversed_later.claims[0].balance_change_cents == 30000
    assert reversed_later.posted == 2
    assert _balances(session_factory, [row["account_number"]]) == [0]


async def test_cli_dry_run_lists_every_claim_and_bad_files_are_one_line(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    database_url: str,
) -> None:
    tag = uuid.uuid4().hex[:8].upper()
    csv, refs = _accounts(settings, tmp_path, tag)
    await Intake(session_factory, None, settings).import_balances(csv)
    era = _era(tmp_path, refs)
    token, _ = signed_in(session_factory, "billing_lead")
    env = dict(
        os.environ,
        DUNNING_DATABASE__URL=database_url,
        DUNNING_DATA_DIR=str(settings.data_dir),
        DUNNING_TEMPORAL__ADDRESS=dev_env.client.service_client.config.target_host,
        DUNNING_TEMPORAL__TASK_QUEUE=settings.temporal.task_queue,
        DUNNING_TOKEN=token,
        COLUMNS="320",
    )
    code, out = await run_dunning(env, "import", "remittance", str(era), "--dry-run")
    assert code == 0, out
    assert "1 payment(s), 4 claim(s): 3 matched, 1 unmatched, 0 posted before" in out
    assert f"claim {refs['CLAIM-A']} -> {refs['a']}: payer paid $90.00; written off $40.00" in out
    assert "patient owes $55.00 (deductible $30.00, co-insurance $25.00); balance -$130.00" in out
    assert f"claim {refs['CLAIM-U']} (trace {refs['TRACE-0001']}, segment 32)" in out
    assert "would post 3 claim(s): payer paid $212.00, written off $98.00, balances -$310.00" in out
    assert _balances(session_factory, [refs["a"]]) == [18500]

    code, out = await run_dunning(env, "import", "remittance", str(era))
    assert code == 0, out
    assert "posted 3 claim(s)" in out
    assert _balances(session_factory, [refs["a"], refs["b"]]) == [5500, 2000]

    bad = tmp_path / "bad.835"
    bad.write_text(era.read_text().replace("CLP*" + refs["CLAIM-B"] + "*1*", "CLP*X*Q*"))
    code, out = await run_dunning(env, "import", "remittance", str(bad))
    assert code == 2 and "Traceback" not in out
    assert "bad.835: nothing posted." in out and "segment 21 CLP02: 'Q'" in out
    code, out = await run_dunning(env, "import", "remittance", str(csv))
    assert code == 2 and "does not start with an ISA segment" in out and "Traceback" not in out


def _posted(session: Session, trace: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(RemittanceClaim)
            .where(RemittanceClaim.trace_number == trace)
        )
        or 0
    )


def _adjustments(session: Session, numbers: list[str]) -> int:
    query = (
        select(func.count())
        .select_from(Adjustment)
        .join(Account, Account.id == Adjustment.account_id)
        .where(Account.account_number.in_(numbers))
    )
    return int(session.scalar(query) or 0)


def _pending(session: Session, numbers: list[str]) -> int:
    query = (
        select(func.count())
        .select_from(SignalOutbox)
        .join(Account, Account.id == SignalOutbox.account_id)
        .where(Account.account_number.in_(numbers), SignalOutbox.delivered_at.is_(None))
    )
    return int(session.scalar(query) or 0)
