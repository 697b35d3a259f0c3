"""Where on the chest each clip of an exam was recorded: the zones of the two exam
protocols and how a zone is read from a clip's file name. No Qt here.

Two schemes, chosen by the exam's protocol (:data:`~lusviewer.report.exam.PROTOCOLS`):

* **BLUE points** (6 zones; protocol 6, and "zones as scored" unless a zone below is
  Soldati's only): per side ``1`` the upper BLUE point (anterior, upper), ``2`` the lower
  BLUE point (anterior, lower), ``3`` the PLAPS point (posterolateral): ``R1``..``R3``,
  ``L1``..``L3`` as in the COVID-BLUeS clips ``patient_<ID>_<POINT>[_2].mp4``.
* **Soldati et al.'s 14 zones** (protocol 14): per side ``1``..``3`` posterior (lower,
  middle, upper), ``4``..``5`` lateral (lower, upper), ``6``..``7`` anterior (lower,
  upper): ``R1``..``R7``, ``L1``..``L7``. This numbering is lusviewer's (labs number the
  14 areas differently): name files in words where yours differs.

A zone is read from a clip's file name (without its extension) by :func:`zone_from_name`:

1. a code token: ``R`` or ``L`` then the zone's number, set apart by anything but a
   letter or digit (``patient_11_L1``, ``patient_1_R1_2``: ``_2`` a second clip of the
   point, ``scan-r5``); the number must belong to the scheme (``R5`` is no BLUE point);
2. else words (any case, any separators): a side (``right``/``rt``/``r``,
   ``left``/``lt``/``l``) and, for Soldati's zones, a region (``anterior``/``ant``,
   ``lateral``/``lat``, ``posterior``/``post``) and a level (``upper``/``up``/
   ``superior``/``sup``, ``middle``/``mid`` (posterior only), ``lower``/``low``/
   ``inferior``/``inf``/``basal``/``base``): ``Right_anterior_upper.mp4``; for the BLUE
   points, ``upper``/``lower`` with ``blue``, or ``plaps``: ``left-upper-BLUE.mp4``.

A name that matches none, or more than one zone, gives None: the clinician chooses the
zone (the viewer's drop-down, ``lusviewer score --zone-from``).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Zone:
    """One zone of a protocol: its code (``R1``) and where it lies on the chest."""

    code: str
    side: str  # "R" (patient's right) or "L"
    region: str  # "anterior", "lateral", "posterior"; BLUE's PLAPS point: "posterolateral"
    level: str  # "upper", "middle", "lower" ("" for the PLAPS point)
    name: str  # for people: "right upper BLUE point", "right anterior upper"


def _blue() -> tuple[Zone, ...]:
    out = []
    for side, word in (("R", "right"), ("L", "left")):
        out += [
            Zone(f"{side}1", side, "anterior", "upper", f"{word} upper BLUE point"),
            Zone(f"{side}2", side, "anterior", "lower", f"{word} lower BLUE point"),
            Zone(f"{side}3", side, "posterolateral", "", f"{word} PLAPS point"),
        ]
    return tuple(out)


def _soldati() -> tuple[Zone, ...]:
    places = (
        ("posterior", "lower"),
        ("posterior", "middle"),
        ("posterior", "upper"),
        ("lateral", "lower"),
        ("lateral", "upper"),
        ("anterior", "lower"),
        ("anterior", "upper"),
    )
    out = []
    for side, word in (("R", "right"), ("L", "left")):
        for k, (region, level) in enumerate(places, start=1):
            out.append(Zone(f"{side}{k}", side, region, level, f"{word} {region} {level}"))
    return tuple(out)


BLUE_ZONES = _blue()
SOLDATI_ZONES = _soldati()
#: The zones of each protocol, by its number of zones.
SCHEMES: dict[int, tuple[Zone, ...]] = {6: BLUE_ZONES, 14: SOLDATI_ZONES}
#: Codes only Soldati's scheme has (a "zones as scored" exam holding one is drawn as 14 zones).
SOLDATI_ONLY = frozenset(z.code for z in SOLDATI_ZONES) - frozenset(z.code for z in BLUE_ZONES)
#: Every code a zone may have (the drop-down of a "zones as scored" exam).
ALL_CODES = tuple(z.code for z in SOLDATI_ZONES)


def scheme_for(protocol: int | None, codes: Iterable[str] = ()) -> tuple[Zone, ...]:
    """The zones of an exam: its protocol's, or with none ("zones as scored") the BLUE
    points unless one of ``codes`` is Soldati's only (``R4``..``R7``, ``L4``..``L7``)."""
    if protocol is not None:
        return SCHEMES[protocol]
    return SOLDATI_ZONES if any(c in SOLDATI_ONLY for c in codes) else BLUE_ZONES


def zone_named(code: str, scheme: Iterable[Zone]) -> Zone | None:
    return next((z for z in scheme if z.code == code), None)


def choices_for(protocol: int | None) -> tuple[str, ...]:
    """The codes a clinician may choose for a clip of an exam of ``protocol``."""
    return tuple(z.code for z in SCHEMES[protocol]) if protocol is not None else ALL_CODES


_CODE_RE = re.compile(r"(?<![A-Za-z0-9])([LR])([1-7])(?![0-9])", re.IGNORECASE)
_SIDES = {"right": "R", "rt": "R", "r": "R", "left": "L", "lt": "L", "l": "L"}
_REGIONS = {
    "anterior": "anterior", "ant": "anterior",
    "lateral": "lateral", "lat": "lateral",
    "posterior": "posterior", "post": "posterior",
}  # fmt: skip
_LEVELS = {
    "upper": "upper", "up": "upper", "superior": "upper", "sup": "upper",
    "middle": "middle", "mid": "middle",
    "lower": "lower", "low": "lower", "inferior": "lower", "inf": "lower", "basal": "lower", "base": "lower",
}  # fmt: skip


def _one(found: Iterable[str]) -> str | None:
    values = set(found)
    return values.pop() if len(values) == 1 else None


def _from_words(stem: str, protocol: int | None) -> str | None:
    words = [w for w in re.split(r"[^a-z]+", stem.lower()) if w]
    side = _one(_SIDES[w] for w in words if w in _SIDES)
    if side is None:
        return None
    region = _one(_REGIONS[w] for w in words if w in _REGIONS)
    level = _one(_LEVELS[w] for w in words if w in _LEVELS)
    if "plaps" in words and region is None:
        blue: tuple[Zone, ...] = tuple(z for z in BLUE_ZONES if z.side == side and z.region == "posterolateral")
    elif "blue" in words and region is None and level in ("upper", "lower"):
        blue = tuple(z for z in BLUE_ZONES if z.side == side and z.region == "anterior" and z.level == level)
    else:
        blue = ()
    if blue:
        return blue[0].code if protocol in (None, 6) else None
    if region is None or level is None or protocol == 6:
        return None
    return next((z.code for z in SOLDATI_ZONES if (z.side, z.region, z.level) == (side, region, level)), None)


def zone_from_name(path: str | os.PathLike[str], protocol: int | None = None) -> str | None:
    """The zone's code read from a clip's file name (see the module's patterns), or None
    when the name names no zone of the protocol, or more than one."""
    stem = Path(path).stem
    codes = {f"{m.group(1).upper()}{m.group(2)}" for m in _CODE_RE.finditer(stem)}
    if codes:
        code = _one(codes)
        return code if code is not None and code in choices_for(protocol) else None
    return _from_words(stem, protocol)


def normalise_zone(text: str, protocol: int | None = None) -> str | None:
    """A zone as a person writes it (``"l2"``, ``"R 5"``, ``"right lateral upper"``) as its
    code, or None when it names no zone of the protocol."""
    t = text.strip()
    m = re.fullmatch(r"([LRlr])\s*([1-7])", t)
    if m:
        code = f"{m.group(1).upper()}{m.group(2)}"
        return code if code in choices_for(protocol) else None
    return _from_words(t, protocol)


class ZoneRuleError(ValueError):
    """``--zone-from`` cannot be used: one line naming it and the reason."""


def zone_rule(spec: str, protocol: int | None = None) -> Callable[[str], str | None]:
    """``--zone-from``: a ``clip,zone`` CSV (an existing file; ``clip`` as given, or its file
    name, or its name without extension) or a regular expression whose group ``zone`` (else
    its first group, else the whole match) in the clip's path is the zone. The rule returns
    the zone's code for a clip, or None (the name is then read as :func:`zone_from_name` does)."""
    if os.path.isfile(spec):
        return _csv_rule(spec, protocol)
    try:
        rx = re.compile(spec)
    except re.error as exc:
        raise ZoneRuleError(f"--zone-from {spec}: neither a CSV file nor a regular expression ({exc})") from exc

    def rule(clip: str) -> str | None:
        m = rx.search(clip)
        if m is None:
            return None
        text = m.group("zone") if "zone" in rx.groupindex else m.group(1) if rx.groups else m.group(0)
        return normalise_zone(text or "", protocol)

    return rule


def _csv_rule(path: str, protocol: int | None) -> Callable[[str], str | None]:
    table: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for line, row in enumerate(reader, start=1):
                if not row or all(not c.strip() for c in row):
                    continue
                if line == 1 and [c.strip().lower() for c in row[:2]] == ["clip", "zone"]:
                    continue
                if len(row) < 2:
                    raise ZoneRuleError(f"{path}: line {line}: expected clip,zone")
                code = normalise_zone(row[1], protocol)
                if code is None:
                    raise ZoneRuleError(f"{path}: line {line}: {row[1].strip()!r} is no zone of the protocol")
                table[row[0].strip()] = code
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ZoneRuleError(f"{path}: cannot be read as a clip,zone CSV ({exc})") from exc

    def rule(clip: str) -> str | None:
        p = Path(clip)
        for key in (clip, p.name, p.stem):
            if key in table:
                return table[key]
        return None

    return rule
