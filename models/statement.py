"""What a statement says about each visit's claim: the remittance facts' vocabulary."""

from __future__ import annotations

from enum import StrEnum


class ClaimStatus(StrEnum):
    """Where the visit's insurance claim stands, as the practice's system reports it."""

    PAID = "paid"
    PARTLY_PAID = "partly_paid"
    DENIED = "denied"
    PENDING = "pending"
    NOT_FILED = "not_filed"

    @classmethod
    def parse(cls, value: object) -> object:
        """Export spellings ("Partly Paid", "not-filed") as the enum's values; others unchanged."""
        if isinstance(value, str):
            return value.strip().casefold().replace(" ", "_").replace("-", "_")
        return value
