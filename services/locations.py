"""Where a patient may be: time zones from the address's ZIP code and the phone's area code.

Offline data shipped in packages, nothing fetched at run time: ``zipcodes`` carries each US ZIP
code's zone, ``phonenumbers.timezone`` each North American area code's. Only the zone names leave
this module (in :class:`~models.payloads.PatientLocation`); the address and the number never do.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import available_timezones

import phonenumbers
import zipcodes
from phonenumbers import timezone as phone_timezone

from models.payloads import PatientLocation

_MAX_PHONE_ZONES = 2
"""An area code that straddles a zone line names both (208: Boise and Los Angeles); a number
naming more is not geographic (toll-free) and tells nothing of where the patient is."""


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _valid(name: str) -> bool:
    return name in _known_zones() and not name.startswith("Etc/")


@lru_cache(maxsize=1)
def _zip_zones() -> dict[str, str]:
    """Each ZIP code's zone, indexed once: ``zipcodes.matching`` scans all 42,000 codes per call
    (about 10 ms; an import of 10,000 distinct ZIP codes spent minutes there)."""
    zones: dict[str, str] = {}
    for row in zipcodes.list_all():  # type: ignore[no-untyped-call]
        name = row.get("timezone") or ""
        if row["zip_code"] not in zones and _valid(name):
            zones[row["zip_code"]] = str(name)
    return zones


def zone_of_zip(postal_code: str | None) -> str | None:
    """The time zone of a US ZIP code (5 digits, or ZIP+4), or None when unknown."""
    if not postal_code:
        return None
    digits = postal_code.strip()[:5]
    if len(digits) != 5 or not digits.isdigit():
        return None
    return _zip_zones().get(digits)


def warm() -> None:
    """Load the offline data now (the ZIP index, the area codes' zones), not at the first
    patient: a send process's fork server calls this once for all its children."""
    _zip_zones()
    zones_of_phone("+12125550100")


@lru_cache(maxsize=4096)
def zones_of_phone(phone: str | None, region: str = "US") -> tuple[str, ...]:
    """The time zones of a phone number's area code; empty when unknown or not geographic."""
    if not phone:
        return ()
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return ()
    if not phonenumbers.is_possible_number(number):
        return ()
    zones = tuple(z for z in phone_timezone.time_zones_for_geographical_number(number) if _valid(z))
    return zones if len(zones) <= _MAX_PHONE_ZONES else ()


def patient_locations(postal_code: str | None, phone: str | None) -> list[PatientLocation]:
    """The address's zone, then the phone's, each once."""
    found: list[PatientLocation] = []
    address = zone_of_zip(postal_code)
    if address:
        found.append(PatientLocation(time_zone=address, source="address"))
    for name in zones_of_phone(phone):
        if all(loc.time_zone != name for loc in found):
            found.append(PatientLocation(time_zone=name, source="phone"))
    return found
