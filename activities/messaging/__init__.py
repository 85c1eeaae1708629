"""The step activity, as a package of its jobs.

- ``claims``: outbox rows, claimed before any provider hears of a message;
- ``eligibility``: may the step go out now, on which channel (the decision core on fresh data);
- ``composition``: what it says (message, letter statement, call task);
- ``pipeline``: the batch pipeline, ``MessagingActivities``.
"""

from activities.messaging.claims import attempt_key
from activities.messaging.composition import aging_of
from activities.messaging.eligibility import address_lines, contact_point, mark_channel
from activities.messaging.pipeline import (
    AUTH_RETRY_DELAY,
    BUSY_RETRY_DELAY,
    MAX_RETRY_DELAY,
    MessagingActivities,
    PolicyStore,
    activity_now,
)

__all__ = [
    "AUTH_RETRY_DELAY",
    "BUSY_RETRY_DELAY",
    "MAX_RETRY_DELAY",
    "MessagingActivities",
    "PolicyStore",
    "activity_now",
    "address_lines",
    "aging_of",
    "attempt_key",
    "contact_point",
    "mark_channel",
]
