"""The reply classifier over a corpus of real-world phrasings (tests/data/revocation_corpus.csv).

Every row is a message a patient could send and the outcome the law and common sense expect:
a revocation however phrased (FCC 24-24: "any reasonable means", English and Spanish), a wrong
number, the carrier keywords, or "unclear" (a person reads it). The corpus must stay large: a
classifier tuned to a handful of phrases is what this replaced.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from models.actions import ChannelEventKind, ChannelEventSignal
from models.payloads import ChannelStatus, ContactProfile
from models.policy import Channel
from models.replies import ReplyIntent, classify, normalise, reply_text
from workflows.account_rules import apply_channel_event

CORPUS = Path(__file__).parent / "data" / "revocation_corpus.csv"


def _rows() -> list[tuple[str, ReplyIntent]]:
    with CORPUS.open(encoding="utf-8", newline="") as f:
        return [(row["text"], ReplyIntent(row["expected"])) for row in csv.DictReader(f)]


ROWS = _rows()


def test_corpus_is_large_and_covers_every_outcome() -> None:
    assert len(ROWS) >= 150
    counts = Counter(expected for _, expected in ROWS)
    assert set(counts) == set(ReplyIntent)
    assert counts[ReplyIntent.REVOKE] >= 100
    assert counts[ReplyIntent.WRONG_NUMBER] >= 20
    assert counts[ReplyIntent.UNCLEAR] >= 20
    assert len({text for text, _ in ROWS}) == len(ROWS), "a phrase appears twice"


@pytest.mark.parametrize(("text", "expected"), ROWS, ids=[f"{i}" for i in range(len(ROWS))])
def test_corpus_phrase(text: str, expected: ReplyIntent) -> None:
    assert classify(text) is expected, text


def test_the_whole_corpus_at_once() -> None:
    wrong = [(t, e.value, classify(t).value) for t, e in ROWS if classify(t) is not e]
    assert wrong == []


@pytest.mark.parametrize(
    "text",
    [
        "no más",
        "No mas",
        "Parar",
        "BASTA",
        "Stop contacting me",
        "STOP!!! I paid",
        "I want you to stop",
    ],
)
def test_the_phrasings_the_issue_names_revoke(text: str) -> None:
    assert classify(text) is ReplyIntent.REVOKE


def test_normalise_removes_accents_case_and_punctuation() -> None:
    assert normalise("  ¡NO MÁS!!  ") == "no mas"
    assert normalise("Don’t   TEXT me.") == "dont text me"
    assert normalise("Stoooop") == "stop"


def test_replies_speak_the_language_and_name_the_practice() -> None:
    es = reply_text(ReplyIntent.REVOKE, "es", "Hospital San Rafael", "(555) 010-0200")
    assert es.startswith("Hospital San Rafael:") and "no recibirá" in es and "(555) 010-0200" in es
    en = reply_text(ReplyIntent.REVOKE, "en", "Lakeside Dental", "(555) 010-0300")
    assert en.startswith("Lakeside Dental:") and "not receive more texts" in en
    # An unsupported language falls back to English; an unclear message gets no automatic reply.
    assert reply_text(ReplyIntent.HELP, "fr", "P", "1") == reply_text(
        ReplyIntent.HELP, "en", "P", "1"
    )
    assert reply_text(ReplyIntent.UNCLEAR, "es", "P", "1") == ""
    wrong = reply_text(ReplyIntent.WRONG_NUMBER, "en", "P", "1")
    assert "not text or call this number" in wrong


def test_a_wrong_number_event_stops_texts_and_calls_in_the_workflow_profile() -> None:
    profile = ContactProfile(
        channels={
            Channel.SMS: ChannelStatus(reachable=True, consent=True),
            Channel.CALL: ChannelStatus(reachable=True, consent=True),
            Channel.EMAIL: ChannelStatus(reachable=True, consent=True),
        }
    )
    event = ChannelEventSignal(reference="tw:1", kind=ChannelEventKind.WRONG_NUMBER)
    assert event.channel is Channel.SMS
    apply_channel_event(profile, event)
    for channel in (Channel.SMS, Channel.CALL):
        assert not profile.status(channel).reachable
        assert profile.status(channel).reason == "wrong number"
    assert profile.status(Channel.EMAIL).reachable
