"""The email unsubscribe link every email carries (12 CFR 1006.6(e); RFC 8058 one-click).

``GET`` shows a plain page with one button; ``POST`` (the button, or a mailbox provider's
one-click request with ``List-Unsubscribe=One-Click``) opts the address out at once and tells
the workflows. A GET alone changes nothing: mail scanners and link previews fetch every link in
a message (RFC 8058 section 1), and a patient's preference must not be set by a robot. A forged,
altered or unknown token gets a 404 page and changes nothing.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.state import State
from services import unsubscribe
from services.unsubscribe import Unsubscribed

router = APIRouter(prefix="/unsubscribe", tags=["unsubscribe"])

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em">
<h1 style="font-size:1.4em">{title}</h1>{body}</body></html>"""

NOT_VALID = "This unsubscribe link is not valid. Please call the practice to stop emails."


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), body=body), status_code=status)


@router.get("/email/{token}", response_class=HTMLResponse, summary="Unsubscribe page")
async def unsubscribe_page(token: str, state: State) -> HTMLResponse:
    if unsubscribe.verify(unsubscribe.secret_for(state.settings), token) is None:
        return _page("Link not valid", f"<p>{escape(NOT_VALID)}</p>", 404)
    return _page(
        "Stop billing emails",
        "<p>Press the button to stop receiving billing emails at this address. "
        "Letters and other messages the law requires may still reach you.</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit" style="font-size:1.1em;padding:.5em 1.2em">Unsubscribe</button>'
        "</form>",
    )


@router.post(
    "/email/{token}",
    response_class=HTMLResponse,
    summary="Unsubscribe (RFC 8058 one-click, or the page's button)",
)
async def unsubscribe_now(token: str, state: State) -> HTMLResponse:
    result = await unsubscribe.unsubscribe_email(state.intake, token)
    if result.status is Unsubscribed.REFUSED:
        return _page("Link not valid", f"<p>{escape(NOT_VALID)}</p>", 404)
    return _page(
        "You are unsubscribed",
        "<p>You will not receive more billing emails at this address.</p>",
    )
