"""``dunning experiment check``: a good file passes; a bad one is refused naming file, line and
field, and an arm's policy that is not in the policy folders is named too."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import invoke

SAMPLE = Path(__file__).parent.parent / "config" / "experiments" / "text-first.yaml"


def test_the_shipped_sample_experiment_passes() -> None:
    result = invoke("experiment", "check", str(SAMPLE))
    assert result.exit_code == 0, result.output
    assert "text-first-2027: champion=physician 90%, text-first=physician-text-first 10%" in (
        result.output
    )


def test_a_bad_file_is_refused_naming_line_and_field(tmp_path: Path) -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        text.replace("policy: physician-text-first", "policy: no-such-policy").replace(
            "primary_metric: collected_90d", "primary_metric: happiness"
        ),
        encoding="utf-8",
    )
    result = invoke("experiment", "check", str(bad))
    assert result.exit_code == 2
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), start=1) if "happiness" in t)
    assert f"{bad}:{line}: primary_metric: got 'happiness'" in result.output
    # Fields first: the policies are looked up once the file is valid.
    bad.write_text(text.replace("policy: physician-text-first", "policy: no-such-policy"))
    again = invoke("experiment", "check", str(bad))
    assert again.exit_code == 2
    assert "challengers.0.policy: no policy 'no-such-policy' in the policy folders" in again.output


def test_a_file_not_in_utf8_is_refused_by_both_checks_without_a_traceback(tmp_path: Path) -> None:
    """A spreadsheet's Windows-1252 ("Renée"): the file named, and the check's failing exit."""
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: Ren\u00e9e\n".encode("cp1252"))
    for command, failed in (("experiment", 2), ("policy", 1)):  # policy check: 1, as a linter
        result = invoke(command, "check", str(latin))
        assert result.exit_code == failed, result.output
        assert f"{latin}: (file): not UTF-8 text (byte 9): save it as UTF-8" in result.output
        assert "Traceback" not in result.output
