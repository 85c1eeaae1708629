"""Small pure rules about patients' protections shared by the ORM, imports and rendering."""

from __future__ import annotations

import datetime as dt

NSA_DISPUTE_THRESHOLD_CENTS = 40_000
"""No Surprises Act patient-provider dispute resolution (45 CFR 149.620(b)): an uninsured or
self-pay patient may dispute a bill that exceeds the good-faith estimate by $400 or more."""

AGE_OF_MAJORITY = 18

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
