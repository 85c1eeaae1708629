"""``dunning policy``: the billing lead's tools for escalation policy files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import console, err_console
from config.loader import PolicyFileError, load_policy

app = typer.Typer(help="Check and preview escalation policies.", no_args_is_help=True)


@app.command()
def check(files: Annotated[list[Path], typer.Argument(help="policy files (YAML)")]) -> None:
    """Validate policy files; exit non-zero naming the file, line and field of every error."""
    failed = False
    for file in files:
        try:
            bundle = load_policy(file)
        except PolicyFileError as exc:
            failed = True
            for error in exc.errors:
                err_console.print(str(error), highlight=False)
            continue
        console.print(f"{file}: ok ({bundle.policy.name}, {len(bundle.policy.steps)} steps, "
                      f"version {bundle.hash[:12]})", highlight=False)
    if failed:
        raise typer.Exit(1)
