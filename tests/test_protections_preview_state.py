"""``dunning policy preview --state XX``: the preview for a patient living in state XX (issue 18).

Before: the preview had no state of residence; a Massachusetts patient's calls, a time-barred New
York debt and the rules that applied were invisible until the workflow ran. Now the preview
applies the state's rules through the same decision core and says which rules applied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cli.main import app
from config.settings import POLICY_DIR

runner = CliRunner()

CALLS = """
name: calls-three-days
practice: {name: Example Clinic, phone: (555) 010-0199, pay_url: https://pay.example.test}
contact:
  business_days: [mon, tue, wed, thu, fri, sat, sun]
  min_spacing_hours: 24
steps:
  - {id: statement-1, day: 0, channels: [letter], template: statement}
  - {id: call-1, day: 5, channels: [call], template: call-script, tone: neutral}
  - {id: call-2, day: 6, channels: [call], template: call-script, tone: neutral}
  - {id: call-3, day: 7, channels: [call], template: call-script, tone: neutral}
"""


def _preview(*args: str, as_json: bool = True) -> Any:
    result = runner.invoke(
        app, ["policy", "preview", *args, *(["--json"] if as_json else [])], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if as_json else result.stdout


def _by_step(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["step"]: e for e in entries if e["step"]}


def test_a_massachusetts_resident_gets_the_states_contact_cap(tmp_path: Path) -> None:
    policy = tmp_path / "calls.yaml"
    policy.write_text(CALLS, encoding="utf-8")
    args = (str(policy), "--balance", "300.00", "--first-statement", "2026-11-02")
    anywhere = _by_step(_preview(*args))
    assert anywhere["call-3"]["day"] == 7
    capped = _by_step(_preview(*args, "--state", "MA"))
    assert capped["call-3"]["outcome"] == "sent"
    assert capped["call-3"]["day"] >= 12  # the 2 calls of days 5 and 6 fill MA's 2 in 7 days
    assert any("MA cap of 2 calls, texts or voicemails" in r for r in capped["call-3"]["reasons"])
    text = _preview(*args, "--state", "ma", as_json=False)
    assert "state rules of MA (residence)" in text
    assert "at most 2 calls, texts or voicemails in 7 days" in text
    assert "940 CMR 7.04(1)(f)" in text


def test_a_2017_debt_of_a_new_york_resident_is_time_barred_in_the_preview() -> None:
    args = (
        str(POLICY_DIR / "physician.yaml"),
        "--balance",
        "300.00",
        "--first-statement",
        "2026-01-05",
        "--opened",
        "2017-03-01",
    )
    anywhere = _by_step(_preview(*args))
    assert anywhere["final-notice"]["outcome"] == "sent"
    barred = _by_step(_preview(*args, "--state", "NY"))
    for step in ("final-notice", "agency-referral"):
        assert barred[step]["outcome"] == "skipped"
        assert any("3-year statute of limitations (NY)" in r for r in barred[step]["reasons"])
    assert barred["statement-1"]["outcome"] == "sent"
    text = _preview(*args, "--state", "NY", as_json=False)
    assert "no credit reporting of medical debt" in text and "N.Y. CPLR 214-i" in text


def test_the_preview_says_which_rules_applied_and_refuses_a_bad_state() -> None:
    physician = str(POLICY_DIR / "physician.yaml")
    text = _preview(physician, "--balance", "100.00", "--state", "MN", as_json=False)
    assert "state rules of MN (residence)" in text
    assert "no wording that care will be refused or delayed for an unpaid balance" in text
    plain = _preview(physician, "--balance", "100.00", as_json=False)
    assert "no state named: federal rules only" in plain
    other = _preview(physician, "--balance", "100.00", "--state", "WY", as_json=False)
    assert "WY (residence): none in the table" in other
    bad = runner.invoke(app, ["policy", "preview", physician, "--balance", "1", "--state", "M1"])
    assert bad.exit_code != 0 and "--state: two letters" in bad.output
