"""Any file a practice's spreadsheet or practice-management system writes, read as a table.

Encoding: a byte-order mark decides (UTF-8, UTF-16); else strict UTF-8; else the encoding
``charset-normalizer`` finds (an Excel "CSV" on Windows is Windows-1252: "Renée"). Delimiter:
comma, semicolon (a European Excel), tab (Open Dental's exports, "text" files) or pipe, chosen by
``csv.Sniffer`` over the first lines and checked against the header. A trailing delimiter on
every line (OpenEMR's collections export) makes an unnamed empty last column, which is dropped.
Control characters (NUL included) are reported by row and column, never read into the ledger.

Nothing here raises for a bad file: :func:`read_table` returns the problems as row errors.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from charset_normalizer import from_bytes

DELIMITERS = ",;\t|"
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
SNIFF_BYTES = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MULTI_BYTE = (
    "utf",
    "big5",
    "gb",
    "hz",
    "shift",
    "euc",
    "iso2022",
    "cp932",
    "cp949",
    "cp950",
    "johab",
)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class CellError:
    """A problem with the file, a row or a cell: ``row`` is the file's line (the header is 1)."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.column}: {self.message}"


@dataclass
class SourceTable:
    """The file's header and records (each with its first line number), and how it was read."""

    header: list[str]
    records: list[tuple[int, dict[str, str]]]
    encoding: str = "utf-8"
    delimiter: str = ","
    dropped_columns: list[str] = field(default_factory=list)
    errors: list[CellError] = field(default_factory=list)

    @property
    def delimiter_name(self) -> str:
        return DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))


def decode(data: bytes) -> tuple[str, str]:
    """The text and the name of its encoding.

    Raises:
        UnicodeError: no text encoding fits (a spreadsheet saved as .xlsx, a PDF, an image).
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding), encoding.removesuffix("-sig")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = from_bytes(data).best()
    if best is None:
        raise UnicodeError("not a text file (is it a spreadsheet's .xlsx? save it as CSV)")
    if not best.encoding.startswith(_MULTI_BYTE):
        # A short export tells the single-byte code pages apart poorly; a US practice's
        # spreadsheet writes Windows-1252 (Excel's "CSV" on Windows), which then decodes.
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            pass
    return str(best), best.encoding.replace("_", "-")


def sniff_delimiter(text: str) -> str:
    """The delimiter of the header line: sniffed over the first lines, checked by counting."""
    lines = text.splitlines()
    first = lines[0] if lines else ""
    sample = "\n".join(lines[:50])
    try:
        found = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        found = ""
    counts = {d: first.count(d) for d in DELIMITERS}
    if found and counts.get(found, 0) > 0:
        return found
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def read_table(source: str | Path | bytes) -> SourceTable:
    """Read a file (or its text) as a table; every problem becomes a :class:`CellError`."""
    if isinstance(source, Path):
        try:
            data = source.read_bytes()
        except OSError as exc:
            return SourceTable(
                [], [], errors=[CellError(1, "(file)", f"cannot read: {exc.strerror}")]
            )
        source = data
    encoding = "utf-8"
    if isinstance(source, bytes):
        try:
            text, encoding = decode(source)
        except UnicodeError as exc:
            return SourceTable([], [], errors=[CellError(1, "(file)", str(exc))])
    else:
        text = source.removeprefix("\ufeff")
    if not text.strip():
        return SourceTable([], [], encoding, errors=[CellError(1, "(file)", "the file is empty")])
    delimiter = sniff_delimiter(text)
    table = SourceTable([], [], encoding, delimiter)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        raw_header = next(reader)
    except (csv.Error, StopIteration) as exc:
        table.errors.append(CellError(1, "(header)", f"cannot be read: {exc}"))
        return table
    header = [_clean(h) for h in raw_header]
    # A delimiter after the last column (OpenEMR writes one on every line): an unnamed column.
    while header and not header[-1]:
        header.pop()
        table.dropped_columns.append("(unnamed trailing column)")
    table.header = header
    for index, name in enumerate(header):
        if not name:
            table.errors.append(CellError(1, f"column {index + 1}", "the header has no name here"))
        elif header.index(name) != index:
            table.errors.append(CellError(1, name, "the header names this column twice"))
        elif _CONTROL.search(name):
            table.errors.append(CellError(1, f"column {index + 1}", "a control character"))
    width = len(header)
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            table.errors.append(CellError(line, "(row)", f"cannot be read: {exc}"))
            line = reader.line_num + 1
            continue
        start, line = line, reader.line_num + 1
        if not any(v.strip() for v in values):
            continue  # a blank line, or only delimiters: nothing to import
        extra = values[width:]
        if any(v.strip() for v in extra):
            table.errors.append(
                CellError(start, "(row)", f"{len(values)} values for {width} columns")
            )
            continue
        values = values[:width] + [""] * (width - len(values))
        record = dict(zip(header, values, strict=True))
        for name, value in record.items():
            bad = _CONTROL.search(value)
            if bad:
                table.errors.append(
                    CellError(
                        start,
                        name,
                        f"a control character (U+{ord(bad.group()):04X}) where text was expected",
                    )
                )
        table.records.append((start, record))
    return table


def _clean(name: str) -> str:
    return name.strip().strip("\ufeff").strip()
