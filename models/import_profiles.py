"""Import profiles: how a practice-management system's export maps to the engine's fields.

A profile is a small YAML file in ``config/imports/`` (see README, "Import profiles"). It names
the layout's columns that identify it (``detect``), which column gives each engine field (with a
pattern to cut an id out of a longer value, a sign to flip, or a table of values), how a
"Last, First" name is split, which columns are money and how a balance is checked, the date
formats, and every column it deliberately ignores, with the reason. A layout that gives a family's
balance and its aging instead of visit lines (``balance_forward``) is imported as one line per
account, dated by the age of its oldest money.

:func:`convert` turns a :class:`~models.import_files.SourceTable` into the engine's own records
(the fields of :class:`~models.imports.BalanceRow`), each with the line of the file it came from;
every problem is a row error naming the row, the file's column and what was expected.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.import_files import CellError, SourceTable
from models.money import dollars_text, parse_cents

PROFILE_DIR = Path(__file__).resolve().parent.parent / "config" / "imports"
ENGINE_PROFILE = "engine"
BALANCE_FORWARD_PREFIX = "BF-"
"""The charge reference of a balance-forward line: ``BF-<as-of date>``."""
_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_AMOUNT_TEXT = re.compile(r"^\(?-?\$?\s*\d[\d,]*\.\d{2}\)?$")
_MONEY_FIELDS = ("charges", "insurance_paid", "insurance_adjustment", "patient_paid")


class ProfileError(ValueError):
    """A profile that cannot be used: its file, and what is wrong with it."""


class ColumnRule(BaseModel):
    """Where an engine field's value comes from."""

    model_config = ConfigDict(extra="forbid")

    column: str
    pattern: str | None = None
    """A regular expression with one group: the part of the value used (an id in an invoice)."""
    prefix: str = ""
    """Put in front of the value (``OE-``), so that ids of two systems never meet."""
    negate: bool = False
    """The file writes the amount with the opposite sign (OpenEMR's adjustments are negative)."""
    values: dict[str, str] = Field(default_factory=dict)
    """The file's codes and what they mean to the engine (Open Dental's TxtMsgOk 1 = yes)."""
    optional: bool = False
    """The column may be absent from the file (an option of the report)."""


class NameRule(BaseModel):
    """A person's name in one column."""

    model_config = ConfigDict(extra="forbid")

    column: str
    order: Literal["last_first", "first_last"] = "last_first"


class AgingBucket(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str
    days: int = Field(ge=0)
    """The age of this bucket's money, in days: the bucket's first day (0, 31, 61, 91)."""


class BalanceForward(BaseModel):
    """A balance and its aging instead of visit lines: one balance-forward line per account."""

    model_config = ConfigDict(extra="forbid")

    balance: str
    """The column of what the patient owes."""
    minus: list[str] = Field(default_factory=list)
    """Columns taken off the balance column (an insurance estimate still to come)."""
    buckets: list[AgingBucket] = Field(min_length=1)
    total: str | None = None
    """A column that must equal the sum of the buckets (the report's own check)."""
    description: str = "Balance forward"


class ImportProfile(BaseModel):
    """One source layout (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_ID)
    title: str
    source: str = ""
    """Where the layout is defined (the system's own code), for the next reader."""
    detect: list[str] = Field(default_factory=list)
    """Columns that, all present, identify the layout (compared without case or punctuation)."""
    aliases: bool = False
    """Read the engine's own columns and their common aliases (``models/imports.py``)."""
    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    name_column: NameRule | None = None
    account_from_name: str | None = None
    """When the file has no account column: the account is this prefix and the name's letters."""
    constants: dict[str, str] = Field(default_factory=dict)
    check_balance: str | None = None
    """A column that must equal charges - adjustments - payments on every line."""
    balance_forward: BalanceForward | None = None
    date_formats: list[str] = Field(default_factory=lambda: ["%Y-%m-%d", "%m/%d/%Y"])
    ignore: dict[str, str] = Field(default_factory=dict)
    """Columns deliberately not read, and why (shown by ``--dry-run``)."""

    @field_validator("columns", mode="before")
    @classmethod
    def _short_form(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: {"column": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    def used_columns(self) -> set[str]:
        used = {r.column for r in self.columns.values()}
        if self.name_column:
            used.add(self.name_column.column)
        if self.check_balance:
            used.add(self.check_balance)
        if bf := self.balance_forward:
            used |= {bf.balance, *bf.minus, *(b.column for b in bf.buckets)}
            if bf.total:
                used.add(bf.total)
        return used


def norm(name: str) -> str:
    """Column names compared without case, spaces or punctuation: ``"> 90 Days"`` -> ``90days``."""
    return "".join(re.findall(r"[a-z0-9]+", name.lower()))


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name: str) -> ImportProfile:
    """A shipped profile by name.

    Raises:
        ProfileError: no such profile, or the file is not a valid profile.
    """
    if not re.fullmatch(_ID, name):
        raise ProfileError(
            f"--profile: expected a profile name such as {', '.join(profile_names())}"
        )
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(
            f"--profile: no profile {name!r}; the profiles are {', '.join(profile_names())}"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return ImportProfile.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ProfileError(f"{path.name}: not a valid import profile: {exc}") from exc


def detect_profile(header: list[str]) -> ImportProfile:
    """The profile whose ``detect`` columns the header has (the most specific wins).

    The engine's own layout is the fallback: its columns and aliases are read by name.
    """
    present = {norm(h) for h in header}
    best: ImportProfile | None = None
    for name in profile_names():
        profile = load_profile(name)
        matches = bool(profile.detect) and all(norm(c) in present for c in profile.detect)
        if matches and (best is None or len(profile.detect) > len(best.detect)):
            best = profile
    return best or load_profile(ENGINE_PROFILE)


@dataclass
class Converted:
    """The engine's records made from a source file, and what was read and what was not."""

    profile: ImportProfile
    header: list[str]
    records: list[tuple[int, dict[str, str]]]
    mapped: dict[str, str] = field(default_factory=dict)
    """Engine field -> the file's column it came from."""
    ignored: dict[str, str] = field(default_factory=dict)
    """The file's column -> why it is not read."""
    skipped: int = 0
    """Rows with nothing owed (a family member's row in a patient export)."""
    errors: list[CellError] = field(default_factory=list)
    bad_row_accounts: dict[int, str] = field(default_factory=dict)
    """The account of each row refused before conversion, so that its account goes with it."""
    source_header: list[str] = field(default_factory=list)
    source_records: dict[int, dict[str, str]] = field(default_factory=dict)
    """The file's own rows by line: what a rejects file repeats."""
    encoding: str = "utf-8"
    delimiter: str = "comma"


def convert(table: SourceTable, profile: ImportProfile, as_of: dt.date) -> Converted:
    """The engine's records from a source table under a profile (see the module docstring)."""
    by_norm = {norm(h): h for h in table.header}
    out = Converted(profile, [], [], errors=list(table.errors))
    if profile.aliases:
        return _engine_layout(table, out)

    def column(name: str, optional: bool = False) -> str | None:
        found = by_norm.get(norm(name))
        if found is None and not optional:
            out.errors.append(CellError(1, name, f"missing column (the {profile.title} has it)"))
        return found

    rules = {f: (r, column(r.column, r.optional)) for f, r in profile.columns.items()}
    name_col = column(profile.name_column.column) if profile.name_column else None
    check_col = column(profile.check_balance) if profile.check_balance else None
    bf = profile.balance_forward
    bf_cols: dict[str, str | None] = {}
    if bf:
        for c in [bf.balance, *bf.minus, *(b.column for b in bf.buckets)]:
            bf_cols[c] = column(c)
        if bf.total:
            bf_cols[bf.total] = column(bf.total)
    ignored = {by_norm[norm(c)]: why for c, why in profile.ignore.items() if norm(c) in by_norm}
    used = {by_norm[norm(c)] for c in profile.used_columns() if norm(c) in by_norm}
    for h in table.header:
        if h in used or h in ignored:
            continue
        values = [r[h].strip() for _, r in table.records if r[h].strip()]
        if values and all(_AMOUNT_TEXT.match(v) for v in values):
            out.errors.append(
                CellError(
                    1,
                    h,
                    "holds amounts but the profile neither reads nor ignores it: add it to the"
                    f" profile {profile.name!r} (columns or ignore)",
                )
            )
        else:
            ignored[h] = "not used by the engine"
    for c in table.dropped_columns:
        ignored[c] = "empty"
    out.ignored = ignored
    if any(e.row == 1 for e in out.errors):
        return out
    out.mapped = {f: c for f, (_, c) in rules.items() if c}
    if name_col:
        out.mapped["first_name"] = out.mapped["last_name"] = name_col
    if bf:
        money = [bf_cols[bf.balance], *(bf_cols[m] for m in bf.minus)]
        out.mapped["charges"] = " - ".join(c for c in money if c)
        ages = [bf_cols[b.column] for b in bf.buckets]
        out.mapped["service_date"] = "age from " + ", ".join(c for c in ages if c)
    if profile.account_from_name and "account_number" not in out.mapped and name_col:
        out.mapped["account_number"] = f"{name_col} (no account column: made from the name)"
    out.mapped.setdefault("guarantor_id", out.mapped.get("account_number", ""))
    bad_rows = {e.row for e in out.errors}
    seen: dict[str, int] = {}
    fields: list[str] = []
    for line, record in table.records:
        row, errors = _convert_row(line, record, profile, rules, name_col, check_col, bf_cols)
        if line in bad_rows:
            # Refused already (a control character): its account is refused with it.
            out.bad_row_accounts[line] = row.get("account_number", "")
            continue
        if errors:
            out.errors.extend(errors)
            continue
        if profile.account_from_name and not row.get("account_number"):
            row["account_number"] = profile.account_from_name + norm(
                f"{row.get('last_name', '')}-{row.get('first_name', '')}"
            )
        row.setdefault("guarantor_id", row.get("account_number", ""))
        if bf:
            made = _balance_forward(line, record, bf, bf_cols, as_of, out.errors)
            if made is None:
                continue
            if not made:
                out.skipped += 1
                continue
            first = seen.setdefault(row.get("account_number", ""), line)
            if first != line:
                out.errors.append(
                    CellError(
                        line,
                        out.mapped.get("account_number", "account"),
                        f"the same account as row {first}: a balance file has each account once"
                        + (
                            " (two guarantors of one name need the file's account column)"
                            if profile.account_from_name
                            else ""
                        ),
                    )
                )
                continue
            row.update(made)
        for name, value in profile.constants.items():
            row.setdefault(name, value)
        for name in row:
            if name not in fields:
                fields.append(name)
        out.records.append((line, row))
    out.header = fields
    for _, row in out.records:
        for name in fields:
            row.setdefault(name, "")
    return out


def _engine_layout(table: SourceTable, out: Converted) -> Converted:
    from models.imports import BalanceRow, map_columns  # the engine's own aliases

    mapping = map_columns(table.header, BalanceRow)
    out.mapped = mapping
    used = set(mapping.values())
    for h in table.header:
        if h not in used:
            values = [r[h].strip() for _, r in table.records if r[h].strip()]
            if values and all(_AMOUNT_TEXT.match(v) for v in values):
                out.errors.append(
                    CellError(
                        1,
                        h,
                        "holds amounts but is not one of the engine's columns: rename it"
                        " (charges, insurance_paid, insurance_adjustment, patient_paid) or"
                        " remove it",
                    )
                )
            else:
                out.ignored[h] = "not one of the engine's columns"
    for c in table.dropped_columns:
        out.ignored[c] = "empty"
    out.header = list(mapping)
    out.records = [(line, {f: r[c] for f, c in mapping.items()}) for line, r in table.records]
    return out


def _convert_row(
    line: int,
    record: dict[str, str],
    profile: ImportProfile,
    rules: dict[str, tuple[ColumnRule, str | None]],
    name_col: str | None,
    check_col: str | None,
    bf_cols: dict[str, str | None],
) -> tuple[dict[str, str], list[CellError]]:
    row: dict[str, str] = {}
    errors: list[CellError] = []
    for name, (rule, col) in rules.items():
        if col is None:
            continue
        value = record[col].strip()
        if rule.pattern and value:
            m = re.search(rule.pattern, value)
            if not m:
                errors.append(CellError(line, col, f"expected a value matching {rule.pattern}"))
                continue
            value = m.group(1)
        if rule.values and value in rule.values:
            value = rule.values[value]
        if name in _MONEY_FIELDS or rule.negate:
            cents = _money(value)
            if cents is None:
                errors.append(CellError(line, col, "expected an amount such as 10.00"))
                continue
            value = dollars_text(-cents if rule.negate else cents)
        elif name.endswith(("_date", "_dob")) and value:
            parsed = _date(value, profile.date_formats)
            if parsed is None:
                errors.append(
                    CellError(line, col, f"expected a date ({', '.join(profile.date_formats)})")
                )
                continue
            value = parsed.isoformat()
        if value and rule.prefix:
            value = rule.prefix + value
        row[name] = value
    if name_col:
        split = _split_name(
            record[name_col], profile.name_column.order if profile.name_column else "last_first"
        )
        if split is None:
            errors.append(CellError(line, name_col, "expected a name such as 'Last, First'"))
        else:
            row["first_name"], row["last_name"] = split
    if check_col and not errors:
        stated = _money(record[check_col].strip())
        owed = sum(_money(row.get(f, "0")) or 0 for f in ("charges",)) - sum(
            _money(row.get(f, "0")) or 0 for f in _MONEY_FIELDS[1:]
        )
        if stated is None:
            errors.append(CellError(line, check_col, "expected an amount such as 10.00"))
        elif stated != owed:
            errors.append(
                CellError(
                    line,
                    check_col,
                    f"expected {dollars_text(owed)} (charges less adjustments and payments),"
                    f" the file says {dollars_text(stated)}",
                )
            )
    return row, errors


def _balance_forward(
    line: int,
    record: dict[str, str],
    bf: BalanceForward,
    cols: dict[str, str | None],
    as_of: dt.date,
    errors: list[CellError],
) -> dict[str, str] | None:
    """The balance-forward line's fields; empty when nothing is owed; None after an error."""
    amounts: dict[str, int] = {}
    for name, col in cols.items():
        if col is None:
            continue
        cents = _money(record[col].strip())
        if cents is None:
            errors.append(CellError(line, col, "expected an amount such as 10.00"))
            return None
        amounts[name] = cents
    bucket_sum = sum(amounts[b.column] for b in bf.buckets)
    if bf.total and amounts[bf.total] != bucket_sum:
        errors.append(
            CellError(
                line,
                cols[bf.total] or bf.total,
                f"expected {dollars_text(bucket_sum)}, the sum of the aging columns;"
                f" the file says {dollars_text(amounts[bf.total])}",
            )
        )
        return None
    owed = amounts[bf.balance] - sum(amounts[c] for c in bf.minus)
    if owed <= 0:
        return {}
    oldest = [b.days for b in bf.buckets if amounts[b.column] > 0]
    age = max(oldest, default=0)
    return {
        "charges": dollars_text(owed),
        "service_date": (as_of - dt.timedelta(days=age)).isoformat(),
        "charge_ref": f"{BALANCE_FORWARD_PREFIX}{as_of:%Y%m%d}",
        "description": bf.description,
    }


def _money(value: str) -> int | None:
    text = value.strip()
    if not text:
        return 0
    negative = text.startswith("(") and text.endswith(")")
    try:
        cents = parse_cents(text.strip("()"))
    except ValueError:
        return None
    return -cents if negative else cents


def _date(value: str, formats: list[str]) -> dt.date | None:
    for fmt in formats:
        try:
            return dt.datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    return None


def _split_name(value: str, order: str) -> tuple[str, str] | None:
    """(first, last) from ``"Doe, Jane A"``, ``"Doe, 'JJ' Jane"`` or ``"Jane Doe"``."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", " ", value).strip()
    if order == "last_first" and "," in text:
        last, rest = (p.strip() for p in text.split(",", 1))
        first = rest.split()[0] if rest.split() else ""
    else:
        parts = text.split()
        if len(parts) < 2:
            return None
        first, last = parts[0], parts[-1]
    if not first or not last:
        return None
    return first, last


def prepare(
    source: Path | bytes | str,
    kind: str = "balances",
    profile_name: str | None = None,
    as_of: dt.date | None = None,
) -> Converted:
    """Read a file and turn it into the engine's records: ``--profile`` or the detected layout.

    Payments are read in the engine's own layout. Raises nothing for a bad file: its problems
    are the result's errors.

    Raises:
        ProfileError: ``profile_name`` is not a usable profile.
    """
    from models.import_files import read_table

    table = read_table(source)
    if kind != "balances":
        out = Converted(load_profile(ENGINE_PROFILE), table.header, table.records)
        out.errors = list(table.errors)
        out.source_header = table.header
        out.source_records = dict(table.records)
        out.encoding, out.delimiter = table.encoding, table.delimiter_name
        return out
    profile = load_profile(profile_name) if profile_name else detect_profile(table.header)
    out = convert(table, profile, as_of or dt.date.today())
    out.source_header = table.header
    out.source_records = dict(table.records)
    out.encoding, out.delimiter = table.encoding, table.delimiter_name
    return out
