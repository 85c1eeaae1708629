"""The printed statement's layout file and wording, and the plain words of each visit.

A billing lead edits ``config/statement/layout.yaml`` (which blocks, in which order, where the
envelope windows are) and ``config/statement/<language>.yaml`` (every fixed word of the letter,
one file per language a policy declares); ``activities.letters`` lays the letter out from them.
The explanation of a visit (who paid what, why the rest is the patient's) is a pure function of
the ledger's remittance facts, so that a letter composed twice says the same thing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from activities.rendering import StatementLine, compile_template
from config.loader import PolicyBundle, PolicyError, field_line
from config.settings import PACKAGE_DIR
from models.money import format_cents
from models.policy import Channel, PhoneHours
from models.statement import ClaimStatus

STATEMENT_DIR = PACKAGE_DIR / "statement"
LAYOUT_FILE = STATEMENT_DIR / "layout.yaml"
BLOCKS = frozenset(
    {
        "summary",
        "message",
        "visits",
        "explanation",
        "aging",
        "ways_to_pay",
        "if_wrong",
        "financial_assistance",
    }
)
USPS_ENDORSEMENT_KEYS = frozenset({"return_service"})
"""Words for the post office, printed in English whatever the letter's language."""


class StatementConfigError(ValueError):
    """A layout or wording file that cannot be used; names the file and the field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Window(_Frozen):
    """An envelope window on the page, in inches from the page's left and top edges."""

    left: float = Field(ge=0, le=8.5)
    top: float = Field(ge=0, le=11)
    width: float = Field(gt=0, le=8.5)
    height: float = Field(gt=0, le=11)


class CouponWindow(_Frozen):
    """The return envelope's window, in inches from the coupon's bottom-left corner."""

    left: float = Field(ge=0, le=8.5)
    bottom: float = Field(ge=0, le=4)
    width: float = Field(gt=0, le=8.5)
    height: float = Field(gt=0, le=4)


class Envelopes(_Frozen):
    clearance: float = Field(default=0.125, ge=0, le=0.5)
    return_window: Window
    address_window: Window
    coupon_height: float = Field(ge=2.5, le=4.5)
    remit_window: CouponWindow

    def remit_on_page(self) -> Window:
        """The return envelope's window as a rectangle of page one (the coupon is its bottom)."""
        w = self.remit_window
        return Window(left=w.left, top=11 - w.bottom - w.height, width=w.width, height=w.height)


class LogoBox(_Frozen):
    width: float = Field(default=0.55, gt=0, le=2)
    height: float = Field(default=0.55, gt=0, le=1)


class Layout(_Frozen):
    blocks: list[str] = Field(min_length=1)
    logo: LogoBox = LogoBox()
    envelopes: Envelopes

    def model_post_init(self, _context: Any) -> None:
        unknown = [b for b in self.blocks if b not in BLOCKS]
        if unknown:
            raise ValueError(
                f"blocks: unknown {', '.join(unknown)}; known: {', '.join(sorted(BLOCKS))}"
            )


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StatementConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise StatementConfigError(f"{path}: not valid YAML: {exc}") from exc


@lru_cache(maxsize=4)
def load_layout(path: Path = LAYOUT_FILE) -> Layout:
    """The statement's layout file.

    Raises:
        StatementConfigError: naming the file and the field.
    """
    try:
        return Layout.model_validate(_read_yaml(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StatementConfigError(f"{path}: {where}: {first['msg']}") from None


@dataclass(frozen=True)
class Wording:
    """The fixed words of the letter in one language."""

    language: str
    texts: dict[str, Any]

    def __call__(self, key: str, **values: object) -> str:
        """One text, its ``{{ name }}`` filled in.

        Raises:
            StatementConfigError: the key is missing or its text does not render.
        """
        node: Any = self.texts
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise StatementConfigError(
                    f"{STATEMENT_DIR / (self.language + '.yaml')}: {key}: missing"
                )
            node = node[part]
        if not values:
            return str(node)
        try:
            return str(compile_template(str(node)).render(**values))
        except TemplateError as exc:
            raise StatementConfigError(
                f"{STATEMENT_DIR / (self.language + '.yaml')}: {key}: {exc}"
            ) from None

    def days(self) -> list[str]:
        return [str(d) for d in self.texts.get("days", [])]


def flat_keys(texts: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of a wording file by its dotted key."""
    out: dict[str, Any] = {}
    for key, value in texts.items():
        if isinstance(value, dict):
            out |= flat_keys(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


@lru_cache(maxsize=16)
def wording(language: str, directory: Path = STATEMENT_DIR) -> Wording:
    """The statement wording of ``language``, checked against English's keys.

    Raises:
        StatementConfigError: no file for the language, or keys missing from it.
    """
    path = directory / f"{language}.yaml"
    if not path.is_file():
        raise StatementConfigError(
            f"{path}: missing: the statement's fixed wording in {language!r}"
            f" (copy {directory / 'en.yaml'} and translate it)"
        )
    texts = _read_yaml(path)
    if not isinstance(texts, dict):
        raise StatementConfigError(f"{path}: expected a mapping of texts")
    if language != "en":
        missing = sorted(set(flat_keys(wording("en", directory).texts)) - set(flat_keys(texts)))
        if missing:
            raise StatementConfigError(f"{path}: {', '.join(missing)}: missing")
    return Wording(language, texts)


def _clock(t: dt.time, words: Wording) -> str:
    if str(words.texts.get("time_format", "24h")) == "12h":
        hour = t.hour % 12 or 12
        return f"{hour}:{t.minute:02d} {'am' if t.hour < 12 else 'pm'}"
    return f"{t.hour:02d}:{t.minute:02d}"


def hours_text(hours: PhoneHours | None, words: Wording) -> str:
    """When the phone is answered, in the letter's language ("Monday to Friday, 8:00 a.m. ...")."""
    hours = hours or PhoneHours()
    names = words.days()
    numbers = sorted(d.number for d in hours.days)
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        days = words("day_range", first=names[numbers[0]], last=names[numbers[-1]])
    else:
        days = str(words.texts.get("day_list_joiner", ", ")).join(names[n] for n in numbers)
    return words("hours", days=days, start=_clock(hours.start, words), end=_clock(hours.end, words))


def explain(line: StatementLine, currency: str, words: Wording) -> list[str]:
    """Who paid what for one visit and why the rest is the patient's, in plain words.

    Taken from the ledger's remittance facts only: what was charged, the insurer and what it paid
    or decided, what was adjusted or is protected (not owed), the patient's share by reason
    (deductible, co-insurance, copay, not covered), and what the patient paid and still owes.
    """

    def money(cents: int) -> str:
        return format_cents(cents, currency)

    said = [words("exp_charged", amount=money(line.charges_cents))]
    status = line.claim_status
    if line.payer:
        if line.insurance_paid_cents > 0:
            said.append(
                words("exp_insurer_paid", payer=line.payer, amount=money(line.insurance_paid_cents))
            )
        if status == ClaimStatus.DENIED:
            said.append(words("exp_insurer_denied", payer=line.payer))
        elif status == ClaimStatus.PENDING:
            said.append(words("exp_insurer_pending", payer=line.payer))
    elif line.insurance_paid_cents > 0:
        said.append(words("exp_insurance_paid", amount=money(line.insurance_paid_cents)))
    else:
        said.append(words("exp_no_insurance"))
    if line.insurance_adjustment_cents > 0:
        insured = bool(line.payer) or line.insurance_paid_cents > 0
        key = "exp_adjusted" if insured else "exp_discount"
        said.append(words(key, amount=money(line.insurance_adjustment_cents)))
    if line.nsa_protected_cents > 0:
        said.append(words("exp_protected", amount=money(line.nsa_protected_cents)))
    if line.good_faith_estimate_cents is not None:
        said.append(words("exp_estimate", amount=money(line.good_faith_estimate_cents)))
    for key, cents in (
        ("exp_deductible", line.deductible_cents),
        ("exp_coinsurance", line.coinsurance_cents),
        ("exp_copay", line.copay_cents),
        ("exp_not_covered", line.not_covered_cents),
    ):
        if cents > 0:
            said.append(words(key, amount=money(cents)))
    if line.patient_paid_cents > 0:
        said.append(words("exp_you_paid", amount=money(line.patient_paid_cents)))
    said.append(words("exp_you_owe", amount=money(max(line.balance_cents, 0))))
    return said


def claim_text(line: StatementLine, words: Wording) -> str:
    """The insurer column of the visits table: the payer and the claim's status."""
    if not line.payer:
        return words("unnamed_insurer" if line.insurance_paid_cents else "no_insurance")
    if line.claim_status in set(ClaimStatus):
        return f"{line.payer} ({words('claim_status.' + str(line.claim_status))})"
    return line.payer


def statement_problems(bundle: PolicyBundle) -> list[PolicyError]:
    """What keeps a policy's letters from printing: a declared language without the statement's
    wording, a logo file that is not there, a letter without a remit-to address."""
    policy = bundle.policy
    if not any(Channel.LETTER in step.channels for step in policy.steps):
        return []
    found: list[tuple[tuple[str | int, ...], str]] = []
    for i, language in enumerate(policy.languages):
        try:
            wording(language)
        except StatementConfigError as exc:
            found.append((("languages", i), str(exc)))
    if policy.practice.logo and logo_file(policy.practice.logo) is None:
        found.append(
            (("practice", "logo"), f"no image file at {policy.practice.logo} (or under config/)")
        )
    if not policy.practice.remit_to:
        found.append((("practice", "remit_to"), "letters need the address checks are mailed to"))
    return [
        PolicyError(bundle.source, field_line(bundle.source, loc), ".".join(map(str, loc)), text)
        for loc, text in found
    ]


def logo_file(logo: str) -> Path | None:
    """The letterhead's logo file: absolute, or relative to the ``config`` folder; None if none."""
    if not logo:
        return None
    path = Path(logo)
    if not path.is_absolute():
        path = PACKAGE_DIR / path
    return path if path.is_file() else None
