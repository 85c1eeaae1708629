"""Small pure rules about patients' protections shared by the ORM, imports and rendering."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

NSA_DISPUTE_THRESHOLD_CENTS = 40_000
"""No Surprises Act patient-provider dispute resolution (45 CFR 149.620(b)): an uninsured or
self-pay patient may dispute a bill that exceeds the good-faith estimate by $400 or more."""

AGE_OF_MAJORITY = 18

RESTRICTED_REASON = "restricted at the patient's request"


class RestrictionKind(StrEnum):
    """A patient's request about how to be contacted (HIPAA 45 CFR 164.522; Reg F 1006.6(b)(3))."""

    MAIL_ONLY = "mail_only"
    EMAIL_ONLY = "email_only"
    NO_CALLS = "no_calls"
    NO_CALLS_AT_WORK = "no_calls_at_work"
    NO_TEXTS = "no_texts"
    NO_EMAIL = "no_email"


NSA_DISPUTE_NOTICE = (
    "No Surprises Act: the charges for {visits} are $400 or more above the good-faith estimate you"
    " were given. You may dispute this bill through the federal patient-provider dispute"
    " resolution process within 120 days of this bill: visit cms.gov/nosurprises or call"
    " 1-800-985-3059. While a dispute is open we will not send the bill to collection. Call us"
    " at {phone} and we will pause your account."
)
NSA_DISPUTE_NOTICE_ES = (
    "Ley Sin Sorpresas (No Surprises Act): los cargos de {visits} superan en $400 o más el"
    " cálculo estimado de buena fe que recibió. Puede disputar esta factura mediante el proceso"
    " federal de resolución de disputas entre pacientes y proveedores dentro de los 120 días de"
    " esta factura: visite cms.gov/nosurprises o llame al 1-800-985-3059. Mientras la disputa"
    " esté abierta no enviaremos la factura a cobranza. Llámenos al {phone} y pausaremos su"
    " cuenta."
)


def nsa_dispute_eligible(billed_cents: int, good_faith_estimate_cents: int | None) -> bool:
    """True when the bill exceeds the good-faith estimate by $400 or more."""
    if good_faith_estimate_cents is None:
        return False
    return billed_cents - good_faith_estimate_cents >= NSA_DISPUTE_THRESHOLD_CENTS


def age_on(birth: dt.date, day: dt.date) -> int:
    """Whole years of age on ``day``."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def majority_date(birth: dt.date) -> dt.date:
    """The 18th birthday (29 February births come of age on 1 March in a common year)."""
    try:
        return birth.replace(year=birth.year + AGE_OF_MAJORITY)
    except ValueError:
        return dt.date(birth.year + AGE_OF_MAJORITY, 3, 1)


class PhoneKind(StrEnum):
    """What kind of line the guarantor's number is, as intake or staff recorded it.

    Empty (unknown) unless a practice-management export or a person said so: decisions that need
    it read unknown conservatively (``workflows.protections.restriction_blocks``).
    """

    UNKNOWN = ""
    MOBILE = "mobile"
    HOME = "home"
    WORK = "work"


PHONE_KIND_WORDS: dict[str, PhoneKind] = {
    "": PhoneKind.UNKNOWN,
    "unknown": PhoneKind.UNKNOWN,
    "mobile": PhoneKind.MOBILE,
    "cell": PhoneKind.MOBILE,
    "cellular": PhoneKind.MOBILE,
    "home": PhoneKind.HOME,
    "landline": PhoneKind.HOME,
    "work": PhoneKind.WORK,
    "office": PhoneKind.WORK,
    "business": PhoneKind.WORK,
    "employer": PhoneKind.WORK,
}


def parse_phone_kind(raw: object) -> PhoneKind:
    """A phone-type cell of an export ("Cell", "Work", "Home", blank) as a :class:`PhoneKind`."""
    if isinstance(raw, PhoneKind):
        return raw
    word = str(raw or "").strip().lower()
    if word not in PHONE_KIND_WORDS:
        raise ValueError("expected one of mobile, home or work (or blank when unknown)")
    return PHONE_KIND_WORDS[word]
