"""What a step says: the rendered message, a letter's statement, a call task's script."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from temporalio.exceptions import ApplicationError

from activities.channels import LetterContent
from activities.messaging.eligibility import address_lines
from activities.rendering import (
    PAYMENT_TERMS_DAYS,
    Recipient,
    RenderError,
    StatementLine,
    context,
    render,
)
from config.loader import PolicyBundle
from models.content_rules import ContentProblem
from models.orm import Account, ChargeLine, StaffTask, TaskKind
from models.orm.repositories import AGING_BUCKETS
from models.payloads import ContactProfile, SendStepInput
from models.policy import Channel, Policy, StepKind, Tone
from workflows.decisions import home_zone, zone

CALL_OUTCOMES = ["reached", "voicemail", "no_answer", "wrong_number", "promise_to_pay"]


def local_today(policy: Policy, profile: ContactProfile, now: dt.datetime) -> dt.date:
    """The statement's date: today where the patient lives (the first known location)."""
    return now.astimezone(zone(home_zone(policy, profile))).date()


def render_step(
    bundle: PolicyBundle,
    step: SendStepInput,
    account: Account,
    channel: Channel,
    today: dt.date,
    due: tuple[dt.date, bool] | None = None,
) -> tuple[str | None, str]:
    """The step's subject and body on ``channel``; a template error fails the step for good.

    ``due`` is the statement cycle's due date and whether it has passed (one due date per cycle).
    """
    guarantor = account.guarantor
    recipient = Recipient(
        first_name=guarantor.first_name,
        last_name=guarantor.last_name,
        account_number=account.account_number,
        lines=tuple(statement_line(c) for c in account.charges),
    )
    due_date, past_due = due or (None, False)
    variables = context(
        bundle.policy,
        channel,
        recipient,
        step.balance_cents,
        step.tone,
        today,
        due_date=due_date,
        past_due=past_due,
        closing_purpose=step.closing_purpose.value if step.closing_purpose else "",
    )
    try:
        rendered = render(bundle, step.template, guarantor.language, channel, variables)
    except RenderError as exc:
        raise ApplicationError(str(exc), type="TemplateError", non_retryable=True) from exc
    return rendered.subject, rendered.body


def letter_of(
    bundle: PolicyBundle,
    step: SendStepInput,
    account: Account,
    today: dt.date,
    due_date: dt.date | None = None,
) -> LetterContent:
    """The statement a printed letter lays out."""
    policy = bundle.policy
    guarantor = account.guarantor
    rows = tuple(statement_line(c) for c in account.charges)
    fap_required = policy.eca.enabled or step.kind is StepKind.FINAL_NOTICE
    practice = policy.practice
    language = letter_language(policy, guarantor.language)
    return LetterContent(
        practice_name=practice.name,
        practice_phone=practice.phone,
        pay_url=practice.pay_url,
        recipient_name=f"{guarantor.first_name} {guarantor.last_name}",
        address_lines=tuple(address_lines(guarantor)),
        account_number=account.account_number,
        statement_date=today,
        due_date=due_date or today + dt.timedelta(days=PAYMENT_TERMS_DAYS),
        amount_due_cents=step.balance_cents,
        currency=policy.currency,
        lines=rows,
        aging_cents=aging_of(rows, step.balance_cents, today),
        title=step.template.replace("-", " ").capitalize(),
        financial_assistance=practice.assistance_summary(language) if fap_required else "",
        language=language,
        # The one letter after a cease request says what it is, never "Statement".
        title_key="closing_notice" if step.closing_purpose else title_key(step.kind, step.tone),
        return_address=tuple(practice.return_lines),
        remit_to=tuple(practice.remit_to),
        phone_hours=practice.phone_hours,
        logo=practice.logo,
        tax_id=practice.tax_id,
    )


def letter_language(policy: Policy, language: str) -> str:
    """The guarantor's language where the policy declares it, else the policy's first."""
    return language if language in policy.languages else policy.languages[0]


def title_key(kind: StepKind, tone: Tone) -> str:
    """Which title of the statement wording (``config/statement/<language>.yaml``) a step gets."""
    if kind is StepKind.MESSAGE:
        if tone is Tone.FINAL:
            return "final_notice"
        return "past_due" if tone is Tone.FIRM else "statement"
    return {
        StepKind.FINAL_NOTICE: "final_notice",
        StepKind.AGENCY_REFERRAL: "agency_referral",
        StepKind.VALIDATION_NOTICE: "validation_notice",
    }.get(kind, "notice")


def call_task(
    bundle: PolicyBundle,
    step: SendStepInput,
    account: Account,
    communication_id: uuid.UUID,
    script: str,
    today: dt.date,
) -> StaffTask:
    """A worklist entry: who to call, what to say, and what staff need to know first."""
    rows = tuple(statement_line(c) for c in account.charges)
    summary = {
        "balance_cents": step.balance_cents,
        "currency": bundle.policy.currency,
        "visits": len(rows),
        "oldest_service_date": min((r.service_date for r in rows), default=today).isoformat(),
        "aging_cents": dict(aging_of(rows, step.balance_cents, today)),
        "step": step.step_id,
        "tone": step.tone.value,
    }
    return StaffTask(
        account_id=account.id,
        kind=TaskKind.CALL,
        step_id=step.step_id,
        title=f"Call about account {account.account_number}",
        detail={
            "script": script,
            "communication_id": str(communication_id),
            "summary": summary,
            "outcomes": list(CALL_OUTCOMES),
        },
    )


def account_services(account: Account) -> tuple[str, ...]:
    """The account's own service descriptions and dates of service: what an SMS, an email
    subject or a voicemail may never show (HIPAA 45 CFR 164.502(b))."""
    found: list[str] = []
    for charge in account.charges:
        found.append(charge.description)
        found += [charge.service_date.strftime(fmt) for fmt in ("%m/%d/%Y", "%m/%d")]
    return tuple(dict.fromkeys(f for f in found if f.strip()))


def content_task(
    step: SendStepInput, account: Account, channel: Channel, problems: Sequence[ContentProblem]
) -> StaffTask:
    """A worklist entry for a message refused at the moment of sending for its wording: which
    template, which channel, and the rule each word breaks (the policy needs fixing)."""
    return StaffTask(
        account_id=account.id,
        kind=TaskKind.CONTENT,
        step_id=step.step_id,
        title=f"Message of step {step.step_id} for account {account.account_number} not sent:"
        f" its {channel.value} wording breaks a content rule",
        detail={
            "template": step.template,
            "channel": channel.value,
            "policy_hash": step.policy_hash,
            "problems": [str(p) for p in problems],
        },
    )


def aging_of(
    rows: Sequence[StatementLine], balance_cents: int, today: dt.date
) -> tuple[tuple[str, int], ...]:
    """The balance by age of its visits; payments since the lines were posted age off the oldest."""
    buckets = {name: 0 for name, _, _ in AGING_BUCKETS}
    credit = max(sum(r.balance_cents for r in rows) - balance_cents, 0)
    for row in sorted(rows, key=lambda r: r.service_date):
        owed = max(row.balance_cents, 0)
        taken = min(owed, credit)
        credit -= taken
        days = (today - row.service_date).days
        for name, low, high in AGING_BUCKETS:
            if days >= low and (high is None or days <= high):
                buckets[name] += owed - taken
                break
        else:
            buckets[AGING_BUCKETS[0][0]] += owed - taken  # a visit dated after the statement
    return tuple(buckets.items())


def statement_line(charge: ChargeLine) -> StatementLine:
    return StatementLine(
        service_date=charge.service_date,
        description=charge.description,
        charges_cents=charge.charges_cents,
        insurance_paid_cents=charge.insurance_paid_cents,
        insurance_adjustment_cents=charge.insurance_adjustment_cents,
        patient_paid_cents=charge.patient_paid_cents,
        good_faith_estimate_cents=charge.good_faith_estimate_cents,
        nsa_protected_cents=charge.nsa_protected_cents,
        payer=charge.payer,
        claim_status=charge.claim_status,
        deductible_cents=charge.deductible_cents,
        coinsurance_cents=charge.coinsurance_cents,
        copay_cents=charge.copay_cents,
        not_covered_cents=charge.not_covered_cents,
    )
