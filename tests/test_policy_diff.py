"""``dunning policy diff OLD NEW``: what a new version changes, in the file and for a balance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cli.main import app
from config.settings import POLICY_DIR

runner = CliRunner()
PHYSICIAN = POLICY_DIR / "physician.yaml"


def _new_version(tmp_path: Path) -> Path:
    """The physician policy with a later reminder, no call, and a firmer tone at day 60."""
    text = PHYSICIAN.read_text(encoding="utf-8")
    text = text.replace("  - id: reminder-1\n    day: 21", "  - id: reminder-1\n    day: 25")
    start = text.index("  - id: call-1")
    end = text.index("  - id: statement-3")
    text = text[:start] + text[end:]
    text = text.replace("min_spacing_hours: 48", "min_spacing_hours: 72")
    path = tmp_path / "physician-v2.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _diff(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["policy", "diff", *args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_diff_names_field_changes_and_timeline_changes(tmp_path: Path) -> None:
    new = _new_version(tmp_path)
    data = _diff(str(PHYSICIAN), str(new), "--balance", "120", "--first-statement", "2026-11-02")
    assert data["old"]["hash"] != data["new"]["hash"]
    changes = data["changes"]
    assert "steps.reminder-1.day: 21 -> 25" in changes
    assert "contact.min_spacing_hours: 48 -> 72" in changes
    assert any(c.startswith("steps: call-1 removed") for c in changes)
    assert "template call-script/en/call.j2: no longer used" in changes
    rows = {r["step"]: r for r in data["timeline"]}
    assert rows["call-1"]["change"] == "removed" and rows["call-1"]["new"] is None
    reminder = rows["reminder-1"]
    assert reminder["change"].startswith("changed:") and "local_time" in reminder["change"]
    assert reminder["old"]["date"] == "2026-11-23" and reminder["new"]["date"] == "2026-11-27"
    assert rows["statement-1"]["change"] == "unchanged"


def test_diff_of_the_same_version_says_so(tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    copy.write_text(PHYSICIAN.read_text(encoding="utf-8"), encoding="utf-8")
    result = runner.invoke(app, ["policy", "diff", str(PHYSICIAN), str(copy)])
    assert result.exit_code == 0, result.output
    assert "the same version" in result.output
    data = _diff(str(PHYSICIAN), str(copy))
    assert data["changes"] == []
    assert {r["change"] for r in data["timeline"]} == {"unchanged"}


def test_text_diff_and_a_template_change(tmp_path: Path) -> None:
    # A copy of the shipped templates with one SMS text changed: a new version, same steps.
    templates = tmp_path / "templates"
    for source in (POLICY_DIR.parent / "templates").rglob("*.j2"):
        target = templates / source.relative_to(POLICY_DIR.parent / "templates")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    sms = templates / "reminder" / "en" / "sms.j2"
    sms.write_text(sms.read_text().replace("a reminder", "a friendly reminder"), encoding="utf-8")
    policy = tmp_path / "physician.yaml"
    policy.write_text(PHYSICIAN.read_text(encoding="utf-8"), encoding="utf-8")
    result = runner.invoke(app, ["policy", "diff", str(PHYSICIAN), str(policy)])
    assert result.exit_code == 0, result.output
    assert "template reminder/en/sms.j2: text changed" in result.output
    assert "the same version" not in result.output


def test_diff_refuses_a_broken_new_version(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(PHYSICIAN.read_text().replace("day: 90", "day: -90"), encoding="utf-8")
    result = runner.invoke(app, ["policy", "diff", str(PHYSICIAN), str(broken)])
    assert result.exit_code == 1
    assert f"{broken}:" in result.output and "steps.6.day" in result.output
