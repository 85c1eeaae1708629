"""Content rules in ``dunning policy check`` and the credit-reporting guard (issue 18, items 1, 3).

Each test here failed before: the wording of templates was not checked (only their variables),
and a ``credit_report`` step that only sent a letter passed ``check``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from models.content_rules import Place, scan, strip_template_tags
from models.policy import Channel

runner = CliRunner()

POLICY = """\
name: t
languages: [{languages}]
practice:
  name: {practice}
  phone: (555) 010-9999
steps:
  - id: statement-1
    day: 0
    channels: [letter]
    template: statement
  - id: custom
    day: 4
    channels: [{channel}]
    template: custom
"""


def _policy(
    tmp_path: Path,
    channel: str,
    bodies: dict[str, str],
    practice: str = "Synthetic Clinic",
) -> Path:
    for language, body in bodies.items():
        folder = tmp_path / "templates" / "custom" / language
        folder.mkdir(parents=True)
        (folder / f"{channel}.j2").write_text(body, encoding="utf-8")
        # statement letters in every declared language
        if language != "en":
            letter = tmp_path / "templates" / "statement" / language
            letter.mkdir(parents=True)
            (letter / "letter.j2").write_text("Estado de cuenta {{ balance }}\n", encoding="utf-8")
    path = tmp_path / "policy.yaml"
    path.write_text(
        POLICY.format(channel=channel, languages=", ".join(bodies), practice=practice),
        encoding="utf-8",
    )
    return path


def _check(path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["policy", "check", str(path)])
    return result.exit_code, result.output


def _error_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if "steps.1.template: template custom/" in ln]


VOICEMAIL_FROM_ISSUE = (
    "Call about account {{ reference }}.\n"
    'Voicemail: "This is Springfield Psychiatry calling about your unpaid bill balance of $250.00'
    ' for your behavioral health visit. Call {{ practice.phone }}."\n'
)
SMS_FROM_ISSUE = (
    "{{ practice.name }}: your bill for your HIV clinic visit on 10/01/2026 is past due."
    " Call {{ practice.phone }}. Reply STOP\n"
)


def test_the_issues_voicemail_fails_naming_template_line_and_words(tmp_path: Path) -> None:
    code, out = _check(_policy(tmp_path, "call", {"en": VOICEMAIL_FROM_ISSUE}))
    assert code == 1, out
    lines = _error_lines(out)
    assert lines, out
    text = "\n".join(lines)
    assert "custom/en/call.j2: line 2: voicemail may not say" in text
    for word in ("psychiatry", "balance", "bill", "unpaid", "behavioral health", "$2"):
        assert f"'{word}'" in text.lower(), (word, text)
    assert "12 CFR 1006.2(j)" in text


def test_the_issues_sms_fails_on_specialty_and_date_of_service(tmp_path: Path) -> None:
    code, out = _check(_policy(tmp_path, "sms", {"en": SMS_FROM_ISSUE}))
    assert code == 1, out
    text = "\n".join(_error_lines(out))
    assert "custom/en/sms.j2: line 1: SMS may not say 'hiv'" in text
    assert "'10/01/2026'" in text
    assert "HIPAA 45 CFR 164.502(b)" in text


def test_an_email_subject_may_not_name_the_service(tmp_path: Path) -> None:
    body = "About your oncology treatment at {{ practice.name }}\nHello,\nAmount {{ balance }}\n"
    code, out = _check(_policy(tmp_path, "email", {"en": body}))
    assert code == 1, out
    text = "\n".join(_error_lines(out))
    assert "line 1: email subject may not say 'oncology'" in text


def test_an_email_subject_rendering_a_visit_description_fails_on_the_sensitive_sample(
    tmp_path: Path,
) -> None:
    # The template's own words are clean; only its rendering shows the service.
    body = "Your {{ lines[0].description }} statement\nHello,\nAmount {{ balance }}\n"
    code, out = _check(_policy(tmp_path, "email", {"en": body}))
    assert code == 1, out
    text = "\n".join(_error_lines(out))
    assert "rendered with sensitive sample data" in text
    assert "'behavioral health" in text.lower()


def test_a_practice_name_with_a_specialty_fails_in_voicemail(tmp_path: Path) -> None:
    body = 'Voicemail: "A message from {{ practice.name }}. Please call {{ practice.phone }}."\n'
    code, out = _check(
        _policy(tmp_path, "call", {"en": body}, practice="Springfield Psychiatry Associates")
    )
    assert code == 1, out
    assert "rendered with sensitive sample data, line 1: voicemail may not say 'psychiatry'" in out


def test_spanish_templates_are_checked_with_the_spanish_list(tmp_path: Path) -> None:
    clean = 'Voicemail: "A message from {{ practice.name }}. Call {{ practice.phone }}."\n'
    spanish = (
        'Mensaje de voz: "Llamamos de {{ practice.name }} por su saldo de la consulta de'
        ' psiquiatría. Llame al {{ practice.phone }}."\n'
    )
    code, out = _check(_policy(tmp_path, "call", {"en": clean, "es": spanish}))
    assert code == 1, out
    text = "\n".join(_error_lines(out))
    assert "custom/es/call.j2: line 1: voicemail may not say 'saldo'" in text
    assert "'psiquiatría'" in text
    assert "custom/en/" not in text


def test_staff_guidance_in_a_call_script_is_not_voicemail(tmp_path: Path) -> None:
    body = (
        "Call about account {{ reference }}: discuss the balance and a payment plan.\n"
        'Voicemail: "A message from {{ practice.name }}. Please call {{ practice.phone }}."\n'
    )
    code, out = _check(_policy(tmp_path, "call", {"en": body}))
    assert code == 0, out


def test_clean_templates_in_both_languages_pass(tmp_path: Path) -> None:
    sms = {
        "en": "{{ practice.name }}: ref {{ reference }}. Call {{ practice.phone }}. Reply STOP\n",
        "es": "{{ practice.name }}: ref. {{ reference }}. Llame al {{ practice.phone }}."
        " Responda STOP\n",
    }
    code, out = _check(_policy(tmp_path, "sms", sms))
    assert code == 0, out


@pytest.mark.parametrize(
    ("channel", "text", "place", "word"),
    [
        (Channel.SMS, "Your HIV results are in", Place.SMS, "hiv"),
        (Channel.SMS, "visit on 2026-10-01", Place.SMS, "2026-10-01"),
        (Channel.EMAIL, "Statement for your visit on October 1\nbody", Place.EMAIL_SUBJECT, ""),
        (Channel.CALL, "Voicemail: you owe a debt", Place.VOICEMAIL, "debt"),
    ],
)
def test_scan_finds_each_kind(channel: Channel, text: str, place: Place, word: str) -> None:
    found = scan(channel, text, "en")
    assert found and all(p.place is place for p in found)
    if word:
        assert word in [p.word.lower() for p in found]


def test_scan_ignores_letters_and_email_bodies() -> None:
    assert scan(Channel.LETTER, "Behavioral health visit 10/01/2026 $250.00", "en") == []
    assert scan(Channel.EMAIL, "Your statement\nBehavioral health visit on 10/01/2026", "en") == []


def test_strip_template_tags_keeps_line_numbers() -> None:
    assert strip_template_tags("a {{ x\n }} b\nc {% if y %}d{% endif %}") == "a \n b\nc d"


CREDIT_REPORT_FROM_ISSUE = """\
name: t
collector: first_party
practice:
  name: Synthetic Clinic
  phone: (555) 010-9999
steps:
  - id: statement-1
    day: 0
    channels: [letter]
    template: statement
  - id: report
    day: 30
    channels: [letter]
    template: placement-notice
    kind: credit_report
    when: {min_balance: 100}
    approval: {approvers: [supervisor]}
"""


def test_a_credit_report_step_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(CREDIT_REPORT_FROM_ISSUE, encoding="utf-8")
    code, out = _check(path)
    assert code == 1, out
    line = CREDIT_REPORT_FROM_ISSUE.splitlines().index("    kind: credit_report") + 1
    assert f"{path}:{line}: steps.1.kind: 'credit_report' is not supported" in out
    assert "does not report to credit bureaus" in out


def test_no_shipped_policy_or_recorded_history_uses_credit_report() -> None:
    root = Path(__file__).parent.parent
    files = [*root.glob("config/policies/*.yaml"), *root.glob("tests/histories/*.json")]
    assert files
    assert not [f for f in files if "credit_report" in f.read_text(encoding="utf-8")]


def test_plan_reminder_templates_are_checked_too(tmp_path: Path) -> None:
    folder = tmp_path / "templates" / "my-reminder" / "en"
    folder.mkdir(parents=True)
    (folder / "sms.j2").write_text(
        "{{ practice.name }}: your oncology plan payment is due. Reply STOP\n", encoding="utf-8"
    )
    text = (
        "name: t\npractice: {name: Synthetic Clinic, phone: (555) 010-9999}\n"
        "steps:\n  - {id: s, day: 0, channels: [letter], template: statement}\n"
        "staff:\n  plans:\n    reminder_template: my-reminder\n    reminder_channels: [sms]\n"
    )
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    code, out = _check(path)
    assert code == 1, out
    assert (
        f"{path}:7: staff.plans.reminder_template: template my-reminder/en/sms.j2: line 1:"
        " SMS may not say 'oncology'" in out
    )
