"""Render step messages from a policy's templates.

SMS and call scripts get a restricted context: practice name, a reference, how to pay or call.
Nothing else exists for them, so a template that tries to print a service, a diagnosis or an amount
fails to render (HIPAA minimum necessary, 45 CFR 164.502(b); limited-content voicemail,
12 CFR 1006.2(j)). ``dunning policy check`` renders every template to catch that early.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from config.loader import PolicyBundle, PolicyError, field_line, template_key
from models.content_rules import strip_template_tags
from models.money import format_cents
from models.policy import Channel, Policy, Tone
from models.protections import NSA_DISPUTE_NOTICE, NSA_DISPUTE_NOTICE_ES, nsa_dispute_eligible
from workflows.protections import ANY_STATE, message_problems

RESTRICTED_CHANNELS = frozenset({Channel.SMS, Channel.CALL})
WRITTEN_STATEMENT_CHANNELS = frozenset({Channel.LETTER, Channel.EMAIL})
PAYMENT_TERMS_DAYS = 30


class RenderError(ValueError):
    """A template that cannot be rendered; names the template, never the patient."""


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str


@dataclass(frozen=True)
class StatementLine:
    service_date: dt.date
    description: str
    charges_cents: int
    insurance_paid_cents: int
    insurance_adjustment_cents: int
    patient_paid_cents: int
    good_faith_estimate_cents: int | None = None
    nsa_protected_cents: int = 0
    payer: str | None = None
    """The insurer billed for the visit; None: self-pay."""
    claim_status: str | None = None
    """``models.statement.ClaimStatus`` value, where the practice's system reports it."""
    deductible_cents: int = 0
    coinsurance_cents: int = 0
    copay_cents: int = 0
    not_covered_cents: int = 0

    @property
    def balance_cents(self) -> int:
        return (
            self.charges_cents
            - self.insurance_paid_cents
            - self.insurance_adjustment_cents
            - self.patient_paid_cents
            - self.nsa_protected_cents
        )

    @property
    def nsa_dispute_eligible(self) -> bool:
        return nsa_dispute_eligible(self.charges_cents, self.good_faith_estimate_cents)


@dataclass(frozen=True)
class Recipient:
    """What a full message (letter, email) may say about the guarantor and the account."""

    first_name: str
    last_name: str
    account_number: str
    lines: tuple[StatementLine, ...] = ()


@lru_cache(maxsize=1)
def _env() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


@lru_cache(maxsize=1024)
def _compile(source: str) -> Any:
    return _env().from_string(source)


def compile_template(source: str) -> Any:
    """A template of the sandboxed, strict environment (compiled once per source text)."""
    return _compile(source)


def context(
    policy: Policy,
    channel: Channel,
    recipient: Recipient,
    balance_cents: int,
    tone: Tone,
    today: dt.date,
    due_date: dt.date | None = None,
    past_due: bool = False,
    closing_purpose: str = "",
) -> dict[str, Any]:
    """The variables a template of ``channel`` may use.

    ``closing_purpose`` is what the closing notice after a cease-communication request says
    (``terminate``, ``may_invoke_remedies`` or ``intends_remedy``); empty for every other letter.

    ``due_date`` is the statement cycle's (``activities.statement_cycle``); ``past_due`` is true
    only once a due date already quoted to the patient has passed.
    """
    practice = policy.practice

    def money(cents: int) -> str:
        return format_cents(cents, policy.currency)

    practice_vars = {"name": practice.name, "phone": practice.phone, "pay_url": practice.pay_url}
    restricted: dict[str, Any] = {
        "practice": practice_vars,
        "reference": recipient.account_number,
        "tone": tone.value,
    }
    if channel in RESTRICTED_CHANNELS:
        return restricted
    return restricted | {
        "practice": practice_vars
        | {"financial_assistance_summary": practice.financial_assistance_summary},
        "guarantor": {"first_name": recipient.first_name, "last_name": recipient.last_name},
        "account": {"number": recipient.account_number},
        "balance": money(balance_cents),
        "balance_cents": balance_cents,
        "today": today.isoformat(),
        "due_date": (due_date or today + dt.timedelta(days=PAYMENT_TERMS_DAYS)).isoformat(),
        "past_due": past_due,
        "closing_purpose": closing_purpose,
        "no_surprises_notice": no_surprises_notice(policy, recipient),
        "no_surprises_notice_es": no_surprises_notice(policy, recipient, "es"),
        "lines": [
            {
                "dispute_eligible": line.nsa_dispute_eligible,
                "good_faith_estimate": money(line.good_faith_estimate_cents)
                if line.good_faith_estimate_cents is not None
                else "",
                "nsa_protected": money(line.nsa_protected_cents),
                "service_date": line.service_date.isoformat(),
                "description": line.description,
                "charges": money(line.charges_cents),
                "insurance_paid": money(line.insurance_paid_cents),
                "insurance_adjustment": money(line.insurance_adjustment_cents),
                "patient_paid": money(line.patient_paid_cents),
                "balance": money(line.balance_cents),
            }
            for line in recipient.lines
        ],
    }


def no_surprises_notice(policy: Policy, recipient: Recipient, language: str = "en") -> str:
    """How to dispute a bill $400 or more above its good-faith estimate, or an empty string.

    No Surprises Act patient-provider dispute resolution (45 CFR 149.620); the statement must say
    how to start it. Names the visits by date only.
    """
    eligible = [line for line in recipient.lines if line.nsa_dispute_eligible]
    if not eligible:
        return ""
    visits = ", ".join(line.service_date.isoformat() for line in eligible)
    text = NSA_DISPUTE_NOTICE_ES if language == "es" else NSA_DISPUTE_NOTICE
    prefix = "la visita del " if language == "es" else "the visit of "
    return text.format(visits=prefix + visits, phone=policy.practice.phone)


def render(
    bundle: PolicyBundle,
    template: str,
    language: str,
    channel: Channel,
    variables: dict[str, Any],
) -> Rendered:
    """Render one message. Email templates give their subject on the first line.

    Raises:
        RenderError: the template is missing or uses something its channel may not show.
    """
    try:
        source = bundle.template(template, language, channel)
    except KeyError as exc:
        raise RenderError(
            f"template {exc.args[0]} is missing from policy {bundle.policy.name}"
        ) from exc
    try:
        text = _compile(source).render(**variables)
    except TemplateError as exc:
        raise RenderError(f"template {template}/{language}/{channel.value}: {exc}") from exc
    if channel in WRITTEN_STATEMENT_CHANNELS:
        # No Surprises Act (45 CFR 149.620): a statement of a bill $400 or more above its
        # good-faith estimate says how to dispute it, whatever the template says.
        key = "no_surprises_notice_es" if language == "es" else "no_surprises_notice"
        notice = str(variables.get(key) or "")
        if notice and notice not in text:
            text = text.rstrip("\n") + "\n\n" + notice + "\n"
    if channel is Channel.EMAIL:
        subject, _, body = text.partition("\n")
        return Rendered(subject.strip(), body.strip() + "\n")
    return Rendered(None, text.strip() + "\n")


SAMPLE_RECIPIENT = Recipient(
    first_name="Alex",
    last_name="Sample",
    account_number="A-000123",
    lines=(
        StatementLine(dt.date(2026, 9, 14), "Office visit", 18500, 9000, 4000, 2500),
        StatementLine(dt.date(2026, 10, 2), "Laboratory", 6000, 2000, 1500, 0),
    ),
)
"""Synthetic data for previews and checks: never a real patient."""

SENSITIVE_SAMPLE_RECIPIENT = Recipient(
    first_name="Alex",
    last_name="Sample",
    account_number="A-000123",
    lines=(
        StatementLine(dt.date(2026, 10, 1), "Behavioral health visit", 25000, 0, 0, 0),
        StatementLine(dt.date(2026, 10, 2), "HIV clinic visit", 12000, 0, 0, 0),
    ),
)
"""Synthetic services whose mention would disclose health information: the content check renders
every template with them and refuses any that shows one where others may see it."""


RESTRICTED_VARIABLES = frozenset({"practice", "reference", "tone"})
"""All an SMS or a call script may use: practice name, phone and payment link, a reference."""

OPT_OUT_WORD = "STOP"


def check_templates(bundle: PolicyBundle, today: dt.date | None = None) -> list[PolicyError]:
    """Render every template a policy uses with synthetic data, in every tone.

    Reports, against the step's ``template`` field, a template that does not render, an SMS or
    call script that uses anything beyond the minimum necessary (HIPAA 45 CFR 164.502(b);
    12 CFR 1006.2(j)), an SMS without the STOP opt-out (12 CFR 1006.6(e)) and an email without
    a subject line.
    """
    policy = bundle.policy
    today = today or dt.date(2026, 1, 15)
    errors: list[PolicyError] = []
    seen: set[str] = set()
    plans = policy.staff.plans
    uses: list[tuple[tuple[str | int, ...], str, list[Channel]]] = [
        (("steps", i, "template"), step.template, list(step.channels))
        for i, step in enumerate(policy.steps)
    ]
    # Plan reminders are messages too: the same rules (content rules included) apply.
    uses.append(
        (("staff", "plans", "reminder_template"), plans.reminder_template, plans.reminder_channels)
    )
    uses.append(
        (
            ("staff", "closing_notice", "template"),
            policy.staff.closing_notice.template,
            [Channel.LETTER],
        )
    )
    for loc, template, channels in uses:
        for channel in channels:
            for language in policy.languages:
                key = template_key(template, language, channel)
                if key in seen or key not in bundle.templates:
                    continue
                seen.add(key)
                for problem in _template_problems(bundle, template, language, channel, today):
                    errors.append(
                        PolicyError(
                            bundle.source,
                            field_line(bundle.source, loc),
                            ".".join(str(p) for p in loc),
                            f"template {key}.j2: {problem}",
                        )
                    )
    # the printed statement's wording, logo and remit-to address (activities.statement imports
    # this module)
    from activities.statement import statement_problems

    return errors + statement_problems(bundle)


def _template_problems(
    bundle: PolicyBundle, template: str, language: str, channel: Channel, today: dt.date
) -> list[str]:
    source = bundle.templates[template_key(template, language, channel)]
    try:
        names = meta.find_undeclared_variables(_env().parse(source))
    except TemplateSyntaxError as exc:
        return [f"line {exc.lineno}: {exc.message}"]
    if channel in RESTRICTED_CHANNELS:
        extra = sorted(names - RESTRICTED_VARIABLES)
        if extra:
            return [
                f"uses {', '.join(extra)}, which a {channel.value} message may not show;"
                f" {channel.value} templates get only {', '.join(sorted(RESTRICTED_VARIABLES))}"
                " (minimum necessary: practice name, a reference, how to pay or call)"
            ]
    problems: list[str] = []
    for tone in Tone:
        variables = context(bundle.policy, channel, SAMPLE_RECIPIENT, 12345, tone, today)
        try:
            rendered = render(bundle, template, language, channel, variables)
        except RenderError as exc:
            message = str(exc).split(": ", 1)[-1]
            if channel in RESTRICTED_CHANNELS:
                message += f" ({channel.value} templates get only practice.name, practice.phone,"
                message += " practice.pay_url, reference and tone)"
            return [f"does not render in tone {tone.value}: {message}"]
        if channel is Channel.SMS and OPT_OUT_WORD not in rendered.body:
            problems.append(f'an SMS must tell how to opt out ("Reply {OPT_OUT_WORD}")')
        if channel is Channel.EMAIL and not rendered.subject:
            problems.append("an email template gives its subject on its first line; it is empty")
        if problems:
            return problems
    return problems + content_problems(bundle, template, language, channel, today)


def content_problems(
    bundle: PolicyBundle, template: str, language: str, channel: Channel, today: dt.date
) -> list[str]:
    """Content rules on the template's own words, then on its rendering with sensitive samples.

    Limited-content voicemail (12 CFR 1006.2(j)) and no service, date of service, diagnosis or
    specialty in an SMS, an email subject or a voicemail (HIPAA 45 CFR 164.502(b)); see
    ``models.content_rules``.
    """
    source = bundle.templates[template_key(template, language, channel)]
    literal = strip_template_tags(source)
    problems = [str(p) for p in message_problems(channel, literal, language, ANY_STATE)]
    if problems:
        return problems
    sample = SENSITIVE_SAMPLE_RECIPIENT
    extra = tuple(line.description for line in sample.lines) + tuple(
        line.service_date.strftime(fmt) for line in sample.lines for fmt in ("%m/%d/%Y", "%m/%d")
    )
    for tone in Tone:
        variables = context(bundle.policy, channel, sample, 37000, tone, today)
        try:
            rendered = render(bundle, template, language, channel, variables)
        except RenderError:
            continue  # reported above with the ordinary sample
        text = (
            f"{rendered.subject}\n{rendered.body}"
            if rendered.subject is not None
            else rendered.body
        )
        found = message_problems(channel, text, language, ANY_STATE, extra)
        if found:
            return [f"rendered with sensitive sample data, {p}" for p in found]
    return []
