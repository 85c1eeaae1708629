"""Field definitions shared by payloads, actions and CSV rows."""

from __future__ import annotations

from pydantic import Field

REFERENCE_FIELD = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
"""An external reference (a payment's, a charge's or an event's id in the sending system)."""
