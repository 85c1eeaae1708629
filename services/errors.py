"""The one exception use cases raise for an expected refusal, typed by the rejection catalogue."""

from __future__ import annotations

from workflows.contract import Rejection


class Refused(Exception):
    """An action was refused for a known reason: front doors render it, never a traceback.

    Attributes:
        kind: the rejection's entry in the catalogue (HTTP status and CLI exit code map from it).
        message: a sentence for people, naming the field or the rule; never patient information.
    """

    def __init__(self, kind: Rejection, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


__all__ = ["Refused", "Rejection"]
