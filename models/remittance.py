"""X12 835 remittance advice (ERA), read with ``pyx12``: what a payer paid and adjusted per claim.

The file is parsed and validated against the implementation guide's map by ``pyx12`` (4010 X091
and 5010 X221 are both known to it); this module only turns its loops into typed claims:

- a payment (loop header): its trace number (TRN02), the payer's id (TRN03, else the payer's
  N1*PR id), the payment date (BPR16) and total (BPR02);
- each claim (loop 2100, CLP): the patient control number (CLP01, the practice's own reference),
  its status (CLP02; 22 is a reversal), charge, payment and patient responsibility (CLP03-05),
  the payer's claim number (CLP07), the first date of service, and every adjustment (CAS) of
  the claim and of its service lines (loop 2110) by group (CO contractual, PR patient
  responsibility, OA other, PI payer initiated, CR correction) and reason code (CARC).

Amounts become integer cents here; nothing else of the file (names, member ids) is kept.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 50 * 1024 * 1024
"""An 835 of a large payer for a month is a few megabytes; anything this big is not one."""


class RemittanceFileError(ValueError):
    """The file is not a readable X12 835; ``problems`` says where and what, one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class AdjustmentGroup(StrEnum):
    """CAS01: who the adjusted amount belongs to."""

    CONTRACTUAL = "CO"  # the provider's contract with the payer: written off, not the patient's
    PATIENT = "PR"  # patient responsibility: deductible, co-insurance, co-pay, not covered
    OTHER = "OA"
    PAYER_INITIATED = "PI"
    CORRECTION = "CR"  # 4010 only: correction and reversal


CARC_LABELS: dict[str, str] = {
    "1": "deductible",
    "2": "co-insurance",
    "3": "co-payment",
    "4": "procedure code inconsistent with modifier",
    "16": "claim lacks information",
    "18": "duplicate claim",
    "23": "paid by a prior payer",
    "26": "expenses before coverage",
    "27": "expenses after coverage ended",
    "29": "filing time limit expired",
    "31": "patient not identified as insured",
    "45": "charge exceeds the fee schedule",
    "50": "not medically necessary",
    "66": "blood deductible",
    "96": "non-covered charge",
    "97": "included in another service's payment",
    "109": "not covered by this payer",
    "119": "benefit maximum reached",
    "142": "monthly benefit maximum",
    "187": "health savings account payment",
    "204": "not covered under the benefit plan",
    "242": "services not provided by network providers",
    "253": "sequestration",
    "A7": "presumptive payment adjustment",
}
"""Claim adjustment reason codes (X12 CARC) a statement can explain; others keep their code."""


CLAIM_STATUSES = frozenset({"1", "2", "3", "4", "19", "20", "21", "22", "23", "25"})
"""CLP02: processed as primary, secondary, tertiary; denied; ...; 22 reversal of a previous
payment."""


def reason_label(code: str) -> str:
    return CARC_LABELS.get(code, f"reason {code}")


@dataclass(frozen=True)
class ClaimAdjustment:
    group: AdjustmentGroup
    reason: str
    cents: int
    """Positive lowers the payer's payment; a reversal's adjustments are negative."""

    @property
    def label(self) -> str:
        return reason_label(self.reason)


@dataclass(frozen=True)
class RemittedClaim:
    """One CLP loop of one payment."""

    trace_number: str
    payer_id: str
    claim_ref: str
    """CLP01, the patient control number: the practice's own claim or account reference."""
    status: str
    charge_cents: int
    paid_cents: int
    patient_responsibility_cents: int
    payer_claim_id: str
    occurrence: int
    """1 for the first CLP with this reference, status and payer claim number in the payment."""
    segment: int
    """Segment number of the CLP in the file (1 is the ISA), for messages."""
    service_date: dt.date | None = None
    adjustments: tuple[ClaimAdjustment, ...] = ()

    @property
    def reversal(self) -> bool:
        return self.status == "22"

    def total(self, group: AdjustmentGroup) -> int:
        return sum(a.cents for a in self.adjustments if a.group is group)

    @property
    def key(self) -> str:
        """What makes this claim's posting unique: trace number, payer and claim."""
        return "|".join(
            (
                self.trace_number,
                self.payer_id,
                self.claim_ref,
                self.status,
                self.payer_claim_id,
                str(self.occurrence),
            )
        )


@dataclass
class Remittance:
    """Every claim of every payment (ST..SE) in the file, in file order."""

    claims: list[RemittedClaim] = field(default_factory=list)
    payments: list[tuple[str, str, int, dt.date | None]] = field(default_factory=list)
    """(trace number, payer id, total paid in cents, payment date) per payment."""


def cents(value: str | None, where: str) -> int:
    """An X12 decimal amount ("1234.5", "-310") as integer cents."""
    if value is None or value.strip() == "":
        return 0
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"{where}: {value!r} is not an amount") from None
    scaled = amount * 100
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{where}: {value!r} has more than two decimals")
    if abs(scaled) >= 2**63:
        raise ValueError(f"{where}: {value!r} is out of range")
    return int(scaled)


def _date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value.strip(), "%Y%m%d").date()
    except ValueError:
        return None


def read_835(path: Path) -> Remittance:
    """Parse and validate an 835 file.

    Raises:
        RemittanceFileError: not an X12 interchange, not an 835, or refused by the guide's map
            (each problem with its segment number).
    """
    try:
        size = path.stat().st_size
        raw = path.read_bytes() if size <= MAX_FILE_BYTES else b""
    except OSError as exc:
        raise RemittanceFileError([f"{path.name}: cannot be read ({exc.strerror})"]) from None
    if size > MAX_FILE_BYTES:
        raise RemittanceFileError([f"{path.name}: larger than {MAX_FILE_BYTES} bytes"])
    text = raw.decode("latin-1")  # X12's basic and extended character sets fit in it
    if "\x00" in text:
        raise RemittanceFileError([f"{path.name}: contains NUL bytes; not an X12 file"])
    if not text.lstrip().startswith("ISA"):
        raise RemittanceFileError([f"{path.name}: does not start with an ISA segment"])
    return _parse(text, path.name)


def _parse(text: str, name: str) -> Remittance:
    import pyx12.error_handler
    import pyx12.errors
    import pyx12.params
    import pyx12.x12context

    param = pyx12.params.params()
    errh = pyx12.error_handler.errh_null()
    result = Remittance()
    problems: list[str] = []
    try:
        reader = pyx12.x12context.X12ContextReader(param, errh, io.StringIO(text))
        with reader:
            found: list[str] = []
            _walk(reader, result, found)
            problems.extend(f"{name}: {problem}" for problem in found)
    except pyx12.errors.X12Error as exc:  # envelope problems (ISA, GS): no data of a claim
        problems.append(f"{name}: not a readable X12 file ({_safe(exc)})")
    except pyx12.errors.EngineError:  # its message quotes the segment: names, member ids
        problems.append(f"{name}: the segments do not follow the 835 implementation guide")
    except ValueError as exc:  # an amount or code of ours, with its segment number
        problems.append(f"{name}: {exc}")
    except (KeyError, IndexError, AttributeError, TypeError) as exc:
        problems.append(f"{name}: not a readable X12 file ({type(exc).__name__})")
    if not problems and not result.payments:
        problems.append(f"{name}: holds no 835 transaction (ST*835)")
    if problems:
        raise RemittanceFileError(problems)
    return result


def _safe(exc: BaseException) -> str:
    # pyx12's messages name segments and codes; cut them short so no data of a row travels far.
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def _walk(reader: Any, result: Remittance, problems: list[str]) -> None:
    trace = payer = ""
    paid_on: dt.date | None = None
    total = 0
    seen: dict[tuple[str, str, str], int] = {}
    in_835 = False
    ended = False
    for node in reader.iter_segments("2100"):
        seg_id = node.id
        ended = seg_id == "IEA"
        if seg_id == "ST":
            in_835 = node.get_value("ST01") == "835"
            if not in_835:
                problems.append(
                    f"segment {node.cur_line_number}: transaction set"
                    f" {node.get_value('ST01')!r} is not an 835 remittance"
                )
            trace, payer, paid_on, total = "", "", None, 0
            seen = {}
            continue
        if not in_835:
            continue
        if seg_id == "BPR":
            total = cents(node.get_value("BPR02"), "BPR02")
            paid_on = _date(node.get_value("BPR16"))
        elif seg_id == "TRN":
            trace = (node.get_value("TRN02") or "").strip()
            payer = (node.get_value("TRN03") or "").strip()
            if not trace:
                problems.append(
                    f"segment {node.cur_line_number} TRN02: the trace number is missing"
                )
        elif seg_id == "N1" and node.get_value("N101") == "PR" and not payer:
            payer = (node.get_value("N104") or node.get_value("N102") or "").strip()
        elif seg_id == "2100":
            if not trace:
                problems.append(f"segment {node.cur_line_number}: claim before any TRN trace")
                continue
            if not result.payments or result.payments[-1][:2] != (trace, payer):
                result.payments.append((trace, payer, total, paid_on))
            result.claims.append(_claim(node, trace, payer, seen))
        elif (
            seg_id == "SE"
            and trace
            and (not result.payments or result.payments[-1][:2] != (trace, payer))
        ):
            result.payments.append((trace, payer, total, paid_on))  # a payment without claims
    if not ended:
        problems.append("the file ends before its IEA trailer: it is cut short")


def _claim(
    node: Any, trace: str, payer: str, seen: dict[tuple[str, str, str], int]
) -> RemittedClaim:
    line = node.cur_line_number
    where = f"segment {line}"
    ref = (node.get_value("CLP01") or "").strip()
    status = (node.get_value("CLP02") or "").strip()
    if status not in CLAIM_STATUSES:
        raise ValueError(f"{where} CLP02: {status!r} is not a claim status code")
    if not ref:
        raise ValueError(f"{where} CLP01: the patient control number is missing")
    payer_claim = (node.get_value("CLP07") or "").strip()
    occurrence = seen.get((ref, status, payer_claim), 0) + 1
    seen[(ref, status, payer_claim)] = occurrence
    adjustments: list[ClaimAdjustment] = []
    for cas in node.select("CAS"):
        adjustments.extend(_cas(cas, where))
    service_date = None
    for dtm in node.select("DTM"):
        if dtm.get_value("DTM01") in ("232", "150"):
            service_date = service_date or _date(dtm.get_value("DTM02"))
    for svc in node.select("2110"):
        for cas in svc.select("CAS"):
            adjustments.extend(_cas(cas, where))
        for dtm in svc.select("DTM"):
            if dtm.get_value("DTM01") in ("472", "150"):
                found = _date(dtm.get_value("DTM02"))
                if found and (service_date is None or found < service_date):
                    service_date = found
    return RemittedClaim(
        trace_number=trace,
        payer_id=payer,
        claim_ref=ref,
        status=status,
        charge_cents=cents(node.get_value("CLP03"), f"{where} CLP03"),
        paid_cents=cents(node.get_value("CLP04"), f"{where} CLP04"),
        patient_responsibility_cents=cents(node.get_value("CLP05"), f"{where} CLP05"),
        payer_claim_id=payer_claim,
        occurrence=occurrence,
        segment=line or 0,
        service_date=service_date,
        adjustments=tuple(adjustments),
    )


def _cas(node: Any, where: str) -> Iterator[ClaimAdjustment]:
    """A CAS segment holds up to six (reason, amount, quantity) triplets of one group."""
    raw_group = (node.get_value("CAS01") or "").strip()
    try:
        group = AdjustmentGroup(raw_group)
    except ValueError:
        raise ValueError(f"{where} CAS01: {raw_group!r} is not an adjustment group") from None
    for first in (2, 5, 8, 11, 14, 17):
        reason = (node.get_value(f"CAS{first:02d}") or "").strip()
        if not reason:
            continue
        amount = cents(node.get_value(f"CAS{first + 1:02d}"), f"{where} CAS{first + 1:02d}")
        yield ClaimAdjustment(group, reason, amount)
