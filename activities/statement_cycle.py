"""One due date per statement cycle, quoted the same by every message of the cycle.

A letter (a statement or a final notice) opens a cycle: pay by its date plus the payment terms.
The notices and reminders that follow quote that letter's due date, not a date of their own.
"Past due" is true only once the previous cycle's due date has passed: a statement sent on the day
the last one fell due is not yet past due. Pure: the send path and the previews share it.
"""

from __future__ import annotations

import datetime as dt

PAYMENT_TERMS_DAYS = 30


def statement_due(
    last_due: dt.date | None, today: dt.date, opens_cycle: bool
) -> tuple[dt.date, bool]:
    """(the due date to quote, whether the balance is past due today).

    Args:
        last_due: the due date of the latest letter already sent to the account, if any.
        today: the patient's calendar day of the send.
        opens_cycle: the message is a letter that opens a new cycle.
    """
    past_due = last_due is not None and today > last_due
    if opens_cycle or last_due is None:
        return today + dt.timedelta(days=PAYMENT_TERMS_DAYS), past_due
    return last_due, past_due
