"""The suite's own rules, checked on its source (docs/contributing.md, "Reviewing a test").

- Every time-skipping scenario states its calendar: it moves the server's clock to a fixed instant
  (``advance_to``) or goes through the ``staff_case`` fixture or the scenario's ``case(...)``
  (tests/support/scenario.py), which do.
- Every wait on a process has a deadline: reads and ``communicate`` go through tests/support/waits.
- No fixed UTC offsets stand in for a patient's zone: hours are checked with ``zoneinfo``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
TEST_FILES = sorted(TESTS.glob("test_*.py"))
SUPPORT_WAITS = TESTS / "support" / "waits.py"


def _is_timeskipping(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
        and "timeskipping" in ast.unparse(node.value)
        for node in tree.body
    )


def _scenarios_without_a_calendar(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if not _is_timeskipping(tree):
        return []
    missing = []
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef) and node.name.startswith("test_"):
            fixtures = {a.arg for a in node.args.args}
            body = ast.unparse(node)
            if "staff_case" not in fixtures and not re.search(r"\badvance_to\(|\bcase\(", body):
                missing.append(f"{path.name}::{node.name}")
    return missing


def test_every_time_skipping_scenario_states_its_calendar() -> None:
    scenario_files = [p for p in TEST_FILES if _is_timeskipping(ast.parse(p.read_text()))]
    assert scenario_files, "no time-skipping test file found: the rule checks nothing"
    missing = [m for p in TEST_FILES for m in _scenarios_without_a_calendar(p)]
    assert missing == []


def test_the_calendar_rule_catches_a_scenario_on_todays_date(tmp_path: Path) -> None:
    bad = tmp_path / "test_bad.py"
    bad.write_text(
        "import pytest\npytestmark = pytest.mark.timeskipping\n"
        "async def test_x(ts_env):\n    start = await ts_env.get_current_time()\n",
        encoding="utf-8",
    )
    assert _scenarios_without_a_calendar(bad) == ["test_bad.py::test_x"]


UNBOUNDED = re.compile(r"\.readline\(\)|\.communicate\(\)|while not \w+\.started")
FIXED_OFFSET = re.compile(r"timezone\(\s*(dt\.)?timedelta\(\s*hours=")


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_no_unbounded_wait_and_no_fixed_utc_offset(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert not UNBOUNDED.search(source), "wait through tests/support/waits.py, with a deadline"
    assert not FIXED_OFFSET.search(source), "use zoneinfo in the patient's zone"
