"""Every CSV the engine writes for people is safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by Excel,
LibreOffice and Google Sheets as a formula (``=HYPERLINK(...)``, ``+cmd|' /C calc'!A0``,
``@SUM(...)``): a patient's name or an address line written verbatim could run one on the
billing office's computer. :func:`neutralise` puts a single quote in front of such a text cell,
as OWASP's "CSV injection" guidance recommends; the quote shows, nothing runs. Plain numbers
(``-3.50``) are left as they are, so amounts stay numbers.

Internal work files (the import's chunk files, read back by the engine) are not for people and
keep their values exactly.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def neutralise(value: object) -> str:
    """The cell's text, with a leading quote when a spreadsheet would read it as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def safe_row(row: Mapping[str, Any]) -> dict[str, str]:
    """Every cell of a row through :func:`neutralise`."""
    return {key: neutralise(value) for key, value in row.items()}


class SafeDictWriter(csv.DictWriter):  # type: ignore[type-arg]
    """``csv.DictWriter`` whose every cell (header included) goes through :func:`neutralise`."""

    def writeheader(self) -> Any:
        return self.writer.writerow([neutralise(f) for f in self.fieldnames])

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow(safe_row(rowdict))

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for row in rowdicts:
            self.writerow(row)
