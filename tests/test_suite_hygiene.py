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


def test_synthetic_guarantors_are_placed_by_their_zone_on_record_alone() -> None:
    """The factories' and the benches' number and ZIP code add no time zone.

    The allowed window is the intersection over every known location: a New York number in a
    real-time test whose patient lives at midday somewhere held every step for New York's
    morning whenever the suite ran at New York's night (02:00-13:00 UTC).
    """
    from bench.common import balance_rows
    from services.locations import patient_locations
    from tests.api_support import account_body, synthetic_phone
    from tests.factories import balance_row

    bench_row = balance_rows(1, Path("bench-instant.yaml"), "Etc/GMT")[0]
    api = account_body()["guarantor"]
    for phone, zip_code in [
        (balance_row()["phone"], balance_row()["postal_code"]),
        (bench_row["phone"], bench_row["postal_code"]),
        (api["phone"], api["postal_code"]),
        (synthetic_phone(), api["postal_code"]),
    ]:
        assert patient_locations(zip_code, phone) == [], (phone, zip_code)
    # and the check itself sees a place where there is one
    assert [loc.time_zone for loc in patient_locations("10001", "+13105550123")] == [
        "America/New_York",
        "America/Los_Angeles",
    ]


PHONE_LITERAL = re.compile(r"\+1[2-9]\d{9}")


def _real_time_functions(tree: ast.Module) -> list[ast.AsyncFunctionDef | ast.FunctionDef]:
    """The tests that run on the dev server: marked so, or taking its environment."""
    module_marked = any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
        and "devserver" in ast.unparse(node.value)
        for node in tree.body
    )
    return [
        node
        for node in tree.body
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef)
        and node.name.startswith("test_")
        and (
            module_marked
            or any("devserver" in ast.unparse(d) for d in node.decorator_list)
            or any(a.arg in {"dev_env", "api"} for a in node.args.args)
        )
    ]


def _placed_numbers(path: Path) -> list[str]:
    from services.locations import zones_of_phone

    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{node.name}: {number}"
        for node in _real_time_functions(tree)
        for number in PHONE_LITERAL.findall(ast.unparse(node))
        if zones_of_phone(number)
    ]


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_real_time_tests_give_no_geographic_number(path: Path) -> None:
    """A dev-server test runs at whatever hour CI does: a number with a place would tie it to
    that place's hours (``tests.factories.UNLOCATED_PHONE``). Numbers that are only parsed (the
    intake's normalisation) are written without the ``+1`` prefix or checked outside such tests."""
    if path.name == Path(__file__).name:
        return
    assert _placed_numbers(path) == [], "use tests.factories.UNLOCATED_PHONE or +1 500 555 ..."


def test_the_place_rule_catches_a_new_york_number_in_a_dev_server_test(tmp_path: Path) -> None:
    bad = tmp_path / "test_bad.py"
    bad.write_text(
        "import pytest\n@pytest.mark.devserver\n"
        "async def test_x(dev_env):\n    row = {'phone': '+12125550123'}\n",
        encoding="utf-8",
    )
    assert _placed_numbers(bad) == ["test_x: +12125550123"]
