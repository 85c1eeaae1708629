"""Content rules for what a message may say where others may see or hear it.

Pure functions over text: ``dunning policy check`` runs them on every template's source and on
its rendering with sensitive synthetic data (``activities.rendering.check_templates``).

- **Limited-content voicemail** (12 CFR 1006.2(j)): a neutral business name, a request to call
  back, a name and a number; no balance, bill, amount, debt, money, date, service or specialty.
- **Minimum necessary** (HIPAA 45 CFR 164.502(b)): no service, date of service, diagnosis or
  specialty in an SMS, an email's subject line (shown in inbox lists and on lock screens) or a
  voicemail.

Word lists exist for English and Spanish; every template is checked against the English list and
against the list of its own language. A match is reported with the template's line and the word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from models.policy import Channel
from workflows.state_rules import REFUSAL_OF_CARE_PHRASES


class Place(StrEnum):
    """Where a text is seen or heard."""

    SMS = "SMS"
    EMAIL_SUBJECT = "email subject"
    VOICEMAIL = "voicemail"
    ANY = "a message"


# Services, specialties and diagnoses whose mention discloses protected health information.
_SENSITIVE_EN = (
    "behavioral health",
    "mental health",
    "psychiatry",
    "psychiatric",
    "psychiatrist",
    "psychology",
    "psychologist",
    "psychotherapy",
    "therapy",
    "counseling",
    "counselling",
    "substance use",
    "substance abuse",
    "addiction",
    "rehab",
    "rehabilitation",
    "detox",
    "methadone",
    "hiv",
    "aids",
    "std",
    "sti",
    "sexual health",
    "oncology",
    "oncologist",
    "cancer",
    "chemotherapy",
    "radiation",
    "tumor",
    "gynecology",
    "obstetrics",
    "ob/gyn",
    "obgyn",
    "prenatal",
    "pregnancy",
    "abortion",
    "fertility",
    "ivf",
    "urology",
    "dermatology",
    "cardiology",
    "neurology",
    "gastroenterology",
    "pediatrics",
    "orthodontics",
    "orthopedic",
    "orthopedics",
    "radiology",
    "surgery",
    "surgical",
    "procedure",
    "treatment",
    "diagnosis",
    "diagnosed",
    "diagnostic",
    "depression",
    "anxiety",
    "diabetes",
    "dementia",
    "laboratory",
    "lab test",
    "blood test",
    "x-ray",
    "mri",
    "ct scan",
    "ultrasound",
    "vaccination",
    "vaccine",
    "prescription",
    "clinic visit",
    "office visit",
    "your visit",
    "hospital stay",
    "emergency room",
    "date of service",
    "service date",
)

_SENSITIVE_ES = (
    "salud conductual",
    "salud mental",
    "psiquiatría",
    "psiquiatria",
    "psiquiátrico",
    "psiquiatrico",
    "psicología",
    "psicologia",
    "psicólogo",
    "psicologo",
    "terapia",
    "consejería",
    "consejeria",
    "adicción",
    "adiccion",
    "rehabilitación",
    "rehabilitacion",
    "desintoxicación",
    "vih",
    "sida",
    "its",
    "ets",
    "salud sexual",
    "oncología",
    "oncologia",
    "cáncer",
    "cancer",
    "quimioterapia",
    "radioterapia",
    "tumor",
    "ginecología",
    "ginecologia",
    "obstetricia",
    "prenatal",
    "embarazo",
    "aborto",
    "fertilidad",
    "urología",
    "urologia",
    "dermatología",
    "dermatologia",
    "cardiología",
    "cardiologia",
    "neurología",
    "neurologia",
    "pediatría",
    "pediatria",
    "ortodoncia",
    "ortopedia",
    "radiología",
    "radiologia",
    "cirugía",
    "cirugia",
    "procedimiento",
    "tratamiento",
    "diagnóstico",
    "diagnostico",
    "depresión",
    "depresion",
    "ansiedad",
    "diabetes",
    "laboratorio",
    "análisis de sangre",
    "analisis de sangre",
    "radiografía",
    "radiografia",
    "resonancia",
    "ecografía",
    "ecografia",
    "vacuna",
    "vacunación",
    "receta",
    "su visita",
    "su consulta",
    "consulta médica",
    "hospitalización",
    "hospitalizacion",
    "sala de emergencias",
    "fecha de servicio",
    "fecha del servicio",
)

# What a voicemail may not say about the debt itself (12 CFR 1006.2(j)).
_DEBT_EN = (
    "balance",
    "bill",
    "billing",
    "bills",
    "amount",
    "amounts",
    "debt",
    "debts",
    "owe",
    "owed",
    "owing",
    "unpaid",
    "past due",
    "overdue",
    "collection",
    "collections",
    "payment",
    "statement",
)

_DEBT_ES = (
    "saldo",
    "factura",
    "facturas",
    "monto",
    "importe",
    "cantidad",
    "deuda",
    "deudas",
    "adeuda",
    "debe",
    "vencido",
    "vencida",
    "impago",
    "pendiente de pago",
    "cobranza",
    "cobro",
    "pago",
    "estado de cuenta",
)

SENSITIVE_WORDS: dict[str, tuple[str, ...]] = {"en": _SENSITIVE_EN, "es": _SENSITIVE_ES}
DEBT_WORDS: dict[str, tuple[str, ...]] = {"en": _DEBT_EN, "es": _DEBT_ES}
LANGUAGES_WITH_WORD_LISTS = frozenset(SENSITIVE_WORDS)

# A date (10/01/2026, 10/1, 2026-10-01, October 1) is a date of service where it may not be.
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre"
)
_DATE = re.compile(
    r"(?<![\d.])(\d{1,2}/\d{1,2}(/\d{2,4})?|\d{4}-\d{2}-\d{2})(?![\d.])"
    rf"|\b({_MONTHS})\s+\d{{1,2}}\b",
    re.IGNORECASE,
)
_MONEY = re.compile(r"\$\s?\d|\bUSD\b|\b\d+[.,]\d{2}\s?(dólares|dolares|dollars)\b", re.IGNORECASE)
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)

VOICEMAIL_MARKERS = ("voicemail", "mensaje de voz", "buzón de voz", "buzon de voz")


@dataclass(frozen=True)
class ContentProblem:
    """A word a text may not carry where it is seen: the template line, the word, and why."""

    line: int
    word: str
    place: Place
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.place.value} may not say {self.word!r} ({self.reason})"


def _word_pattern(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w/-]){re.escape(word)}(?![\w/-])", re.IGNORECASE)


_PATTERNS: dict[str, re.Pattern[str]] = {
    w: _word_pattern(w)
    for words in (*SENSITIVE_WORDS.values(), *DEBT_WORDS.values())
    for w in words
}


def _lists(language: str, table: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    words = list(table["en"])
    for w in table.get(language, ()):
        if w not in words:
            words.append(w)
    return tuple(words)


def strip_template_tags(source: str) -> str:
    """The literal text of a Jinja template: tags removed, line numbers kept."""
    return _JINJA.sub(lambda m: "\n" * m.group(0).count("\n"), source)


def voicemail_lines(text: str) -> list[tuple[int, str]]:
    """The lines of a call script that are its voicemail, numbered from 1.

    A call script gives its voicemail on lines starting with "Voicemail" (or "Mensaje de voz");
    the rest is guidance for staff on the phone, never left on a machine. A script without such a
    line is read as all voicemail, the strictest reading.
    """
    lines = list(enumerate(text.splitlines(), start=1))
    marked = [(n, ln) for n, ln in lines if ln.strip().lower().startswith(VOICEMAIL_MARKERS)]
    if not marked:
        return lines
    out = []
    for n, ln in marked:
        # What is left on the machine is the quoted text, or what follows the label.
        quoted = re.findall(r"[\"“](.*?)[\"”]", ln)
        out.append((n, " ".join(quoted) if quoted else ln.split(":", 1)[-1]))
    return out


def places_of(channel: Channel, text: str) -> list[tuple[Place, int, str]]:
    """The parts of a template (source or rendering) seen by others, with their line numbers."""
    if channel is Channel.SMS:
        return [(Place.SMS, n, ln) for n, ln in enumerate(text.splitlines(), start=1)]
    if channel is Channel.EMAIL:
        first = text.splitlines()[0] if text.splitlines() else ""
        return [(Place.EMAIL_SUBJECT, 1, first)]
    if channel is Channel.CALL:
        return [(Place.VOICEMAIL, n, ln) for n, ln in voicemail_lines(text)]
    return []


def scan(
    channel: Channel, text: str, language: str, extra_sensitive: tuple[str, ...] = ()
) -> list[ContentProblem]:
    """Every forbidden word, date or amount in the parts of ``text`` others see or hear.

    Args:
        channel: the template's channel (letters are not scanned: they go in a sealed envelope).
        text: template source with its tags stripped, or a rendered sample.
        language: the template's language; the English list always applies too.
        extra_sensitive: more phrases to refuse, e.g. the sample data's service descriptions.
    """
    sensitive = _lists(language, SENSITIVE_WORDS)
    debt = _lists(language, DEBT_WORDS)
    problems: list[ContentProblem] = []
    for place, line, part in places_of(channel, text):
        found: list[tuple[str, str]] = []
        for word in (*sensitive, *extra_sensitive):
            pattern = _PATTERNS.get(word) or _word_pattern(word)
            if pattern.search(part):
                found.append((word, "a service, diagnosis or specialty; HIPAA 45 CFR 164.502(b)"))
        match = _DATE.search(part)
        if match:
            found.append((match.group(0), "a date of service; HIPAA 45 CFR 164.502(b)"))
        if place is Place.VOICEMAIL:
            for word in debt:
                if _PATTERNS[word].search(part):
                    found.append((word, "limited-content voicemail, 12 CFR 1006.2(j)"))
            money = _MONEY.search(part)
            if money:
                found.append((money.group(0), "an amount; limited-content voicemail"))
        seen: set[str] = set()
        for word, reason in found:
            if word.lower() in seen:
                continue
            seen.add(word.lower())
            problems.append(ContentProblem(line, word, place, reason))
    return problems


def refusal_of_care(text: str) -> list[ContentProblem]:
    """Wording that care will be refused or delayed for an unpaid balance, in any channel.

    Minnesota forbids it (Minn. Stat. 62J.806) and residence decides which state's rules apply, so
    no template may say it; elsewhere it threatens what a practice should not do (DOMAIN.md).
    """
    problems = []
    for n, line in enumerate(text.splitlines(), start=1):
        for phrase in REFUSAL_OF_CARE_PHRASES:
            if _word_pattern(phrase).search(line):
                problems.append(
                    ContentProblem(
                        n,
                        phrase,
                        Place.ANY,
                        "care refused or delayed for an unpaid balance; Minnesota forbids it"
                        " (Minn. Stat. 62J.806) and a patient may live there",
                    )
                )
    return problems
