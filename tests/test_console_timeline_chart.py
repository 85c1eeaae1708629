"""The policy preview's timeline chart, drawn on the server: one mark per step where its day
falls, shaped by what happens to the step (pure: no database, no browser)."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

from api.console.timeline_chart import LEFT, RIGHT, WIDTH, timeline_chart
from config.loader import load_policy
from services.policy import preview_entries
from services.policy_library import preview_options

SVG = "{http://www.w3.org/2000/svg}"


def test_each_step_is_a_mark_on_its_day_shaped_by_its_outcome() -> None:
    bundle = load_policy("dental")
    options = preview_options(bundle.policy, 12500, dt.date(2026, 11, 2), "America/Chicago")
    entries = preview_entries(bundle, options)
    svg = ET.fromstring(str(timeline_chart("Dental <preview> & more", entries)))
    assert svg.find(f"{SVG}title") is not None
    assert svg.findtext(f"{SVG}title") == "Dental <preview> & more"  # escaped, then read back
    marks = [e for e in svg.iter() if "mark" in (e.get("class") or "")]
    assert len(marks) == len(entries) == 7
    shapes = {e.step: m for e, m in zip(entries, marks, strict=True)}
    skipped = next(e for e in entries if e.outcome == "skipped")
    assert skipped.step == "statement-1-over-90"
    assert shapes["statement-1-over-90"].get("class") == "mark open"  # a hollow circle
    assert {m.get("class") for s, m in shapes.items() if s != skipped.step} == {"mark sent"}
    # The horizontal position is the day, on an axis to the next multiple of 30 days.
    span = 120  # the last step, agency-referral, on day 120
    inner = WIDTH - LEFT - RIGHT
    xs = [float(m.get("cx") or 0) for m in marks]
    assert xs == [round(LEFT + inner * e.day / span, 1) for e in entries]
    assert xs == sorted(xs)
    labels = [t.text for t in svg.iter(f"{SVG}text")]
    assert "day 120" in labels and "day 150" not in labels
    assert "day 91 · letter · sent" in labels


def test_a_write_off_and_a_waiting_step_have_their_own_marks() -> None:
    """A balance under the minimum is written off (a cross); a step waiting for a person is a
    diamond: told apart without colour."""
    bundle = load_policy("dental")
    options = preview_options(bundle.policy, 12500, dt.date(2026, 11, 2), "America/Chicago")
    entries = preview_entries(bundle, options)
    waiting = entries[0].model_copy(update={"outcome": "waiting", "step": "approval", "day": 10})
    gone = entries[0].model_copy(update={"outcome": "written_off", "step": None, "day": 20})
    chart = str(timeline_chart("t", [waiting, gone]))
    assert re.search(r'<polygon points="[^"]+" class="mark waiting"/>', chart)
    assert re.search(r'<path d="M[^"]+" class="mark cross"/>', chart)
    assert ">write-off</text>" in chart and "day 20 · letter · written off" in chart
