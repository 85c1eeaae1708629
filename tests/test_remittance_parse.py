"""X12 835 files read through pyx12: pyx12's own published samples (synthetic copies in
tests/data/remittance) and a 5010 file built on the implementation guide's example layout."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from models.remittance import (
    AdjustmentGroup,
    ClaimAdjustment,
    RemittanceFileError,
    cents,
    read_835,
)

DATA = Path(__file__).parent / "data" / "remittance"


def test_pyx12_4010_sample_reversal_and_correction() -> None:
    remittance = read_835(DATA / "pyx12_835_simple.835")
    assert remittance.payments == [("0004926", "1382999999", 595021, dt.date(2009, 2, 20))]
    reversal, corrected, other = remittance.claims
    assert (reversal.claim_ref, reversal.status, reversal.reversal) == ("123839-24635", "22", True)
    assert (reversal.charge_cents, reversal.paid_cents) == (-31000, -21000)
    assert reversal.adjustments == (ClaimAdjustment(AdjustmentGroup.CORRECTION, "45", -10000),)
    assert (corrected.status, corrected.reversal, corrected.paid_cents) == ("1", False, 20000)
    assert corrected.total(AdjustmentGroup.CORRECTION) == 10000
    assert corrected.service_date == dt.date(2008, 1, 11)
    # Same reference and payer claim number, but a reversal and an original: two postings.
    assert reversal.key != corrected.key
    assert (other.claim_ref, other.paid_cents, other.adjustments) == ("134158-27488", -50025, ())


def test_pyx12_5010_sample_service_line_adjustments() -> None:
    (claim,) = read_835(DATA / "pyx12_835_mult_loops.835").claims
    assert (claim.claim_ref, claim.status, claim.payer_claim_id) == ("2005555A", "4", "4276512332")
    assert (claim.charge_cents, claim.paid_cents, claim.patient_responsibility_cents) == (
        91539,
        0,
        0,
    )
    # Every service line's CAS counts: CO-16 on the first, OA-A7 on the other two.
    assert claim.total(AdjustmentGroup.CONTRACTUAL) == 50004
    assert claim.total(AdjustmentGroup.OTHER) == 12780 + 28755
    assert claim.service_date == dt.date(2003, 10, 30)  # the earliest service line


def test_guide_example_patient_responsibility_by_reason() -> None:
    remittance = read_835(DATA / "guide_5010_example.835")
    assert [c.claim_ref for c in remittance.claims] == ["CLAIM-A", "CLAIM-B", "CLAIM-C", "CLAIM-U"]
    a = remittance.claims[0]
    assert (a.trace_number, a.payer_id) == ("TRACE-0001", "1512345678")
    patient = [(x.reason, x.label, x.cents) for x in a.adjustments if x.group.value == "PR"]
    assert patient == [("1", "deductible", 3000), ("2", "co-insurance", 2500)]
    assert a.total(AdjustmentGroup.PATIENT) == a.patient_responsibility_cents == 5500
    assert a.charge_cents - a.paid_cents - a.total(AdjustmentGroup.CONTRACTUAL) == 5500
    denied = remittance.claims[2]
    assert (denied.status, denied.paid_cents, denied.adjustments[0].label) == (
        "4",
        0,
        "not covered under the benefit plan",
    )
    assert remittance.payments[0][2] == sum(c.paid_cents for c in remittance.claims)


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = (DATA / "guide_5010_example.835").read_text()
    assert old in text
    path = tmp_path / "variant.835"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("CLP*CLAIM-A*1*185*90*", "CLP*CLAIM-A*1*185*90.005*", "segment 13 CLP04: '90.005'"),
        ("CLP*CLAIM-B*1*", "CLP*CLAIM-B*Q*", "segment 21 CLP02: 'Q' is not a claim status"),
        ("CAS*CO*45*58~", "CAS*XX*45*58~", "do not follow the 835 implementation guide"),
        ("ST*835*1234~", "ST*837*1234~", "holds no 835 transaction"),
        ("GE*1*101~\nIEA*1*000000101~\n", "", "ends before its IEA trailer"),
        ("TRN*1*TRACE-0001*", "TRN*1**", "TRN02: the trace number is missing"),
    ],
)
def test_bad_files_are_refused_with_where_and_what(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    with pytest.raises(RemittanceFileError) as caught:
        read_835(_variant(tmp_path, old, new))
    assert any(expected in p for p in caught.value.problems), caught.value.problems
    assert all(p.startswith("variant.835: ") for p in caught.value.problems)
    assert "SYNTHETIC" not in str(caught.value)  # no name from the file in the message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"account_number,amount\nA-1,10.00\n", "does not start with an ISA segment"),
        (b"ISA*00*\x00\x00~", "contains NUL bytes"),
        (b"ISA*short~", "not a readable X12 file"),
    ],
)
def test_files_that_are_not_x12(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "upload.835"
    path.write_bytes(content)
    with pytest.raises(RemittanceFileError, match=expected):
        read_835(path)


@pytest.mark.parametrize(
    ("text", "expected"), [("1234.5", 123450), ("-310", -31000), ("", 0), (".01", 1)]
)
def test_x12_amounts_become_cents(text: str, expected: int) -> None:
    assert cents(text, "X") == expected


def test_amounts_beyond_64_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        cents("99999999999999999999", "CLP03")
