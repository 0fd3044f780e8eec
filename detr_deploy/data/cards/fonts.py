"""Font discovery (matplotlib's fonts and ``/usr/share/fonts``) grouped into families with weights and styles."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Tuple

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


def _font_paths() -> List[str]:
    paths: List[str] = []
    try:
        import matplotlib

        paths += sorted(glob.glob(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "*.ttf")))
    except Exception:  # pragma: no cover - matplotlib is a dependency
        pass
    for pattern in ("/usr/share/fonts/**/*.ttf", "/usr/share/fonts/**/*.otf"):
        paths += sorted(glob.glob(pattern, recursive=True))
    return paths


@lru_cache(maxsize=1)
def _font_families() -> Tuple[_Family, ...]:
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
        if regular is None:
            continue
        bold = found.get((family, "bold"), regular)
        italic = found.get((family, "italic"), regular)
        lower = family.lower()
        if "mono" in lower:
            weight = 0.4
        elif "condensed" in lower and "sans" in lower:
            weight = 4.0
        elif "sans" in lower:
            weight = 6.0
        elif "serif" in lower or "stix" in lower:
            weight = 0.9
        else:
            weight = 2.0
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
    if not families:  # pragma: no cover - matplotlib always ships DejaVu
        raise RuntimeError("no usable TrueType fonts found (matplotlib's DejaVu fonts are expected)")
    return tuple(families)


@lru_cache(maxsize=2048)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, max(4, int(size)), layout_engine=_LAYOUT)
