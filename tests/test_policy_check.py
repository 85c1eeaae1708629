"""``dunning policy check``: every kind of error names the file, the line and the field path."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from config.loader import shipped_policies

runner = CliRunner()

BASE = """\
name: t
practice:
  name: Synthetic Clinic
  phone: (555) 010-9999
  financial_assistance_summary: Free or discounted care by household income.
steps:
  - id: statement-1
    day: 0
    channels: [letter]
    template: statement
  - id: notice-1
    day: 4
    channels: [email, sms]
    template: statement-notice
"""


def _write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _line(text: str, marker: str) -> int:
    """The 1-based line of the (unique) line containing ``marker``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if marker in line]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def _check(*files: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["policy", "check", *map(str, files)])
    return result.exit_code, result.output


@pytest.mark.parametrize("path", shipped_policies(), ids=lambda p: p.stem)
def test_every_shipped_policy_passes(path: Path) -> None:
    code, out = _check(path)
    assert code == 0, out
    assert f"{path}: ok" in out


def test_at_least_the_three_sample_policies_ship() -> None:
    names = {p.stem for p in shipped_policies()}
    assert {"physician", "dental", "dental-missed-appointment", "hospital-501r"} <= names


CASES = [
    pytest.param(
        BASE.replace("channels: [email, sms]", "channels: [email, fax]"),
        "channels: [email, fax]",
        "steps.1.channels.1",
        "got 'fax'; expected 'letter', 'email', 'sms' or 'call'",
        id="unknown-channel",
    ),
    pytest.param(
        BASE.replace("day: 4", "day: -4"),
        "day: -4",
        "steps.1.day",
        "greater than or equal to 0",
        id="negative-offset",
    ),
    pytest.param(
        BASE.replace("day: 0", "day: 10"),
        "day: 4",
        "steps.1.day",
        "4 comes before step 'statement-1' on day 10; steps must be in day order",
        id="unordered-offsets",
    ),
    pytest.param(
        BASE.replace("template: statement-notice", "template: no-such-template"),
        "template: no-such-template",
        "steps.1.template",
        "missing template no-such-template/en/email.j2",
        id="missing-template",
    ),
    pytest.param(
        BASE
        + """\
  - id: referral
    day: 120
    channels: [letter]
    template: placement-notice
    kind: agency_referral
    approval: {approvers: []}
""",
        "approval: {approvers: []}",
        "steps.2.approval.approvers",
        "at least 1 item",
        id="gate-without-approvers",
    ),
    pytest.param(
        BASE
        + """\
  - id: referral
    day: 120
    channels: [letter]
    template: placement-notice
    kind: agency_referral
""",
        "- id: referral",
        "steps.2.approval",
        "a agency_referral step needs approvers",
        id="referral-without-gate",
    ),
    pytest.param(
        BASE
        + """\
  - id: final
    day: 60
    channels: [letter]
    template: final-notice
    kind: final_notice
  - id: report
    day: 100
    channels: [letter]
    template: placement-notice
    kind: agency_referral
    eca: true
    approval: {approvers: [director]}
eca: {enabled: true}
""",
        "day: 100",
        "steps.3.day",
        "an extraordinary collection action on day 100 breaks IRS 501(r): none before day 120",
        id="501r-too-early",
    ),
    pytest.param(
        BASE
        + """\
  - id: final
    day: 100
    channels: [letter]
    template: final-notice
    kind: final_notice
  - id: report
    day: 120
    channels: [letter]
    template: placement-notice
    kind: agency_referral
    eca: true
    approval: {approvers: [director]}
eca: {enabled: true}
""",
        "day: 120",
        "steps.3.day",
        "the final notice (steps.2, day 100) must come at least 30 days before",
        id="501r-notice-too-late",
    ),
    pytest.param(
        BASE
        + """\
  - id: report
    day: 150
    channels: [letter]
    template: placement-notice
    kind: agency_referral
    eca: true
    approval: {approvers: [director]}
eca: {enabled: true}
""",
        "- id: report",
        "steps.2",
        "IRS 501(r) needs a final_notice step",
        id="501r-no-final-notice",
    ),
    pytest.param(
        BASE.replace("name: t\n", "name: t\ncollector: third_party\n"),
        "- id: statement-1",
        "steps.0.kind",
        "a third-party policy must start with a validation_notice step",
        id="third-party-without-validation-notice",
    ),
    pytest.param(
        BASE.replace("name: t\n", "name: t\nstate: MA\n").replace(
            "channels: [email, sms]", "channels: [email, sms, call]"
        )
        + "contact:\n  caps:\n    - {channel: call, max: 2, per_days: 7}\n"
        "    - {channel: sms, max: 1, per_days: 7}\n",
        "{channel: call, max: 2, per_days: 7}",  # the line of the caps list
        "contact.caps",
        "Massachusetts allows at most 2 calls, texts or voicemails in 7 days together;"
        " these caps allow 3",
        id="massachusetts-caps",
    ),
    pytest.param(
        BASE.replace("name: t\n", "name: t\nstate: NY\n")
        + """\
  - id: report
    day: 400
    channels: [letter]
    template: placement-notice
    kind: credit_report
    approval: {approvers: [director]}
""",
        "kind: credit_report",
        "steps.2.kind",
        "'credit_report' is not supported: dunning does not report to credit bureaus",
        id="credit-report-refused",
    ),
    pytest.param(
        BASE
        + """\
  - id: report
    day: 150
    channels: [letter]
    template: placement-notice
    kind: agency_referral
    eca: true
    approval: {approvers: [director], on_timeout: proceed}
""",
        "on_timeout: proceed",
        "steps.2.approval.on_timeout",
        "never runs without a person's decision",
        id="eca-proceeds-without-decision",
    ),
    pytest.param(
        BASE
        + """\
  - id: referral
    day: 120
    channels: [letter]
    template: placement-notice
    kind: agency_referral
    approval: {approvers: [supervisor]}
  - id: after
    day: 130
    channels: [sms]
    template: reminder
""",
        "channels: [sms]",
        "steps.3.channels",
        "no SMS after the agency referral (steps.2)",
        id="sms-after-placement",
    ),
    pytest.param(
        BASE + "contact:\n  allowed_hours: {start: '07:00', end: '21:00'}\n",
        "allowed_hours:",
        "contact.allowed_hours",
        "must lie within 08:00-21:00 (Regulation F)",
        id="hours-outside-reg-f",
    ),
    pytest.param(
        BASE + "thresholds:\n  small_balance_write_off: {below: -2.00}\n",
        "small_balance_write_off:",
        "thresholds.small_balance_write_off.below",
        "must be more than 0.00",
        id="negative-write-off",
    ),
]


@pytest.mark.parametrize(("text", "marker", "path", "message"), CASES)
def test_each_error_names_file_line_and_field(
    tmp_path: Path, text: str, marker: str, path: str, message: str
) -> None:
    file = _write(tmp_path, text)
    code, out = _check(file)
    assert code == 1, out
    expected = f"{file}:{_line(text, marker)}: {path}: "
    line = next((ln for ln in out.splitlines() if ln.startswith(expected)), None)
    assert line is not None, f"no line starting {expected!r} in:\n{out}"
    assert message in line, line


def test_the_valid_base_passes_so_the_cases_above_fail_for_their_own_reason(
    tmp_path: Path,
) -> None:
    code, out = _check(_write(tmp_path, BASE))
    assert code == 0, out


def _with_template(tmp_path: Path, name: str, channel: str, body: str) -> Path:
    folder = tmp_path / "templates" / name / "en"
    folder.mkdir(parents=True)
    (folder / f"{channel}.j2").write_text(body, encoding="utf-8")
    text = BASE.replace("template: statement-notice", f"template: {name}").replace(
        "channels: [email, sms]", f"channels: [{channel}]"
    )
    return _write(tmp_path, text)


@pytest.mark.parametrize(
    ("channel", "body", "message"),
    [
        (
            "sms",
            "{{ practice.name }}: you owe {{ balance }} for {{ lines[0].description }}. Reply STOP",
            "uses balance, lines, which a sms message may not show",
        ),
        (
            "call",
            "Voicemail: {{ practice.name }} about {{ description }}; call {{ practice.phone }}",
            "uses description, which a call message may not show",
        ),
        (
            "sms",
            "{{ practice.name }} {{ practice.financial_assistance_summary }} Reply STOP",
            "'dict object' has no attribute 'financial_assistance_summary'",
        ),
        (
            "sms",
            "{{ practice.name }}: ref {{ reference }}, call {{ practice.phone }}.",
            "an SMS must tell how to opt out",
        ),
        ("email", "\nHello {{ guarantor.first_name }}", "subject on its first line"),
        ("letter", "{% if tone == 'firm' %}unclosed", "line 1: Unexpected end of template"),
    ],
    ids=[
        "sms-amount",
        "voicemail-service",
        "sms-attribute",
        "sms-no-stop",
        "email-no-subject",
        "syntax",
    ],
)
def test_templates_are_rendered_and_minimum_necessary_enforced(
    tmp_path: Path, channel: str, body: str, message: str
) -> None:
    file = _with_template(tmp_path, "custom", channel, body)
    code, out = _check(file)
    assert code == 1, out
    text = file.read_text()
    expected = f"{file}:{_line(text, 'template: custom')}: steps.1.template: template custom/en/"
    line = next((ln for ln in out.splitlines() if ln.startswith(expected)), None)
    assert line is not None, out
    assert message in line, line


def test_a_clean_sms_template_passes(tmp_path: Path) -> None:
    file = _with_template(
        tmp_path,
        "custom",
        "sms",
        "{{ practice.name }}: ref {{ reference }}. Pay at {{ practice.pay_url }}. Reply STOP",
    )
    code, out = _check(file)
    assert code == 0, out


def test_several_files_every_error_reported_and_exit_non_zero(tmp_path: Path) -> None:
    good = _write(tmp_path, BASE, "good.yaml")
    bad = _write(tmp_path, BASE.replace("day: 4", "day: -4"), "bad.yaml")
    code, out = _check(good, bad)
    assert code == 1
    assert f"{good}: ok" in out and f"{bad}:" in out
