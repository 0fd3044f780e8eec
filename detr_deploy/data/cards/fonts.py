"""The fonts cards are drawn with, grouped into families with weights and styles.

Only fonts that pip installs are used, never the system's, so a card renders identically on every
machine: matplotlib's DejaVu family plus four open-licensed UI sans families from PyPI (Roboto,
Apache 2.0; Lato, Source Sans Pro and Hanken Grotesk, SIL OFL 1.1; each package carries its
licence), close to the Segoe UI / Helvetica / Roboto / Lato text of real card hosts.
"""

from __future__ import annotations

import glob
import os
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from PIL import ImageFont

_LAYOUT = ImageFont.Layout.BASIC  # deterministic and fast; no complex scripts are drawn


@dataclass(frozen=True)
class _Family:
    name: str
    regular: str
    bold: str
    italic: str
    bold_italic: str
    light: str
    weight: float  # how often the family is picked for a card


_SKIP_FONT = (
    "sym",
    "nonuni",
    "math",
    "lastresort",
    "last resort",
    "display",
    "cmex",
    "cmsy",
    "cmmi",
    "cmb10",
    "cmr10",
    "cmss10",
    "cmti10",
    "cmtt10",
    "emoji",
    "icon",
    "awesome",
    "wingding",
    "dingbat",
)


# pip packages that ship .ttf/.otf files in their ``files`` folder (requirements.txt pins them)
FONT_PACKAGES = ("font_roboto", "font_lato", "font_source_sans_pro", "font_hanken_grotesk")


def _font_paths() -> List[str]:
    import importlib

    import matplotlib

    paths = sorted(glob.glob(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "*.ttf")))
    for package in FONT_PACKAGES:
        try:
            folder = os.path.join(os.path.dirname(importlib.import_module(package).__file__), "files")
        except ImportError as error:
            raise RuntimeError(
                f"the card generator needs the font package {package!r} (pip install -r requirements.txt)"
            ) from error
        # one file per style: the .ttf where a package ships both .ttf and .otf
        found = {}
        for path in sorted(glob.glob(os.path.join(folder, "*.otf"))) + sorted(glob.glob(os.path.join(folder, "*.ttf"))):
            found[os.path.splitext(os.path.basename(path))[0]] = path
        paths += sorted(found.values())
    return paths


# how often a family is picked: mostly UI sans faces, as real card hosts use
_FAMILY_WEIGHTS = {
    "Roboto": 5.0,
    "Source Sans Pro": 4.0,
    "Lato": 3.0,
    "DejaVu Sans": 3.0,
    "Hanken Grotesk": 2.0,
    "DejaVu Serif": 0.6,
    "DejaVu Sans Mono": 0.3,
    "STIXGeneral": 0.3,
}


# None: every family found; else only these (the realism ablation renders single-font cards)
_FAMILY_FILTER: Optional[Tuple[str, ...]] = None


@contextmanager
def only_font_families(names: Sequence[str]) -> Iterator[None]:
    """Draw the cards rendered inside this block with these font families only."""
    global _FAMILY_FILTER
    wanted = tuple(names)
    if not _families_for(wanted):
        raise ValueError(f"none of the font families {list(wanted)} is installed")
    previous, _FAMILY_FILTER = _FAMILY_FILTER, wanted
    try:
        yield
    finally:
        _FAMILY_FILTER = previous


def _font_families() -> Tuple[_Family, ...]:
    return _families_for(_FAMILY_FILTER)


@lru_cache(maxsize=4)
def _families_for(only: Optional[Tuple[str, ...]]) -> Tuple[_Family, ...]:
    found: Dict[Tuple[str, str], str] = {}
    for path in _font_paths():
        base = os.path.basename(path).lower()
        if any(token in base for token in _SKIP_FONT):
            continue
        try:
            family, style = ImageFont.truetype(path, 16, layout_engine=_LAYOUT).getname()
        except Exception:
            continue
        if not family or any(token in family.lower() for token in _SKIP_FONT):
            continue
        tokens = (style or "Regular").lower().replace("-", " ").split()
        if "condensed" in tokens:
            family += " Condensed"
            tokens = [t for t in tokens if t != "condensed"]
        if "medium" in tokens or "black" in tokens:  # between the four slots a card uses
            continue
        bold = "bold" in tokens or "semibold" in tokens
        italic = "italic" in tokens or "oblique" in tokens
        light = any(t in tokens for t in ("light", "extralight", "thin"))
        rest = [
            t
            for t in tokens
            if t
            not in (
                "bold",
                "semibold",
                "italic",
                "oblique",
                "light",
                "extralight",
                "thin",
                "regular",
                "book",
                "roman",
                "normal",
                "medium",
            )
        ]
        if rest:
            continue
        slot = (
            "light"
            if light
            else ("bold_italic" if bold and italic else "bold" if bold else "italic" if italic else "regular")
        )
        found.setdefault((family, slot), path)
    families = []
    for family in sorted({fam for fam, _ in found}):
        regular = found.get((family, "regular"))
        if regular is None or (only is not None and family not in only):
            continue
        bold = found.get((family, "bold"), regular)
        italic = found.get((family, "italic"), regular)
        weight = _FAMILY_WEIGHTS.get(family, 1.0)
        families.append(
            _Family(
                family,
                regular,
                bold,
                italic,
                found.get((family, "bold_italic"), bold),
                found.get((family, "light"), regular),
                weight,
            )
        )
    if not families and only is not None:
        return ()
    if not families:  # pragma: no cover - matplotlib always ships DejaVu
        raise RuntimeError("no usable TrueType fonts found (matplotlib's DejaVu fonts are expected)")
    return tuple(families)


@lru_cache(maxsize=2048)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, max(4, int(size)), layout_engine=_LAYOUT)
