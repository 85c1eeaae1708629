"""Post an X12 835 remittance: each claim matched to an account, its payer payment and adjustments
in the ledger once, the patient's share explained.

For each claim (CLP) the patient control number (CLP01) names the practice's own claim: a charge
line's reference (the visit), else an account number; ``claim_pattern`` (a regular expression
with a group named ``ref``) takes the reference out of a longer control number. A matched claim
posts, in one transaction for the whole file (all or nothing), ledger first:

- the payer's payment (CLP04) as an insurance payment, lowering the balance (a reversal, CLP02
  22, raises it back as an adjustment);
- the sum of the claim's CO, OA, PI and CR adjustments as one adjustment (what nobody owes);
- a ``remittance_claims`` row with the trace number (TRN02), payer, claim numbers, every CAS
  amount, and the patient-responsibility amounts (PR) by reason: deductible, co-insurance,
  co-payment, not covered. PR amounts stay owed: they are what the patient is asked for.

Each balance change queues its ``post_adjustment`` message in the same transaction (the signal
outbox); the messages are then delivered several accounts at a time, and what Temporal does not
take waits for the worker's dispatcher. A claim is posted once per trace number and claim:
importing the same file again changes nothing. Claims matching no account (or more than one)
are listed, never dropped silently, and nothing of them is written; so is a reversal (CLP02 22)
of a claim whose payment was never posted here (it would raise the balance by money nobody
owes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.actions import AdjustmentKind, AdjustmentSignal
from models.orm import Account, AccountStatus, ChargeLine, RemittanceClaim
from models.orm import repositories as repo
from models.remittance import AdjustmentGroup, RemittedClaim, read_835
from services import audit
from services.audit import Outcome
from services.context import Services
from services.identity import Actor
from services.signal_outbox import Dispatcher, enqueue

WRITTEN_OFF = (
    AdjustmentGroup.CONTRACTUAL,
    AdjustmentGroup.OTHER,
    AdjustmentGroup.PAYER_INITIATED,
    AdjustmentGroup.CORRECTION,
)
"""Adjustment groups that are nobody's to pay: they lower the patient's balance."""


class ClaimPatternError(ValueError):
    """The ``claim_pattern`` is not a regular expression with a ``ref`` group."""


@dataclass(frozen=True)
class PatientReason:
    reason: str
    label: str
    cents: int


@dataclass
class ClaimPosting:
    """One claim of the file and what it does (or would do) to the ledger."""

    claim: RemittedClaim
    account_number: str | None = None
    unmatched: str = ""
    """Why no account was chosen (empty when matched)."""
    already_posted: bool = False

    @property
    def paid_cents(self) -> int:
        return self.claim.paid_cents

    @property
    def written_off_cents(self) -> int:
        return sum(self.claim.total(group) for group in WRITTEN_OFF)

    @property
    def balance_change_cents(self) -> int:
        """What the patient's balance changes by: the payer's payment and write-offs lower it."""
        return -(self.claim.paid_cents + self.written_off_cents)

    @property
    def patient_reasons(self) -> list[PatientReason]:
        by_reason: dict[str, int] = defaultdict(int)
        for adjustment in self.claim.adjustments:
            if adjustment.group is AdjustmentGroup.PATIENT:
                by_reason[adjustment.reason] += adjustment.cents
        from models.remittance import reason_label

        return [PatientReason(r, reason_label(r), c) for r, c in by_reason.items() if c]


@dataclass
class RemittanceReport:
    payments: int = 0
    claims: list[ClaimPosting] = field(default_factory=list)
    posted: int = 0
    accounts: int = 0
    queued: int = 0
    """Accounts whose messages wait in the signal outbox (Temporal did not answer)."""

    @property
    def matched(self) -> list[ClaimPosting]:
        return [c for c in self.claims if c.account_number is not None]

    @property
    def unmatched(self) -> list[ClaimPosting]:
        return [c for c in self.claims if c.account_number is None]

    @property
    def already_posted(self) -> int:
        return sum(c.already_posted for c in self.claims)

    def total(self, what: str) -> int:
        """Sum over the claims to post (matched, not posted before) of a ClaimPosting amount."""
        return sum(
            int(getattr(c, what))
            for c in self.claims
            if c.account_number is not None and not c.already_posted
        )


def compile_pattern(text: str | None) -> re.Pattern[str] | None:
    """The ``--claim-pattern`` option: a regular expression with a group named ``ref``."""
    if not text:
        return None
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ClaimPatternError(f"claim_pattern: not a regular expression ({exc.msg})") from None
    if "ref" not in pattern.groupindex:
        raise ClaimPatternError("claim_pattern: needs a group named ref, e.g. ^(?P<ref>[^-]+)-")
    return pattern


def posting_key(claim: RemittedClaim) -> str:
    return hashlib.sha256(claim.key.encode()).hexdigest()


def _ref(claim: RemittedClaim, pattern: re.Pattern[str] | None) -> str | None:
    if pattern is None:
        return claim.claim_ref
    found = pattern.search(claim.claim_ref)
    return found.group("ref") if found and found.group("ref") else None


def match_claims(
    session: Session, claims: list[RemittedClaim], pattern: re.Pattern[str] | None
) -> list[ClaimPosting]:
    """Each claim with its account (by charge-line reference, else account number)."""
    refs = {r for c in claims if (r := _ref(c, pattern))}
    by_line: dict[str, set[str]] = defaultdict(set)
    for line_ref, number in session.execute(
        select(ChargeLine.external_ref, Account.account_number)
        .join(Account, Account.id == ChargeLine.account_id)
        .where(ChargeLine.external_ref.in_(refs))
    ):
        by_line[line_ref].add(number)
    numbers = set(
        session.scalars(select(Account.account_number).where(Account.account_number.in_(refs)))
    )
    keys = {posting_key(c): c for c in claims}
    posted = set(
        session.scalars(
            select(RemittanceClaim.posting_key).where(RemittanceClaim.posting_key.in_(keys))
        )
    )
    reversed_refs = {(c.claim_ref, c.payer_claim_id) for c in claims if c.reversal}
    # Payments a reversal may take back: posted from an earlier payment (another trace number).
    originals: dict[tuple[str, str], set[str]] = defaultdict(set)
    for claim_ref, payer_claim_id, trace in session.execute(
        select(
            RemittanceClaim.claim_ref, RemittanceClaim.payer_claim_id, RemittanceClaim.trace_number
        ).where(
            RemittanceClaim.claim_ref.in_({ref for ref, _ in reversed_refs}),
            RemittanceClaim.claim_status != "22",
        )
    ):
        originals[(claim_ref, payer_claim_id)].add(trace)
    out = []
    for claim in claims:
        ref = _ref(claim, pattern)
        posting = ClaimPosting(claim)
        if ref is None:
            posting.unmatched = "the claim pattern does not match the patient control number"
        elif len(by_line.get(ref, ())) > 1:
            posting.unmatched = "the claim reference is on more than one account"
        elif ref in by_line:
            posting.account_number = next(iter(by_line[ref]))
        elif ref in numbers:
            posting.account_number = ref
        else:
            posting.unmatched = "no charge line or account has this reference"
        if (
            posting.account_number
            and claim.reversal
            and not originals[(claim.claim_ref, claim.payer_claim_id)] - {claim.trace_number}
        ):
            # Reversing a payment the ledger never saw would raise the patient's balance by
            # money nobody owes: staff look at it instead.
            posting.account_number = None
            posting.unmatched = "reverses a payment that was never posted here"
        posting.already_posted = posting.account_number is not None and posting_key(claim) in posted
        out.append(posting)
    return out


async def import_remittance(
    svc: Services,
    actor: Actor,
    path: Path,
    *,
    dry_run: bool = False,
    claim_pattern: str | None = None,
) -> RemittanceReport:
    """Read, match and (unless ``dry_run``) post an 835 file; see the module's docstring.

    Raises:
        models.remittance.RemittanceFileError: the file is not a readable 835.
        ClaimPatternError: ``claim_pattern`` is unusable.
    """
    pattern = compile_pattern(claim_pattern)
    remittance = await asyncio.to_thread(read_835, path)
    report = RemittanceReport(payments=len(remittance.payments))
    paid_on = {(trace, payer): day for trace, payer, _, day in remittance.payments}

    def post(session: Session) -> list[uuid.UUID]:
        report.claims = match_claims(session, remittance.claims, pattern)
        if dry_run:
            return []
        touched: dict[uuid.UUID, None] = {}
        for posting in report.claims:
            if posting.account_number is None or posting.already_posted:
                continue
            account = repo.account_by_number(session, posting.account_number)
            assert account is not None
            if _post_claim(session, actor, account, posting, paid_on):
                report.posted += 1
                touched[account.id] = None
            else:
                posting.already_posted = True  # a concurrent import of the same file won
        return list(touched)

    accounts = await svc.db(post)
    report.accounts = len(accounts)
    if accounts and svc.client is not None:
        bulk = Dispatcher(svc.client, svc.session_factory, svc.settings.temporal.task_queue)
        report.queued = len(accounts) - await bulk.deliver_many(accounts)
    else:
        report.queued = len(accounts)
    return report


def _post_claim(
    session: Session,
    actor: Actor,
    account: Account,
    posting: ClaimPosting,
    paid_on: dict[tuple[str, str], dt.date | None],
) -> bool:
    """Ledger rows of one claim and their queued messages. False if it was already posted."""
    claim = posting.claim
    key = posting_key(claim)
    inserted = session.execute(
        insert(RemittanceClaim)
        .values(
            id=uuid.uuid4(),
            posting_key=key,
            account_id=account.id,
            trace_number=claim.trace_number[:50],
            payer_id=claim.payer_id[:80],
            claim_ref=claim.claim_ref[:50],
            claim_status=claim.status,
            payer_claim_id=claim.payer_claim_id[:50],
            paid_on=paid_on.get((claim.trace_number, claim.payer_id)),
            service_date=claim.service_date,
            charge_cents=claim.charge_cents,
            paid_cents=claim.paid_cents,
            patient_responsibility_cents=claim.patient_responsibility_cents,
            balance_change_cents=posting.balance_change_cents,
            adjustments=[
                {"group": a.group.value, "reason": a.reason, "cents": a.cents}
                for a in claim.adjustments
            ],
            patient_reasons=[
                {"reason": r.reason, "label": r.label, "cents": r.cents}
                for r in posting.patient_reasons
            ],
            posted_by=actor.id[:64],
        )
        .on_conflict_do_nothing(index_elements=["posting_key"])
        .returning(RemittanceClaim.id)
    ).scalar()
    if inserted is None:
        return False
    facts: list[AdjustmentSignal] = []
    if claim.paid_cents:
        kind = (
            AdjustmentKind.INSURANCE_PAYMENT if claim.paid_cents > 0 else AdjustmentKind.ADJUSTMENT
        )
        facts.append(
            AdjustmentSignal(
                reference=f"era:{key[:48]}:paid", kind=kind, amount_cents=-claim.paid_cents
            )
        )
    if posting.written_off_cents:
        facts.append(
            AdjustmentSignal(
                reference=f"era:{key[:48]}:adj",
                kind=AdjustmentKind.ADJUSTMENT,
                amount_cents=-posting.written_off_cents,
            )
        )
    for fact in facts:
        repo.record_adjustment(
            session, account, fact.reference, fact.kind.value, fact.amount_cents, actor.id
        )
        if account.status is AccountStatus.OPEN:
            enqueue(session, account.id, "post_adjustment", fact)
    audit.record(
        session,
        actor,
        "remittance_posted",
        account.id,
        Outcome.DONE,
        {
            "posting_key": key,
            "balance_change_cents": posting.balance_change_cents,
            "patient_responsibility_cents": claim.patient_responsibility_cents,
        },
    )
    return True
