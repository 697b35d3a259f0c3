"""CSV cells that a spreadsheet never runs as formulas (OWASP's CSV-injection rule).

Every CSV lusviewer writes goes through :func:`csv_cell` (through :func:`safe_writer` /
:func:`safe_dict_writer`): a text cell that starts with ``=``, ``+``, ``-``, ``@``, a TAB
or a carriage return gets a leading ``'``, so Excel, LibreOffice and Google Sheets show it
as text instead of evaluating it (``=HYPERLINK(...)`` in a clip's file name, a zone, a
model name). Cells that are plain decimal numbers (``-0.25``, ``+3``, ``-1e-05``) are left
as they are: they cannot hold a formula, and a negative number must stay a number. Every
other value is written exactly. A script reading the CSV back can undo the rule with
:func:`unescape_cell`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

#: What a spreadsheet may read as the start of a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None


def csv_cell(value: object) -> str:
    """``value`` as it is written into a CSV cell: ``str(value)`` (``None`` -> empty), with a
    leading ``'`` when it starts like a formula and is not a plain decimal number."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS) and not _is_number(text):
        return "'" + text
    return text


def unescape_cell(text: str) -> str:
    """The value :func:`csv_cell` was given (for scripts reading a lusviewer CSV back)."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) and not _is_number(text[1:]):
        return text[1:]
    return text


class _Writer(Protocol):
    def writerow(self, row: Iterable[Any], /) -> Any: ...


class SafeWriter:
    """``csv.writer`` whose every cell goes through :func:`csv_cell`."""

    def __init__(self, fh: Any, **fmtparams: Any) -> None:
        self._w: _Writer = csv.writer(fh, **fmtparams)

    def writerow(self, row: Iterable[object]) -> None:
        self._w.writerow([csv_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def safe_writer(fh: Any, **fmtparams: Any) -> SafeWriter:
    """Drop-in for ``csv.writer(fh, ...)`` with :func:`csv_cell` applied to every cell."""
    return SafeWriter(fh, **fmtparams)


class SafeDictWriter:
    """``csv.DictWriter`` whose header and cells go through :func:`csv_cell`."""

    def __init__(self, fh: Any, fieldnames: Sequence[str], **fmtparams: Any) -> None:
        self.fieldnames = list(fieldnames)
        self._w = SafeWriter(fh, **fmtparams)

    def writeheader(self) -> None:
        self._w.writerow(self.fieldnames)

    def writerow(self, row: Mapping[str, object]) -> None:
        extra = set(row) - set(self.fieldnames)
        if extra:
            raise ValueError(f"dict contains fields not in fieldnames: {sorted(extra)}")
        self._w.writerow([row.get(k) for k in self.fieldnames])

    def writerows(self, rows: Iterable[Mapping[str, object]]) -> None:
        for row in rows:
            self.writerow(row)


def safe_dict_writer(fh: Any, fieldnames: Sequence[str], **fmtparams: Any) -> SafeDictWriter:
    """Drop-in for ``csv.DictWriter(fh, fieldnames=...)`` (missing keys are empty cells)."""
    return SafeDictWriter(fh, fieldnames, **fmtparams)
