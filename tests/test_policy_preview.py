"""``dunning policy preview``: the timeline the workflow would follow, with rendered messages."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from typer.testing import CliRunner

from cli.main import app
from config.settings import POLICY_DIR

runner = CliRunner()
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def _preview(*args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["policy", "preview", *args, "--json"])
    assert result.exit_code == 0, result.output
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data


def _by_step(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["step"]: e for e in entries if e["step"]}


def test_json_has_one_object_per_step_with_the_promised_fields() -> None:
    entries = _preview(
        str(POLICY_DIR / "physician.yaml"),
        "--balance",
        "120.00",
        "--first-statement",
        "2026-11-02",
        "--tz",
        "America/Los_Angeles",
    )
    assert [e["step"] for e in entries] == [
        "statement-1",
        "notice-1",
        "reminder-1",
        "statement-2",
        "call-1",
        "statement-3",
        "final-notice",
        "agency-referral",
    ]
    for e in entries:
        assert {"date", "local_time", "channel", "template", "message", "reasons"} <= e.keys()
        local = dt.datetime.fromisoformat(e["local_time"])
        # ISO 8601 with the patient's own UTC offset on that date (PST, or PDT after 14 March 2027).
        assert local.utcoffset() == local.astimezone(LOS_ANGELES).utcoffset(), e
        assert e["date"] == local.date().isoformat()
        assert 8 <= local.hour < 21
        assert e["outcome"] == "sent"
    by = _by_step(entries)
    statement = by["statement-1"]
    assert statement["channel"] == "letter" and statement["template"] == "statement"
    assert "Amount due: $120.00" in statement["message"]
    # 10:00 in New York is 07:00 in Los Angeles: the first statement waits for 08:00 there.
    assert statement["local_time"] == "2026-11-02T08:00-08:00"
    assert statement["reasons"] == ["quiet hours (before allowed hours)"]
    assert by["notice-1"]["subject"] == "Your statement from Riverside Family Medicine is ready"
    assert "needs approval by supervisor" in by["agency-referral"]["reasons"][0]


def test_holidays_and_weekends_visibly_move_steps() -> None:
    # First statement on Sunday 22 November 2026: day 4 is Thanksgiving (a practice holiday).
    entries = _preview(
        str(POLICY_DIR / "physician.yaml"),
        "--balance",
        "80",
        "--first-statement",
        "2026-11-22",
        "--tz",
        "America/New_York",
    )
    by = _by_step(entries)
    assert by["statement-1"]["date"] == "2026-11-23"
    assert by["statement-1"]["reasons"] == ["practice closed that weekday"]
    assert by["notice-1"]["date"] == "2026-11-27"
    assert by["notice-1"]["reasons"] == ["practice holiday"]
    weekend = by["reminder-1"]  # day 21: Sunday 13 December -> Monday
    assert weekend["date"] == "2026-12-14"
    assert weekend["reasons"] == ["practice closed that weekday"]


def test_text_output_names_the_rule_that_moved_a_step() -> None:
    result = runner.invoke(
        app,
        [
            "policy",
            "preview",
            str(POLICY_DIR / "physician.yaml"),
            "--balance",
            "80",
            "--first-statement",
            "2026-11-22",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "why: practice holiday" in result.output
    assert "| Amount due: $80.00" in result.output


def test_sms_carries_only_the_minimum_necessary() -> None:
    entries = _preview(
        str(POLICY_DIR / "physician.yaml"),
        "--balance",
        "120",
        "--first-statement",
        "2026-11-02",
        "--unreachable",
        "email",
    )
    notice = _by_step(entries)["notice-1"]
    assert notice["channel"] == "sms"
    assert "$" not in notice["message"] and "Office visit" not in notice["message"]
    assert "Riverside Family Medicine" in notice["message"] and "STOP" in notice["message"]
    # Without consent to texts the notice has no channel left and is skipped, saying why.
    entries = _preview(
        str(POLICY_DIR / "physician.yaml"),
        "--balance",
        "120",
        "--first-statement",
        "2026-11-02",
        "--unreachable",
        "email",
        "--no-sms-consent",
    )
    notice = _by_step(entries)["notice-1"]
    assert notice["outcome"] == "skipped" and notice["message"] is None
    assert "sms: no recorded consent" in notice["reasons"][0]


def test_hospital_follows_501r() -> None:
    entries = _preview(
        str(POLICY_DIR / "hospital-501r.yaml"),
        "--balance",
        "400",
        "--first-statement",
        "2026-11-02",
    )
    by = _by_step(entries)
    first = dt.datetime.fromisoformat(by["statement-1"]["local_time"])
    notice = dt.datetime.fromisoformat(by["final-notice"]["local_time"])
    eca = dt.datetime.fromisoformat(by["agency-referral"]["local_time"])
    assert by["agency-referral"]["outcome"] == "sent"
    assert eca - first >= dt.timedelta(days=120)
    assert eca - notice >= dt.timedelta(days=30)
    assert "FINAL NOTICE" in by["final-notice"]["message"]
    assert "free or discounted care" in by["final-notice"]["message"]
    assert by["oral-notice"]["channel"] == "call"
    assert notice < dt.datetime.fromisoformat(by["oral-notice"]["local_time"]) < eca


def test_hospital_in_spanish() -> None:
    entries = _preview(
        str(POLICY_DIR / "hospital-501r.yaml"),
        "--balance",
        "400",
        "--first-statement",
        "2026-11-02",
        "--language",
        "es",
    )
    by = _by_step(entries)
    assert "AVISO FINAL" in by["final-notice"]["message"]
    assert by["notice-1"]["subject"].startswith("Su estado de cuenta")


def test_dental_personalised_statement_returned_mail_and_small_balances() -> None:
    dental = str(POLICY_DIR / "dental.yaml")
    # A balance already five months old gets the personalised statement; returned mail means
    # no letter: statements go by email, a letter-only step waits for a corrected address (the
    # policy's on_no_channel: 30 days, then a staff task) instead of being skipped.
    entries = _preview(
        dental,
        "--balance",
        "120",
        "--first-statement",
        "2026-11-02",
        "--opened",
        "2026-06-01",
        "--unreachable",
        "letter",
    )
    by = _by_step(entries)
    assert by["statement-1"]["outcome"] == "skipped"
    assert "step only up to 90" in by["statement-1"]["reasons"][0]
    over = by["statement-1-over-90"]
    assert over["outcome"] == "sent" and over["channel"] == "email"
    assert "For balances over 90 days" in over["message"]
    assert all(e["channel"] != "letter" for e in entries)
    assert by["final-notice"]["outcome"] == "waiting"
    assert "waiting for a usable contact point" in by["final-notice"]["reasons"][0]
    assert "letter: returned" in by["final-notice"]["reasons"][0]
    # A new balance gets the usual statement, by letter.
    by = _by_step(_preview(dental, "--balance", "120", "--first-statement", "2026-11-02"))
    assert by["statement-1"]["channel"] == "letter"
    assert by["statement-1-over-90"]["outcome"] == "skipped"
    # Under $10: nothing sent, written off after 60 quiet days.
    entries = _preview(dental, "--balance", "8.00", "--first-statement", "2026-11-02")
    assert [e["outcome"] for e in entries] == ["written_off"]
    assert entries[0]["date"] == "2027-01-01"


def test_bad_input_is_named() -> None:
    result = runner.invoke(
        app,
        ["policy", "preview", str(POLICY_DIR / "physician.yaml"), "--balance", "ten"],
    )
    assert result.exit_code == 1
    assert "--balance" in result.output
    result = runner.invoke(
        app,
        ["policy", "preview", "physician", "--balance", "10", "--tz", "Mars/Olympus"],
    )
    assert result.exit_code == 1
    assert "unknown time zone" in result.output
