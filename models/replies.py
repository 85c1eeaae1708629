"""What a patient's reply means: revocation understood, not matched. Pure: no I/O, no clock.

The FCC's 2024 consent-revocation order (FCC 24-24, 47 CFR 64.1200(a)(10)) requires honouring a
revocation made "by any reasonable means": a bare keyword, a sentence, another language, a typo.
A hospital that ships a bilingual policy must understand Spanish as well as English. So an inbound
text or email reply is classified into one of five outcomes:

- ``revoke``: the patient asks us to stop (however phrased, inside a longer message too);
- ``wrong_number``: the message says this number is not the patient's: texts and calls to it stop;
- ``start`` and ``help``: the carrier keywords, kept as they are (START/UNSTOP/YES, HELP/INFO);
- ``unclear``: anything else. Nobody guesses: a person reads it (a staff task opens).

Messages are normalised first: accents removed, lower case, apostrophes dropped, everything but
letters and digits made a space. The rules are word patterns over that text, in a fixed order:
wrong number first (it stops more than a revocation does), then revocation, then the keywords.
A few phrases that only look like a revocation ("stop by the office", "don't stop") are not one.

The corpus in ``tests/data/revocation_corpus.csv`` holds the phrasings this module must get right.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum


class ReplyIntent(StrEnum):
    REVOKE = "revoke"
    WRONG_NUMBER = "wrong_number"
    START = "start"
    HELP = "help"
    UNCLEAR = "unclear"


def normalise(text: str) -> str:
    """Lower case, no accents, no apostrophes, words separated by single spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    plain = re.sub(r"['\u2019\u2018`´]", "", plain).replace("#", " number ")
    plain = re.sub(r"[^a-z0-9]+", " ", plain)
    # A held key ("stooop", "stopppp") is still the word.
    plain = re.sub(r"\bs+t+o+p+\b", "stop", plain)
    return " ".join(plain.split())


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b")


# Whole-message keywords (what carriers and Twilio treat as keywords), after normalising.
STOP_KEYWORDS = frozenset(
    {
        "stop",
        "stopall",
        "stop all",
        "unsubscribe",
        "unsub",
        "cancel",
        "end",
        "quit",
        "revoke",
        "optout",
        "opt out",
        "remove",
        "enough",
        # Spanish
        "parar",
        "para",
        "pare",
        "paren",
        "basta",
        "alto",
        "no mas",
        "baja",
        "cancelar",
        "detener",
        "detente",
        "revocar",
        "ya basta",
        "fin",
    }
)
START_KEYWORDS = frozenset(
    {"start", "unstop", "yes", "opt in", "optin", "subscribe", "resume", "comenzar", "reanudar"}
)
HELP_KEYWORDS = frozenset({"help", "info", "ayuda", "help me", "ayudame", "informacion"})
_POLITE = _words(
    "please", "pls", "plz", "por favor", "now", "ahora", "thanks", "thank you", "gracias"
)

WRONG_NUMBER = _words(
    r"wrong (?:number|person|phone|#|num)",
    r"wrong (?:cell|contact)",
    r"(?:not|isnt|is not|aint) (?:my|the right) (?:number|phone|bill|account)",
    r"(?:dont|do not) know (?:this|that|who|any|him|her|them|a )",
    r"no one (?:here )?(?:by|named|called) that",
    r"nobody (?:here )?(?:by|named|called) (?:that|this)",
    r"no (?:such|one by that) (?:name|person)",
    r"(?:this|that|i) (?:is|am) not (?:him|her|them|the person|who you)",
    r"(?:you have|youve got|you got|youre texting|you are texting) the wrong",
    r"never heard of",
    r"not (?:him|her|them) anymore",
    r"(?:he|she|they) (?:doesnt|does not|dont|do not|no longer) (?:have|has|use|live)",
    r"new owner of this (?:number|phone)",
    r"i (?:just )?got this number",
    r"this number (?:is|was) (?:reassigned|recently assigned|new)",
    # Spanish
    r"numero (?:equivocado|incorrecto|errado|erroneo|falso)",
    r"(?:se|te|le) equivoc\w+ de numero",
    r"equivocad[oa]s? de (?:numero|persona)",
    r"no (?:es|soy) (?:mi numero|esa persona|la persona|el|ella|quien)",
    r"no conozco a",
    r"no conozco (?:esa|ese|a esa|a ese|esta|este) persona",
    r"no (?:vive|trabaja) aqui",
    r"este no es (?:el|mi) numero",
    r"persona equivocada",
)

# A revocation: the message asks us to stop contacting, however it is put.
_CONTACT_VERBS = (
    r"(?:text|texts|texting|txt|txting|message|messages|messaging|msg|msging|contact|contacting"
    r"|call|calls|calling|email|emails|emailing|send|sending|bother|bothering|harass|harassing"
    r"|spam|spamming|write|writing|reach|reaching|ping|pinging)"
)
REVOKE = _words(
    rf"stop {_CONTACT_VERBS}",
    r"stop (?:it|this|that|these|them|now|already|all|everything|immediately|asap|please|pls|plz)",
    r"(?:please|pls|plz|kindly|just|so|and|now|then|ok|okay|oh|god|omg|guys|lord) stop",
    r"(?:want|wants|need|needs|would like|d like|like|asking|ask|asked|tell|telling|told|request"
    r"|requesting|demand|demanding|wish) (?:for )?(?:you )?(?:all )?(?:guys )?(?:to )?stop",
    r"(?:do not|dont|never|no|quit|cease) (?:ever )?(?:again )?" + _CONTACT_VERBS,
    r"no more (?:text|texts|message|messages|msgs|calls|call|emails|email|contact|reminders)",
    r"(?:unsubscribe|unsubscribed|unsub|opt out|opting out|opted out|optout|opt me out"
    r"|revoke|revoking|revoked|revocation|withdraw my consent|withdraw consent"
    r"|cease and desist|cease all|remove me|take me off"
    r"|remove (?:my|this) (?:number|email|phone|info)"
    r"|take my (?:number|email) off|leave me alone|delete my (?:number|email|phone)"
    r"|lose my number|off (?:your|the) (?:list|mailing list)|do not contact list"
    r"|dnc list|no longer (?:wish|want) to (?:receive|be contacted|get))",
    r"cancel (?:my )?(?:texts|messages|subscription|consent|alerts|notifications|these)",
    r"(?:enough|quit it|knock it off|go away)",
    r"(?:dont|do not|no) want (?:any )?(?:more )?(?:your )?(?:texts|messages|calls|emails)",
    r"(?:stop|unsubscribe)$",
    r"^(?:stop|unsubscribe|revoke)\b(?! by\b| in\b| at\b| paying\b| payment)",
    # Spanish
    r"no me (?:vuelvan? a |sigan? |sigas )?(?:mande|manden|mandes|envie|envien|envies|escriba"
    r"|escriban|escribas|llame|llamen|llames|contacte|contacten|contactes|moleste|molesten"
    r"|molestes|textee|texteen|mensajee)",
    r"no (?:mande|manden|mandes|envie|envien|envies) (?:mas )?(?:mensajes|textos|correos)",
    r"(?:favor de |por favor )?no (?:llamar|enviar|mandar|escribir|contactar|textear)(?:me|nos)?"
    r" (?:mas|a este|a mi|aqui|nunca)",
    r"no mas (?:mensajes|textos|llamadas|correos|sms)",
    r"no mas",
    r"(?:dejen|deja|dejar|deje|dejan) de (?:mandar|enviar|escribir|llamar|molestar|contactar"
    r"|textear)(?:me|nos)?",
    r"(?:basta|parar|paren|pare|detengan|detener|revoco|revocar)",
    r"cancelar (?:los |mis |estos |el )?(?:mensajes|textos|envios|servicio de mensajes)",
    r"ya no (?:quiero|deseo) (?:recibir|mas|que me)",
    r"(?:no quiero|no deseo) (?:recibir )?(?:mas )?(?:mensajes|textos|llamadas|correos)",
    r"(?:darme|dar|denme|dame|me doy|me den|doy) de baja",
    r"(?:quiten|quitar|quite|borren|borrar|eliminen|eliminar) (?:mi|este)"
    r" (?:numero|correo|telefono)",
    r"(?:sacarme|sacame|saquenme) de (?:la|su|sus) lista",
)

# "Don't stop the reminders": a stop word, negated. A person reads it.
NEGATED_STOP = _words(r"(?:dont|do not|never|cant|cannot|wont|please dont) stop")
# Phrases that contain a stop word but do not ask us to stop.
NOT_REVOKE = _words(
    r"stop (?:by|in|at|into) (?:the|your|my|tomorrow|today|on|this|next)",
    r"stop by",
    r"when (?:will|do|does|can) (?:this|the|these|it|my) \w* ?stop",
    r"how (?:do|can) i (?:make (?:it|this|them) )?stop",
)


def classify(text: str) -> ReplyIntent:
    """The outcome of one inbound text or email reply."""
    words = normalise(text)
    if not words:
        return ReplyIntent.UNCLEAR
    bare = " ".join(_POLITE.sub(" ", words).split()) or words
    if WRONG_NUMBER.search(words):
        return ReplyIntent.WRONG_NUMBER
    if bare in STOP_KEYWORDS or words in STOP_KEYWORDS:
        return ReplyIntent.REVOKE
    if bare in START_KEYWORDS or words in START_KEYWORDS:
        return ReplyIntent.START
    if bare in HELP_KEYWORDS or words in HELP_KEYWORDS:
        return ReplyIntent.HELP
    if NEGATED_STOP.search(words):
        return ReplyIntent.UNCLEAR
    if NOT_REVOKE.search(words) and not _strong_revocation(words):
        return ReplyIntent.UNCLEAR
    if REVOKE.search(words):
        return ReplyIntent.REVOKE
    return ReplyIntent.UNCLEAR


_STRONG = _words(
    r"unsubscribe",
    r"opt out",
    r"optout",
    r"revoke",
    r"no more (?:texts|messages|calls|emails)",
    r"leave me alone",
    r"remove me",
    r"stop (?:text|texting|messag\w*|contacting|calling|emailing|sending)",
    r"(?:do not|dont) (?:text|message|contact|call|email)",
)


def _strong_revocation(words: str) -> bool:
    return bool(_STRONG.search(words))


# -- email replies ------------------------------------------------------------------------------

_QUOTE_START = re.compile(
    r"^(?:on .{0,200} wrote:|el .{0,200} escribi[oó]:|-{2,} ?original message ?-{2,}"
    r"|-{2,} ?mensaje original ?-{2,}|from: .*|de: .*|sent from my .*|enviado desde mi .*)\s*$",
    re.IGNORECASE,
)


def reply_body(text: str) -> str:
    """The patient's own words in an email reply: the text above the quoted message."""
    own: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(">") or _QUOTE_START.match(stripped):
            break
        own.append(stripped)
    return " ".join(w for w in own if w)


def classify_email(subject: str, text: str) -> ReplyIntent:
    """An email reply: its own words decide; a bare subject ("STOP", "Unsubscribe") when empty."""
    bare = re.sub(r"^(?:\s*(?:re|aw|fw|fwd|rv)\s*:\s*)+", "", subject, flags=re.IGNORECASE)
    body = reply_body(text)
    intent = classify(body) if body else ReplyIntent.UNCLEAR
    if intent is ReplyIntent.UNCLEAR:
        by_subject = classify(bare)
        if by_subject in (ReplyIntent.REVOKE, ReplyIntent.WRONG_NUMBER) or not body:
            return by_subject
    return intent


# -- the one reply sent back ---------------------------------------------------------------------

_REPLIES: dict[str, dict[ReplyIntent, str]] = {
    "en": {
        ReplyIntent.REVOKE: "{practice}: you will not receive more texts from us. "
        "Questions: {phone}.",
        ReplyIntent.WRONG_NUMBER: "{practice}: thank you, we will not text or call this number "
        "again.",
        ReplyIntent.START: "{practice}: texts are on again. Reply STOP to opt out.",
        ReplyIntent.HELP: "{practice} billing: call {phone}. Reply STOP to opt out.",
    },
    "es": {
        ReplyIntent.REVOKE: "{practice}: no recibirá más mensajes de texto nuestros. "
        "Preguntas: {phone}.",
        ReplyIntent.WRONG_NUMBER: "{practice}: gracias, no volveremos a enviar mensajes ni a "
        "llamar a este número.",
        ReplyIntent.START: "{practice}: los mensajes de texto están activos de nuevo. "
        "Responda STOP o PARAR para cancelarlos.",
        ReplyIntent.HELP: "{practice} facturación: llame al {phone}. "
        "Responda STOP o PARAR para cancelar.",
    },
}
REPLY_LANGUAGES = frozenset(_REPLIES)


def reply_text(intent: ReplyIntent, language: str, practice: str, phone: str) -> str:
    """The one text sent back ("" for none): in the account's language, signed by its practice.

    A single confirmation of a revocation is allowed (FCC 24-24); HELP gets the practice's contact
    and nothing about the balance (minimum necessary). An unclear message gets no automatic
    answer: a person reads it. A language without replies here falls back to English.
    """
    template = _REPLIES.get(language, _REPLIES["en"]).get(intent, "")
    return template.format(practice=practice, phone=phone) if template else ""
