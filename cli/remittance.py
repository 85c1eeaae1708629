"""``dunning import remittance FILE.835``: post a payer's X12 835 remittance (thin adapter over
``services.remittance``: parse the options, call, render)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import EXIT_INVALID, console, current_actor, fail, with_services
from config.roles import Permission
from models.money import format_cents
from models.remittance import RemittanceFileError
from services.context import Services
from services.remittance import (
    ClaimPatternError,
    ClaimPosting,
    RemittanceReport,
    import_remittance,
)


def register(import_app: typer.Typer) -> None:
    """Add ``remittance`` to ``dunning import``."""
    import_app.command("remittance")(remittance)


def remittance(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="match and show every claim, write nothing")
    ] = False,
    claim_pattern: Annotated[
        str | None,
        typer.Option(
            help="regular expression taking the practice's reference out of the patient control"
            " number (CLP01), in a group named ref, e.g. '^(?P<ref>[^-]+)-'"
        ),
    ] = None,
) -> None:
    """Post an X12 835 remittance: payer payments, contractual adjustments, patient share."""
    actor = current_actor(Permission.INTAKE)

    async def go(svc: Services) -> RemittanceReport:
        try:
            return await import_remittance(
                svc, actor, file, dry_run=dry_run, claim_pattern=claim_pattern
            )
        except RemittanceFileError as exc:
            fail(f"{file}: nothing posted.\n" + "\n".join(exc.problems), EXIT_INVALID)
        except ClaimPatternError as exc:
            fail(str(exc), EXIT_INVALID)

    report = with_services(go, temporal=not dry_run)
    _render(report, dry_run)


def _money(cents: int) -> str:
    return format_cents(cents)


def _line(posting: ClaimPosting) -> str:
    claim = posting.claim
    parts = [f"payer paid {_money(claim.paid_cents)}"]
    if posting.written_off_cents:
        groups = ", ".join(
            f"{a.group.value}-{a.reason} {_money(a.cents)}"
            for a in claim.adjustments
            if a.group.value != "PR"
        )
        parts.append(f"written off {_money(posting.written_off_cents)} ({groups})")
    reasons = posting.patient_reasons
    if reasons:
        why = ", ".join(f"{r.label} {_money(r.cents)}" for r in reasons)
        parts.append(f"patient owes {_money(claim.patient_responsibility_cents)} ({why})")
    elif claim.patient_responsibility_cents:
        parts.append(f"patient owes {_money(claim.patient_responsibility_cents)}")
    parts.append(f"balance {_signed(posting.balance_change_cents)}")
    reversal = " reversal" if claim.reversal else ""
    return f"  claim {claim.claim_ref}{reversal} -> {posting.account_number}: " + "; ".join(parts)


def _signed(cents: int) -> str:
    return ("+" if cents > 0 else "-" if cents < 0 else "") + _money(abs(cents))


def _render(report: RemittanceReport, dry_run: bool) -> None:
    verb = "would post" if dry_run else "posted"
    claims = report.claims
    console.print(
        f"{report.payments} payment(s), {len(claims)} claim(s): {len(report.matched)} matched,"
        f" {len(report.unmatched)} unmatched, {report.already_posted} posted before",
        highlight=False,
    )
    for posting in report.matched:
        mark = " (posted before: unchanged)" if posting.already_posted else ""
        console.print(_line(posting) + mark, highlight=False, markup=False)
    if report.unmatched:
        console.print("unmatched claims (nothing posted for them):", highlight=False)
        for posting in report.unmatched:
            claim = posting.claim
            console.print(
                f"  claim {claim.claim_ref} (trace {claim.trace_number}, segment {claim.segment}):"
                f" payer paid {_money(claim.paid_cents)}, patient owes"
                f" {_money(claim.patient_responsibility_cents)}: {posting.unmatched}",
                highlight=False,
                markup=False,
            )
    count = len([c for c in report.matched if not c.already_posted])
    console.print(
        f"{verb} {count} claim(s): payer paid {_money(report.total('paid_cents'))}, written off"
        f" {_money(report.total('written_off_cents'))}, balances"
        f" {_signed(report.total('balance_change_cents'))}",
        highlight=False,
    )
    if report.queued:
        console.print(
            f"{report.queued} account(s) queued: Temporal did not answer; the worker delivers"
            " their messages when it is back",
            highlight=False,
        )
