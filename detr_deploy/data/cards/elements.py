"""The rendering context and the layout elements: TextBlock, Image, ImageSet, Container, ColumnSet, FactSet."""

from __future__ import annotations

import math
import random
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from detr_deploy.data.cards import realism
from detr_deploy.data.cards.fonts import _Family, _font, _font_families
from detr_deploy.data.cards.masks import _ellipse_mask, _rrect_mask, _threshold_bbox
from detr_deploy.data.cards.pictures import _icon_rgba, _picture
from detr_deploy.data.cards.text import _Text
from detr_deploy.data.cards.theme import _make_theme, _mix
from detr_deploy.data.classes import IMAGE, TEXTBOX, Color

# margins of text labels (left, top, right, bottom) in units of the font size, see _Ctx.label_text
TEXT_MARGIN = (0.22, 0.28, 0.5, 0.25)


class _Ctx:
    """Mutable state of one card rendering."""

    def __init__(self, rng: random.Random, nrng: np.random.Generator, width: int):
        self.rng = rng
        self.nrng = nrng
        self.text = _Text(rng)
        self.theme = _make_theme(rng)
        families = _font_families()
        self.family = rng.choices(families, weights=[f.weight for f in families])[0]
        self.title_family = self.family if rng.random() < 0.85 else rng.choice(families)
        self.scale = rng.uniform(0.85, min(1.6, 0.75 + width / 550))
        self.stretch = 1.0 if rng.random() < 0.45 else rng.uniform(0.82, 0.97)
        self.line_factor = rng.uniform(1.22, 1.45)
        self.sizes = {"small": 12, "default": 14, "medium": 17, "large": 21, "extraLarge": 26}
        if rng.random() < 0.4:
            jitter = rng.uniform(0.88, 1.15)
            self.sizes = {k: v * jitter for k, v in self.sizes.items()}
        self.spacings = {
            "none": 0,
            "small": 4,
            "default": 8,
            "medium": 16,
            "large": 28,
            "extraLarge": 40,
            "padding": 16,
        }
        self.width = width
        self.pad = self.px(rng.choice([12, 14, 15, 16, 16, 20]))
        self.content_w = width - 2 * self.pad
        self.img: Optional[Image.Image] = None
        self.labels: List[Tuple[float, float, float, float, int]] = []
        self.pale_glyphs = False
        if realism.enabled():  # extra draws only here, so the base generator's stream is unchanged
            self.line_factor = realism.line_factor(rng, self.line_factor)
            self.pale_glyphs = rng.random() < realism.PALE_GLYPH_SHARE

    def px(self, value: float) -> int:
        return max(1, int(round(value * self.scale)))

    def space(self, name: Union[str, int]) -> int:
        if isinstance(name, int):
            return name
        return 0 if name == "none" else self.px(self.spacings[name])

    def color(self, name: Union[str, Color]) -> Color:
        if isinstance(name, tuple):
            return name
        t = self.theme
        return {
            "default": t.text,
            "subtle": t.subtle,
            "accent": t.accent,
            "good": t.good,
            "warning": t.warning,
            "attention": t.attention,
            "light": (255, 255, 255),
            "dark": (0, 0, 0),
        }[name]

    def font(
        self, size: Union[str, float], weight: str = "default", italic: bool = False, family: Optional[_Family] = None
    ) -> ImageFont.FreeTypeFont:
        fam = family or self.family
        px = self.px(self.sizes[size]) if isinstance(size, str) else max(6, int(round(size)))
        if weight == "bolder":
            path = fam.bold_italic if italic else fam.bold
        elif weight == "lighter":
            path = fam.light if not italic else fam.italic
        else:
            path = fam.italic if italic else fam.regular
        return _font(path, px)

    def label(self, box: Tuple[float, float, float, float], cls: int) -> None:
        self.labels.append((float(box[0]), float(box[1]), float(box[2]), float(box[3]), cls))

    def label_text(self, box: Tuple[float, float, float, float], cls: int, em: float) -> None:
        """Label text (or a control with its text) as pic2card's annotators drew it: around the ink
        with a margin, measured on the real cards at about a quarter of the font size on the left,
        top and bottom and half of it on the right."""
        x0, y0, x1, y1 = box
        left, top, right, bottom = (m * em for m in TEXT_MARGIN)
        self.label(
            (
                math.floor(x0 - left),
                math.floor(y0 - top),
                math.ceil(x1 + right),
                math.ceil(y1 + bottom),
            ),
            cls,
        )

    def fill(self, color: Color, x: int, y: int, mask: Image.Image) -> None:
        self.img.paste(color, (x, y, x + mask.width, y + mask.height), mask)


class _El:
    spacing: Union[str, int] = "default"
    separator: bool = False
    h: int = 0

    def natural_width(self, ctx: _Ctx) -> Optional[int]:
        return None

    def measure(self, ctx: _Ctx, width: int) -> int:
        raise NotImplementedError

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        raise NotImplementedError

    def at(self, spacing: Union[str, int] = "default", separator: bool = False) -> "_El":
        self.spacing = spacing
        self.separator = separator
        return self


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float, stretch: float) -> List[str]:
    lines: List[str] = []
    for para in text.split("\n"):
        words = para.split(" ")
        line = ""
        for word in words:
            trial = word if not line else line + " " + word
            if not line or font.getlength(trial) * stretch <= width:
                line = trial
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def _ellipsize(text: str, font: ImageFont.FreeTypeFont, width: float, stretch: float) -> str:
    if font.getlength(text) * stretch <= width:
        return text
    while len(text) > 1 and font.getlength(text + "\u2026") * stretch > width:
        text = text[:-1].rstrip()
    return text + "\u2026"


class TextBlock(_El):
    def __init__(
        self,
        text: str,
        size: Union[str, float] = "default",
        weight: str = "default",
        color: Union[str, Color] = "default",
        wrap: bool = True,
        max_lines: int = 0,
        align: str = "left",
        italic: bool = False,
        label: bool = True,
        title_font: bool = False,
    ):
        self.text, self.size, self.weight, self.color = text, size, weight, color
        self.wrap, self.max_lines, self.align, self.italic = wrap, max_lines, align, italic
        self.do_label, self.title_font = label, title_font
        self.lines: List[str] = []
        self.templated = False

    def _font(self, ctx: _Ctx):
        return ctx.font(self.size, self.weight, self.italic, ctx.title_family if self.title_font else None)

    def _line_height(self, ctx: _Ctx, font) -> Tuple[int, int]:
        ascent, descent = font.getmetrics()
        lh = max(ascent + descent, int(round(font.size * ctx.line_factor)))
        return lh, (lh - ascent - descent) // 2

    def natural_width(self, ctx: _Ctx) -> int:
        font = self._font(ctx)
        return int(math.ceil(max(font.getlength(line) for line in self.text.split("\n")) * ctx.stretch)) + 2

    def measure(self, ctx: _Ctx, width: int) -> int:
        if realism.enabled() and not self.templated:
            self.text, self.templated = realism.template_text(ctx.rng, self.text), True
        font = self._font(ctx)
        if self.wrap:
            lines = _wrap(self.text, font, width - 2, ctx.stretch)
            if self.max_lines and len(lines) > self.max_lines:
                lines = lines[: self.max_lines]
                lines[-1] = _ellipsize(lines[-1] + " \u2026", font, width - 2, ctx.stretch)
        else:
            lines = [_ellipsize(self.text.split("\n")[0], font, width - 2, ctx.stretch)]
        self.lines = [line for line in lines if line.strip()] or ["-"]
        lh, _ = self._line_height(ctx, font)
        self.h = lh * len(self.lines)
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        font = self._font(ctx)
        lh, pad = self._line_height(ctx, font)
        stretch = ctx.stretch
        raw_w = int(math.ceil(width / stretch)) + 2
        mask = Image.new("L", (raw_w, self.h), 0)
        draw = ImageDraw.Draw(mask)
        for i, line in enumerate(self.lines):
            length = font.getlength(line)
            if self.align == "center":
                lx = (width / stretch - length) / 2
            elif self.align == "right":
                lx = width / stretch - length - 1
            else:
                lx = 0
            draw.text((max(0, int(lx)) + 1, i * lh + pad), line, font=font, fill=255)
        if stretch != 1.0:
            mask = mask.resize((width, self.h), Image.Resampling.BILINEAR, box=(0, 0, width / stretch, self.h))
        else:
            mask = mask.crop((0, 0, width, self.h))
        bbox = _threshold_bbox(mask)
        self.ink = None
        self.em = font.size
        if bbox is None:
            return
        ctx.fill(ctx.color(self.color), x, y, mask)
        self.ink = (x + bbox[0], y + bbox[1], x + bbox[2], y + bbox[3])
        if self.do_label:
            ctx.label_text(self.ink, TEXTBOX, font.size)


class ImageEl(_El):
    """An Image: fixed size (w, h in design px), or stretched to the width with an aspect ratio."""

    def __init__(
        self,
        w: float = 0,
        h: float = 0,
        kind: str = "auto",
        person: bool = False,
        align: str = "left",
        stretch: bool = False,
        aspect: float = 0.5,
        radius: int = 0,
        bleed: int = 0,
        icon: str = "auto",
    ):
        self.w, self.hh, self.kind, self.person, self.align = w, h, kind, person, align
        self.icon = icon
        self.stretch, self.aspect, self.radius, self.bleed = stretch, aspect, radius, bleed
        self.size = (0, 0)

    def natural_width(self, ctx: _Ctx) -> Optional[int]:
        return None if self.stretch else ctx.px(self.w)

    def measure(self, ctx: _Ctx, width: int) -> int:
        if self.stretch:
            w = width + 2 * self.bleed
            h = max(8, int(round(w * self.aspect)))
        else:
            w, h = ctx.px(self.w), ctx.px(self.hh or self.w)
            if w > width:
                h, w = max(4, int(h * width / w)), width
        self.size = (w, h)
        self.h = h
        return h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        w, h = self.size
        if self.stretch:
            x -= self.bleed
        elif self.align == "center":
            x += (width - w) // 2
        elif self.align == "right":
            x += width - w
        if self.kind == "icon":
            icon = _icon_rgba(ctx, w, self.icon)
            if icon.size != (w, h):
                icon = icon.resize((w, h), Image.Resampling.LANCZOS)
            alpha = icon.getchannel("A")
            bbox = _threshold_bbox(alpha)
            if bbox is None:
                return
            ctx.img.paste(icon.convert("RGB"), (x, y), alpha)
            ctx.label((x + bbox[0], y + bbox[1], x + bbox[2], y + bbox[3]), IMAGE)
            return
        pic = _picture(ctx, w, h, "avatar" if (self.person and self.kind == "auto") else self.kind)
        if self.person:
            mask = _ellipse_mask(w, h)
        elif self.radius:
            mask = _rrect_mask(w, h, ctx.px(self.radius))
        else:
            mask = None
        ctx.img.paste(pic, (x, y), mask)
        ctx.label((x, y, x + w, y + h), IMAGE)


class ImageSet(_El):
    def __init__(self, count: int, size: float, kind: str = "auto", person: bool = False, gap: float = 8):
        self.count, self.size, self.kind, self.person, self.gap = count, size, kind, person, gap
        self.positions: List[Tuple[int, int]] = []

    def measure(self, ctx: _Ctx, width: int) -> int:
        s, gap = ctx.px(self.size), ctx.px(self.gap)
        s = min(s, width)
        self.s = s
        self.positions = []
        x = y = 0
        for _ in range(self.count):
            if x + s > width and x > 0:
                x, y = 0, y + s + gap
            self.positions.append((x, y))
            x += s + gap
        self.h = y + s
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        for px_, py_ in self.positions:
            el = ImageEl(kind=self.kind, person=self.person)
            el.size = (self.s, self.s)
            el.draw(ctx, x + px_, y + py_, self.s)


def _stack_heights(ctx: _Ctx, items: Sequence[_El], width: int) -> Tuple[int, List[int]]:
    total, gaps = 0, []
    for i, el in enumerate(items):
        gap = 0
        if i > 0:
            gap = ctx.space(el.spacing)
            if el.separator:
                gap = max(gap, ctx.px(8)) * 2 + 1
        gaps.append(gap)
        total += gap + el.measure(ctx, width)
    return total, gaps


class Container(_El):
    def __init__(
        self,
        items: Sequence[_El],
        style: Optional[str] = None,
        padding: Optional[float] = None,
        bleed: int = 0,
        radius: int = 0,
        bg: Optional[Color] = None,
    ):
        self.items, self.style, self.bleed, self.radius, self.bg = list(items), style, bleed, radius, bg
        self.padding = padding

    def _pad(self, ctx: _Ctx) -> int:
        if self.padding is not None:
            return ctx.px(self.padding) if self.padding else 0
        return ctx.px(12) if (self.style or self.bg) else 0

    def _bg(self, ctx: _Ctx) -> Optional[Color]:
        if self.bg is not None:
            return self.bg
        t = ctx.theme
        if self.style == "emphasis":
            return t.emphasis_bg
        if self.style in ("accent", "good", "attention", "warning"):
            base = ctx.color(self.style)
            return _mix(base, t.card_bg, 0.82 if not t.dark else 0.7)
        return None

    def natural_width(self, ctx: _Ctx) -> Optional[int]:
        widths = [el.natural_width(ctx) for el in self.items]
        if any(w is None for w in widths) or not widths:
            return None
        return max(widths) + 2 * self._pad(ctx)

    def measure(self, ctx: _Ctx, width: int) -> int:
        pad = self._pad(ctx)
        inner = width + 2 * self.bleed - 2 * pad
        total, self.gaps = _stack_heights(ctx, self.items, max(10, inner))
        self.h = total + 2 * pad
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        pad = self._pad(ctx)
        bg = self._bg(ctx)
        x0, w = x - self.bleed, width + 2 * self.bleed
        if bg is not None:
            ctx.fill(bg, x0, y, _rrect_mask(w, self.h, ctx.px(self.radius) if self.radius else 0))
        cy = y + pad
        for el, gap in zip(self.items, self.gaps, strict=False):
            if el.separator and gap:
                ctx.fill(ctx.theme.separator, x0 + pad, cy + gap // 2, Image.new("L", (w - 2 * pad, 1), 255))
            cy += gap
            el.draw(ctx, x0 + pad, cy, w - 2 * pad)
            cy += el.h


class Column:
    def __init__(
        self, items: Sequence[_El], width: Union[str, float] = "stretch", valign: str = "top", weight: float = 1.0
    ):
        self.items, self.width, self.valign, self.weight = list(items), width, valign, weight


class ColumnSet(_El):
    def __init__(
        self, columns: Sequence[Column], gap: float = 8, col_separator: bool = False, style: Optional[str] = None
    ):
        self.columns, self.gap, self.col_separator = list(columns), gap, col_separator
        self.style = style

    def natural_width(self, ctx: _Ctx) -> Optional[int]:
        total = 0
        for col in self.columns:
            if isinstance(col.width, tuple):
                total += int(col.width[1])
                continue
            if isinstance(col.width, (int, float)):
                total += ctx.px(col.width)
                continue
            widths = [el.natural_width(ctx) for el in col.items]
            if any(w is None for w in widths):
                return None
            total += max(widths or [0])
        return total + ctx.px(self.gap) * (len(self.columns) - 1)

    def measure(self, ctx: _Ctx, width: int) -> int:
        gap = ctx.px(self.gap)
        n = len(self.columns)
        avail = max(10 * n, width - gap * (n - 1))
        widths: List[Optional[int]] = [None] * n
        kinds = []
        for i, col in enumerate(self.columns):
            if isinstance(col.width, tuple):  # ("px", n): already in pixels
                widths[i] = int(col.width[1])
                kinds.append("fixed")
            elif isinstance(col.width, (int, float)):
                widths[i] = ctx.px(col.width)
                kinds.append("fixed")
            elif col.width == "auto":
                nat = [el.natural_width(ctx) for el in col.items]
                if any(v is None for v in nat):
                    kinds.append("stretch")
                else:
                    widths[i] = max(nat or [0])
                    kinds.append("auto")
            else:
                kinds.append("stretch")
        n_stretch = kinds.count("stretch")
        min_stretch = max(ctx.px(40), int(avail * (0.25 if n <= 2 else 0.15)))
        budget = avail - n_stretch * min_stretch
        for i in range(n):  # fixed first, then auto columns, each capped so the rest still fits
            if kinds[i] == "fixed":
                widths[i] = max(10, min(widths[i], budget - 10 * (n - 1)))
                budget -= widths[i]
        n_auto = kinds.count("auto")
        for i in range(n):
            if kinds[i] == "auto":
                cap = budget if n_auto == 1 else max(10, budget // n_auto)
                if n > 1:
                    cap = min(cap, int(avail * 0.7))
                widths[i] = max(10, min(widths[i], cap))
        used = sum(w for w in widths if w is not None)
        remaining = max(0, avail - used)
        weights = sum(self.columns[i].weight for i in range(n) if kinds[i] == "stretch") or 1.0
        for i in range(n):
            if kinds[i] == "stretch":
                widths[i] = max(10, int(remaining * self.columns[i].weight / weights))
        self.widths = [int(w) for w in widths]  # type: ignore[arg-type]
        self.col_heights = []
        self.col_gaps = []
        for col, w in zip(self.columns, self.widths, strict=False):
            total, gaps = _stack_heights(ctx, col.items, w)
            self.col_heights.append(total)
            self.col_gaps.append(gaps)
        self.h = max(self.col_heights or [0])
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        gap = ctx.px(self.gap)
        cx = x
        for i, (col, w, ch, gaps) in enumerate(
            zip(self.columns, self.widths, self.col_heights, self.col_gaps, strict=False)
        ):
            if i > 0 and self.col_separator:
                ctx.fill(ctx.theme.separator, cx - gap // 2 - 1, y, Image.new("L", (1, max(1, self.h)), 255))
            cy = y
            if col.valign == "center":
                cy += (self.h - ch) // 2
            elif col.valign == "bottom":
                cy += self.h - ch
            for el, g in zip(col.items, gaps, strict=False):
                if el.separator and g:
                    ctx.fill(ctx.theme.separator, cx, cy + g // 2, Image.new("L", (w, 1), 255))
                cy += g
                el.draw(ctx, cx, cy, w)
                cy += el.h
            cx += w + gap


class FactSet(_El):
    def __init__(
        self,
        facts: Sequence[Tuple[str, str]],
        title_weight: str = "bolder",
        gap: float = 6,
        title_color: str = "default",
        size: str = "default",
    ):
        self.facts, self.title_weight, self.gap, self.title_color, self.size = (
            list(facts),
            title_weight,
            gap,
            title_color,
            size,
        )

    def measure(self, ctx: _Ctx, width: int) -> int:
        titles = [TextBlock(t, self.size, self.title_weight, self.title_color) for t, _ in self.facts]
        tw = max(t.natural_width(ctx) for t in titles)
        tw = min(tw, int(width * 0.45))
        self.rows = []
        for title, (_, value) in zip(titles, self.facts, strict=False):
            row = ColumnSet([Column([title], ("px", tw)), Column([TextBlock(value, self.size)], "stretch")], gap=10)
            row.spacing = self.gap if self.rows else "none"
            self.rows.append(row)
        total, self.gaps = _stack_heights(
            ctx, [r.at(ctx.px(self.gap) if i else "none") for i, r in enumerate(self.rows)], width
        )
        self.h = total
        return total

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        cy = y
        for row, gap in zip(self.rows, self.gaps, strict=False):
            cy += gap
            row.draw(ctx, x, cy, width)
            cy += row.h
