"""Moved to :mod:`services.intake`; kept so that the webhooks' imports keep working."""

from services.intake import (
    AccountPosted,
    PolicyUnusable,
    channel_event_for_guarantors,
    guarantors_by_email,
    guarantors_by_phone,
    post_account,
)

__all__ = [
    "AccountPosted",
    "PolicyUnusable",
    "channel_event_for_guarantors",
    "guarantors_by_email",
    "guarantors_by_phone",
    "post_account",
]
