"""The closing notice after a cease-communication request (Reg F 1006.6(c)), on the policy side:
every shipped policy has its template in every language it declares, ``policy check`` refuses a
policy without it, and the letter says what the approver chose."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from activities.rendering import SAMPLE_RECIPIENT, context, render
from cli.main import app
from config.loader import load_policy, shipped_policies, template_key
from models.actions import ClosingPurpose
from models.policy import Channel, Tone

POLICY = """\
name: t
practice:
  name: Synthetic Clinic
  phone: (555) 010-9999
steps:
  - id: statement-1
    day: 0
    channels: [letter]
    template: statement
staff:
  closing_notice:
    template: farewell
"""


@pytest.mark.parametrize("path", shipped_policies(), ids=lambda p: p.stem)
def test_every_shipped_policy_has_the_closing_notice_letter_in_each_language(path: Path) -> None:
    bundle = load_policy(path)
    template = bundle.policy.staff.closing_notice.template
    for language in bundle.policy.languages:
        assert template_key(template, language, Channel.LETTER) in bundle.templates


def test_policy_check_fails_without_the_closing_notice_template(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    result = CliRunner().invoke(app, ["policy", "check", str(policy)])
    assert result.exit_code != 0
    assert f"{policy}:12: staff.closing_notice.template" in result.output
    assert "missing template farewell/en/letter.j2" in result.output

    # With the template beside it, in the one language declared, the same policy passes.
    folder = tmp_path / "templates" / "farewell" / "en"
    folder.mkdir(parents=True)
    (folder / "letter.j2").write_text(
        "{{ practice.name }}\nThis is our last letter about account {{ account.number }}.\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["policy", "check", str(policy)])
    assert result.exit_code == 0, result.output


def test_policy_check_fails_for_an_unknown_closing_notice_approver(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        POLICY.replace("template: farewell", "approvers: [closing-clerk]"), encoding="utf-8"
    )
    result = CliRunner().invoke(app, ["policy", "check", str(policy)])
    assert result.exit_code != 0
    assert "staff.closing_notice.approvers.0" in result.output
    assert "unknown role 'closing-clerk'" in result.output


@pytest.mark.parametrize(
    ("language", "purpose", "says"),
    [
        ("en", ClosingPurpose.TERMINATE, "are terminated"),
        ("en", ClosingPurpose.MAY_INVOKE_REMEDIES, "we may use the remedies we ordinarily use"),
        ("en", ClosingPurpose.INTENDS_REMEDY, "we intend to refer this account"),
        ("es", ClosingPurpose.TERMINATE, "Damos por terminadas"),
        ("es", ClosingPurpose.MAY_INVOKE_REMEDIES, "podemos usar los recursos"),
        ("es", ClosingPurpose.INTENDS_REMEDY, "tenemos la intención de remitir"),
    ],
)
def test_the_letter_says_the_purpose_the_approver_chose(
    language: str, purpose: ClosingPurpose, says: str
) -> None:
    bundle = load_policy("hospital-501r")
    variables = context(
        bundle.policy,
        Channel.LETTER,
        SAMPLE_RECIPIENT,
        12345,
        Tone.NEUTRAL,
        dt.date(2026, 11, 30),
        closing_purpose=purpose.value,
    )
    body = " ".join(
        render(bundle, "closing-notice", language, Channel.LETTER, variables).body.split()
    )
    assert says in body
    assert "$123.45" in body
    others = [p for p in ClosingPurpose if p is not purpose]
    assert all(
        says
        not in " ".join(
            render(
                bundle,
                "closing-notice",
                language,
                Channel.LETTER,
                {**variables, "closing_purpose": other.value},
            ).body.split()
        )
        for other in others
    )
