"""What shows through an envelope's window: the text of a PDF page inside a rectangle.

Characters are located with pdfminer.six (each glyph's box as the PDF draws it); a character
counts when its box touches the window widened by the layout's clearance, so that a letter
shifting inside its envelope cannot show anything the test did not see.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from pdfminer.high_level import extract_pages
from pdfminer.layout import LAParams, LTChar, LTPage, LTTextContainer, LTTextLine

from activities.statement import Layout, Window

POINTS = 72.0
PAGE_HEIGHT_IN = 11.0


@dataclass(frozen=True)
class Seen:
    window: str
    lines: list[str]


def pages(pdf: bytes) -> list[LTPage]:
    return list(extract_pages(io.BytesIO(pdf), laparams=LAParams()))


def _lines(container: object) -> list[LTTextLine]:
    found: list[LTTextLine] = []
    if isinstance(container, LTTextLine):
        return [container]
    if isinstance(container, LTTextContainer | LTPage):
        for child in container:
            found += _lines(child)
    return found


def text_in(page: LTPage, window: Window, clearance: float) -> list[str]:
    """Each text line's characters that touch ``window`` (inches from the page's top-left)."""
    x0 = (window.left - clearance) * POINTS
    x1 = (window.left + window.width + clearance) * POINTS
    y1 = (PAGE_HEIGHT_IN - window.top + clearance) * POINTS
    y0 = (PAGE_HEIGHT_IN - window.top - window.height - clearance) * POINTS
    seen: list[str] = []
    for line in _lines(page):
        chars = [
            c
            for c in line
            if isinstance(c, LTChar) and c.x1 > x0 and c.x0 < x1 and c.y1 > y0 and c.y0 < y1
        ]
        text = "".join(c.get_text() for c in chars).strip()
        if text:
            seen.append(" ".join(text.split()))
    return seen


def windows(pdf: bytes, layout: Layout) -> dict[str, list[str]]:
    """The text behind each window of page one: the #10's two, and the #9's on the coupon."""
    first = pages(pdf)[0]
    env = layout.envelopes
    return {
        "return": text_in(first, env.return_window, env.clearance),
        "address": text_in(first, env.address_window, env.clearance),
        "remit": text_in(first, env.remit_on_page(), env.clearance),
    }
