"""The import's progress bar shows its rate (rows per second) next to the time left."""

from __future__ import annotations

from rich.progress import Progress

from cli.imports import RateColumn


def test_rate_column_shows_rows_per_second() -> None:
    clock = [0.0]
    progress = Progress(RateColumn(), get_time=lambda: clock[0], auto_refresh=False)
    task_id = progress.add_task("balances", total=10_000)
    column = RateColumn()
    assert column.render(progress.tasks[0]).plain == ""  # nothing measured yet
    for _ in range(4):
        clock[0] += 2.0
        progress.advance(task_id, 500)
    assert column.render(progress.tasks[0]).plain == "250 rows/s"
