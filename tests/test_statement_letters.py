"""Statements a patient understands and can pay (issue 15): the envelope windows, the coupon and
its remit-to address, the plain words of each visit, every fixed word in the letter's language.

Every letter step of every shipped policy, in every language the policy declares, is composed the
way the print batch composes it (a real ``send_step`` into PostgreSQL, then ``letter_pdf``); the
text behind each envelope window is read back from the PDF with pdfminer.six.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.channels import AccountSection, LetterContent
from activities.letters import (
    LetterError,
    letter_from_json,
    letter_json,
    letter_pdf,
    render_letter,
)
from activities.messaging import MessagingActivities, PolicyStore
from activities.messaging.composition import aging_of
from activities.rendering import StatementLine
from activities.statement import (
    USPS_ENDORSEMENT_KEYS,
    Envelopes,
    Layout,
    StatementConfigError,
    Window,
    explain,
    flat_keys,
    hours_text,
    load_layout,
    wording,
)
from config.loader import load_policy, shipped_policies
from config.settings import Settings
from models.orm import ChargeLine, Communication
from models.payloads import StepOutcome
from models.policy import Channel, PhoneHours, StepKind, Tone, Weekday
from tests.fakes.accounts import make_account, step_input
from tests.support.cli import invoke
from tests.support.clock import MORNING
from tests.support.windows import windows
from worker import build_senders

LINES = [
    (dt.date(2026, 9, 14), "Emergency department visit", 125000, 70000, 30000, 0),
    (dt.date(2026, 11, 2), "Laboratory", 6000, 0, 0, 1000),
]
REMITTANCE = [
    {
        "payer": "Buckeye Health Plan",
        "claim_status": "paid",
        "deductible_cents": 15000,
        "coinsurance_cents": 10000,
    },
    {
        "payer": "Buckeye Health Plan",
        "claim_status": "denied",
        "not_covered_cents": 5000,
        "good_faith_estimate_cents": 4000,
    },
]
BALANCE = 25000 + 5000
MONEY = re.compile(r"\$\s?\d|\d+\.\d{2}\b")


def _text(pdf: bytes) -> str:
    """The letter's words in reading order, without the running header and footer of each page
    (a paragraph broken across two pages reads as one)."""
    kept = []
    for page in PdfReader(io.BytesIO(pdf)).pages:
        for line in (page.extract_text() or "").splitlines():
            if FURNITURE.search(line):
                continue
            kept.append(line)
    return " ".join(" ".join(kept).split())


FURNITURE = re.compile(
    r"\|\s+(Account|Cuenta) \S+$|(Page|Página) \d+\s+ref|^(Questions|¿Preguntas) "
)


def _letters(
    settings: Settings, session_factory: sessionmaker[Session], policy_path: Path, language: str
) -> list[tuple[str, bytes, LetterContent]]:
    """Every letter step of the policy, sent to one synthetic account, as the batch prints it."""
    bundle = load_policy(policy_path)
    messaging = MessagingActivities(
        session_factory,
        build_senders(settings),
        PolicyStore(session_factory),
        clock=lambda: MORNING,
    )
    account_id = make_account(
        session_factory,
        bundle,
        first_name="Robin",
        last_name="Fictive",
        address_line1="42 Sample Street",
        address_line2="Apartment 7",
        city="Springfield",
        region="NY",
        postal_code="10001",
        language=language,
        charges=LINES,
    )
    with session_factory.begin() as s:
        charges = s.scalars(
            select(ChargeLine)
            .where(ChargeLine.account_id == uuid.UUID(account_id))
            .order_by(ChargeLine.service_date)
        ).all()
        for charge, facts in zip(charges, REMITTANCE, strict=True):
            for key, value in facts.items():
                setattr(charge, key, value)
    out = []
    steps = [
        step_input(bundle, account_id, s.id, channels=[Channel.LETTER], balance_cents=BALANCE)
        for s in bundle.policy.steps
        if Channel.LETTER in s.channels
    ]
    plans = bundle.policy.staff.plans
    if Channel.LETTER in plans.reminder_channels:  # a payment plan's reminder is a letter too
        steps.append(
            steps[0].model_copy(
                update={
                    "step_id": "plan1-1",
                    "idempotency_key": f"{account_id}/plan1-1",
                    "template": plans.reminder_template,
                    "kind": StepKind.MESSAGE,
                    "tone": Tone.FRIENDLY,
                }
            )
        )
    for step in steps:
        result = messaging.send_step(step)
        assert result.outcome is StepOutcome.SENT, (bundle.policy.name, step.step_id, result)
        with session_factory() as s:
            row = s.get(Communication, uuid.UUID(result.communication_id or ""))
            assert row is not None and row.letter is not None
            out.append((step.step_id, letter_pdf(row), letter_from_json(row.letter)))
    assert out, f"{bundle.policy.name} has no letter step"
    return out


POLICY_LANGUAGES = [
    (path, language)
    for path in shipped_policies()
    for language in load_policy(path).policy.languages
]


@pytest.mark.parametrize(
    ("policy_path", "language"),
    POLICY_LANGUAGES,
    ids=[f"{p.stem}-{lang}" for p, lang in POLICY_LANGUAGES],
)
def test_every_letter_shows_only_addresses_through_its_envelope_windows(
    policy_path: Path,
    language: str,
    settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    practice = load_policy(policy_path).policy.practice
    layout = load_layout()
    endorsement = wording(language)("return_service")
    for step_id, pdf, letter in _letters(settings, session_factory, policy_path, language):
        seen = windows(pdf, layout)
        where = (policy_path.stem, language, step_id)
        # #10 upper window: the practice's name and return address, and the USPS endorsement.
        assert seen["return"] == [practice.name, *practice.return_lines, endorsement], where
        # #10 lower window: the patient's name and mailing address only.
        assert seen["address"] == [
            "Robin Fictive",
            "42 Sample Street",
            "Apartment 7",
            "Springfield, NY 10001",
        ], where
        # #9 return envelope window (the coupon): the practice's name and remit-to address.
        assert practice.remit_to, where
        assert seen["remit"] == [practice.name, *practice.remit_to], where
        behind = " ".join(seen["return"] + seen["address"] + seen["remit"])
        assert not MONEY.search(behind), where  # no amount shows
        for line in letter.lines:  # no service, no date of service shows
            assert line.description not in behind and line.service_date.isoformat() not in behind
        assert letter.lines and letter.amount_due_cents == BALANCE


@pytest.mark.parametrize(
    ("policy_path", "language"),
    POLICY_LANGUAGES,
    ids=[f"{p.stem}-{lang}" for p, lang in POLICY_LANGUAGES],
)
def test_every_letter_carries_a_complete_coupon_and_plain_words_in_its_language(
    policy_path: Path,
    language: str,
    settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    policy = load_policy(policy_path).policy
    words = wording(language)
    hours = hours_text(policy.practice.phone_hours, words)
    for step_id, pdf, letter in _letters(settings, session_factory, policy_path, language):
        text = _text(pdf)
        where = (policy.name, language, step_id)
        assert letter.language == language
        # The coupon: account, statement date, due date, amount due, amount enclosed, payee.
        for expected in (
            words("coupon_detach"),
            words("coupon_account"),
            letter.account_number,
            words("coupon_statement_date"),
            letter.statement_date.isoformat(),
            words("coupon_due"),
            letter.due_date.isoformat(),
            words("coupon_amount_due"),
            "$300.00",
            words("coupon_enclosed"),
            words("coupon_payable", practice=policy.practice.name),
        ):
            assert expected in text, (*where, expected)
        # Each visit in plain words, from the ledger's remittance facts.
        for line in letter.lines:
            for sentence in explain(line, letter.currency, words):
                assert " ".join(sentence.split()) in text, (*where, sentence)
        # What to do if it is wrong, with the phone and the hours it is answered.
        for key in ("wrong_heading", "wrong_itemized", "wrong_appeal", "wrong_assistance"):
            assert " ".join(words(key).split())[:50] in text, (*where, key)
        assert words("wrong_call", phone=policy.practice.phone, hours=hours) in text
        # The good-faith estimate has its column where the ledger has one.
        assert words("col_estimate") in text and "$40.00" in text
        if language != "en":
            # The practice's own names and addresses and the visits' services are data, not
            # fixed wording: take them out, then no English fixed word may be left.
            data = [
                policy.practice.name,
                *policy.practice.remit_to,
                *policy.practice.return_lines,
                *(line.description for line in letter.lines),
                *(line.payer or "" for line in letter.lines),
            ]
            for value in sorted(data, key=len, reverse=True):
                text = text.replace(value, " ")
            _no_english_fixed_wording(text, language, where)


def _no_english_fixed_wording(text: str, language: str, where: object) -> None:
    english, other = flat_keys(wording("en").texts), flat_keys(wording(language).texts)
    checked = 0
    for key, value in english.items():
        if key in USPS_ENDORSEMENT_KEYS or not isinstance(value, str) or value == other[key]:
            continue
        for fragment in re.split(r"\{\{[^}]*\}\}", value):
            fragment = " ".join(fragment.split()).strip(" :,.()")
            if len(fragment) >= 6 and fragment not in " ".join(str(v) for v in other.values()):
                checked += 1
                assert fragment not in text, (where, key, fragment)
    assert checked > 50  # the check looked at the English wording, not at nothing


def test_the_window_check_sees_what_a_misplaced_window_would_show() -> None:
    """The window reader is not blind: a window over the coupon's amounts reads the amount."""
    bundle = load_policy("hospital-501r")
    practice = bundle.policy.practice
    letter = _sample_letter(practice.name, "en")
    pdf = render_letter(letter, "Your balance is unpaid.\n", "0123456789")
    layout = load_layout()
    env = layout.envelopes
    over_amounts = env.model_copy(
        update={"address_window": Window(left=5.2, top=8.5, width=2.5, height=1.2)}
    )
    seen = windows(pdf, Layout(blocks=layout.blocks, logo=layout.logo, envelopes=over_amounts))
    assert any(MONEY.search(line) for line in seen["address"]), seen


def _sample_letter(practice_name: str, language: str) -> LetterContent:
    bundle = load_policy("hospital-501r")
    practice = bundle.policy.practice
    lines = (
        StatementLine(dt.date(2026, 9, 14), "Office visit", 18500, 9000, 4000, 2500),
        StatementLine(dt.date(2026, 10, 2), "Laboratory", 6000, 2000, 1500, 0),
    )
    balance = sum(line.balance_cents for line in lines)
    return LetterContent(
        practice_name,
        practice.phone,
        practice.pay_url,
        "Alex Sample",
        ("1 Example Way", "Springfield, NY 10001"),
        "A-000123",
        dt.date(2027, 1, 12),
        dt.date(2027, 2, 11),
        balance,
        "USD",
        lines,
        aging_of(lines, balance, dt.date(2027, 1, 12)),
        "Statement",
        language=language,
        title_key="statement",
        return_address=tuple(practice.return_lines),
        remit_to=tuple(practice.remit_to),
        phone_hours=practice.phone_hours,
    )


def test_composition_is_deterministic_and_follows_the_layout_files_block_order() -> None:
    letter = _sample_letter("Lakeside Community Hospital", "en")
    body = "Thank you for choosing us.\n"
    assert render_letter(letter, body, "ref") == render_letter(letter, body, "ref")
    layout = load_layout()
    words = wording("en")
    text = _text(render_letter(letter, body, "ref", layout))
    assert text.index(words("ways_heading")) < text.index(words("aging_heading"))
    reordered = layout.model_copy(update={"blocks": ["summary", "aging", "ways_to_pay"]})
    text = _text(render_letter(letter, body, "ref", reordered))
    assert text.index(words("aging_heading")) < text.index(words("ways_heading"))
    assert words("explanation_heading") not in text  # a block left out is not printed
    with pytest.raises(ValueError, match="blocks: unknown coupons"):
        Layout(blocks=["summary", "coupons"], envelopes=layout.envelopes)


def test_a_language_without_statement_wording_is_a_clear_error(tmp_path: Path) -> None:
    letter = replace(_sample_letter("Lakeside Community Hospital", "en"), language="fr")
    with pytest.raises(LetterError, match=r"fr\.yaml: missing: the statement's fixed wording"):
        render_letter(letter, "", "ref")
    (tmp_path / "en.yaml").write_text("total: Total\nbalance_due: Balance due\n")
    (tmp_path / "de.yaml").write_text("total: Summe\n")
    with pytest.raises(StatementConfigError, match=r"de\.yaml: balance_due: missing"):
        wording("de", tmp_path)


def test_plain_words_of_a_visit_from_its_remittance_facts() -> None:
    en, es = wording("en"), wording("es")
    insured = StatementLine(
        dt.date(2026, 9, 14),
        "Office visit",
        40000,
        20000,
        5000,
        2500,
        payer="Buckeye Health Plan",
        claim_status="paid",
        deductible_cents=10000,
        coinsurance_cents=2500,
    )
    assert explain(insured, "USD", en) == [
        "We charged $400.00.",
        "Buckeye Health Plan paid $200.00.",
        "$50.00 was taken off under our agreement with your insurer: you do not owe it.",
        "$100.00 went to your plan's deductible (what you pay each year before your plan pays).",
        "$25.00 is your co-insurance (your share of the cost after the deductible).",
        "You paid $25.00.",
        "You owe $125.00 for this visit.",
    ]
    protected = StatementLine(
        dt.date(2026, 10, 2),
        "Anesthesia",
        90000,
        60000,
        0,
        0,
        good_faith_estimate_cents=20000,
        nsa_protected_cents=25000,
        payer="Buckeye Health Plan",
        claim_status="pending",
    )
    said = explain(protected, "USD", es)
    assert (
        "Buckeye Health Plan aún no ha respondido al reclamo: lo que usted debe puede bajar."
        in (said)
    )
    assert "$250.00 están protegidos por la Ley Sin Sorpresas: usted no los debe." in said
    assert "Su estimado de buena fe para esta atención fue de $200.00." in said
    assert said[-1] == "Usted debe $50.00 por esta visita."
    self_pay = StatementLine(dt.date(2026, 10, 2), "Vaccination", 4500, 0, 500, 0)
    assert explain(self_pay, "USD", en)[1:3] == [
        "No insurance was billed for this visit.",
        "$5.00 was taken off as a discount: you do not owe it.",
    ]


def test_phone_hours_in_each_language() -> None:
    weekdays = PhoneHours()
    assert hours_text(weekdays, wording("en")) == "Monday to Friday, 8:00 am to 5:00 pm"
    assert hours_text(weekdays, wording("es")) == "de lunes a viernes, de 08:00 a 17:00"
    odd = PhoneHours(days=[Weekday.MON, Weekday.WED], start=dt.time(9), end=dt.time(12, 30))
    assert hours_text(odd, wording("en")) == "Monday, Wednesday, 9:00 am to 12:30 pm"


def test_envelope_geometry_keeps_windows_apart_from_the_body_and_the_coupon() -> None:
    env: Envelopes = load_layout().envelopes
    address, remit = env.address_window, env.remit_on_page()
    assert env.return_window.top + env.return_window.height + 2 * env.clearance <= address.top
    assert 11 - env.coupon_height + env.clearance <= remit.top  # the remit window is on the coupon


def test_letters_sample_renders_what_a_patient_will_receive(tmp_path: Path) -> None:
    out = tmp_path / "final-es.pdf"
    result = invoke(
        "letters",
        "sample",
        "hospital-501r",
        "--step",
        "final-notice",
        "--language",
        "es",
        "--date",
        "2027-01-12",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "hospital-501r final-notice (es)" in result.output
    pdf = out.read_bytes()
    words = wording("es")
    text = _text(pdf)
    for expected in (
        words("title.final_notice"),
        words("amount_due", amount="$295.00"),
        words("pay_by", date="2027-02-11"),
        "Buckeye Health Plan negó el reclamo.",
        "Alex Sample",
    ):
        assert expected in text, expected
    seen = windows(pdf, load_layout())
    assert seen["address"] == [
        "Alex Sample",
        "1 Example Way",
        "Apartment 2",
        "Springfield, IL 62701",
    ]
    # The same sample, rendered again, is the same file.
    again = tmp_path / "again.pdf"
    assert (
        invoke(
            "letters",
            "sample",
            "hospital-501r",
            "--step",
            "final-notice",
            "--language",
            "es",
            "--date",
            "2027-01-12",
            "--out",
            str(again),
        ).exit_code
        == 0
    )
    assert again.read_bytes() == pdf


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--step", "notice-1"], "step: 'notice-1' is a step without a letter"),
        (["--step", "nope"], "step: 'nope' is no step of policy hospital-501r"),
        (["--step", "statement-1", "--language", "fr"], "language: 'fr' is not declared"),
        (["--step", "statement-1", "--date", "12/01"], "date: '12/01' is not a date"),
    ],
)
def test_letters_sample_refuses_with_the_field_named(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = invoke("letters", "sample", "hospital-501r", *args, "--out", str(tmp_path / "x.pdf"))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "x.pdf").exists()


def test_the_readme_shows_the_rendered_pages() -> None:
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    shown = re.findall(r"\]\((docs/images/[\w.-]+\.png)\)", readme)
    assert {"docs/images/statement-page1.png", "docs/images/final-notice-page1.png"} <= set(shown)
    for image in shown:
        assert (root / image).read_bytes().startswith(b"\x89PNG"), image


def test_a_long_address_still_fits_its_window() -> None:
    letter = replace(
        _sample_letter("Lakeside Community Hospital", "en"),
        recipient_name="Maximiliana Alexandrina Featherstonehaugh-Worthington",
        address_lines=(
            "12345 North Extraordinarily Long Boulevard Name, Suite 1200",
            "Building C, Care of the Featherstonehaugh Family Trust",
            "Springfield, NY 10001-1234",
        ),
    )
    letter = replace(
        letter,
        practice_name="The Greater Lakeside Regional Community Hospital and Clinics",
        remit_to=("Patient Financial Services and Customer Billing Department", "PO Box 300"),
        return_address=("1 Lakeside Drive, Building of the Outpatient Clinics West",),
        logo="statement/logos/lakeside.png",
    )
    assert len(letter.practice_name) == 60  # the longest a practice's name may be
    seen = windows(render_letter(letter, "", "ref"), load_layout())
    assert seen["address"] == [letter.recipient_name, *letter.address_lines]
    assert seen["remit"] == [letter.practice_name, *letter.remit_to]
    expected = f"{letter.practice_name} {letter.return_address[0]} RETURN SERVICE REQUESTED"
    assert " ".join(seen["return"]) == expected  # the name beside the logo takes two lines


def test_a_letter_queued_before_statements_had_an_identity_still_prints() -> None:
    """Outbox rows of older releases store no language, remit-to or hours: defaults apply."""
    letter = _sample_letter("Lakeside Community Hospital", "en")
    stored = letter_json(letter)
    for key in ("language", "title_key", "return_address", "remit_to", "phone_hours", "logo"):
        stored.pop(key)
    old = letter_from_json(stored)
    assert old.language == "en" and old.remit_to == () and old.phone_hours is None
    text = _text(render_letter(old, "", "ref"))
    assert "Statement" in text and words_en("coupon_enclosed") in text
    assert "Monday to Friday, 8:00 am to 5:00 pm" in text


def words_en(key: str) -> str:
    return wording("en")(key)


def test_a_family_statement_speaks_the_letters_language() -> None:
    """A letter covering several accounts of one guarantor has its fixed words in the wording
    files too: a Spanish family statement carries none of the English ones."""
    one = _sample_letter("Lakeside Community Hospital", "es")
    sections = tuple(
        AccountSection(f"id-{n}", f"A-00012{n}", one.amount_due_cents, one.lines, 1000)
        for n in (3, 4)
    )
    family = dataclasses.replace(
        one,
        accounts=sections,
        amount_due_cents=2 * one.amount_due_cents,
        scope="family",
        allocation="oldest_first",
    )
    text = _text(render_letter(family, "Gracias.\n", "ref"))
    spanish, english = wording("es"), wording("en")
    assert spanish("family.heading", count=2) in text
    assert spanish("family.oldest_first")[:40] in text
    for key in ("heading", "total", "oldest_first"):
        english_words = english(f"family.{key}", count=2, total="$0.00")[:20]
        assert english_words not in text, key
