"""Input and action elements: ChoiceSet (radio buttons, checkboxes), Input.Text, star Rating, ActionSet."""

from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Sequence, Tuple

from PIL import Image

from detr_deploy.data.cards import realism
from detr_deploy.data.cards.elements import TextBlock, _Ctx, _El, _ellipsize
from detr_deploy.data.cards.masks import (
    _chevron_mask,
    _ellipse_mask,
    _rrect_mask,
    _rring_mask,
    _star_mask,
    _star_size,
    _threshold_bbox,
    _tick_mask,
)
from detr_deploy.data.cards.theme import _mix
from detr_deploy.data.classes import ACTIONSET, CHECKBOX, RADIO, RATING, TEXTBOX


def _draw_control(ctx: _Ctx, kind: str, x: int, y: int, s: int, checked: bool, style: int) -> None:
    t = ctx.theme
    bg = t.input_bg
    border_t = max(1, int(round(s / 14)))
    if ctx.pale_glyphs:
        t = dataclasses.replace(t, control_border=_mix(t.control_border, bg, 0.6), accent=_mix(t.accent, bg, 0.5))
    if kind == "radio":
        if checked and style == 1:  # filled accent disc with a white centre dot (Fluent / Windows 11)
            ctx.fill(t.accent, x, y, _ellipse_mask(s, s))
            d = max(2, int(s * 0.42)) | 0
            o = (s - d) // 2
            ctx.fill((255, 255, 255), x + o, y + o, _ellipse_mask(d, d))
            return
        ctx.fill(bg, x, y, _ellipse_mask(s, s))
        ring = t.accent if (checked and style != 2) else t.control_border
        ctx.fill(ring, x, y, _ellipse_mask(s, s, border_t))
        if checked:
            d = max(2, int(round(s * (0.5 if style == 0 else 0.45))))
            o = (s - d) // 2
            ctx.fill(t.accent if style != 2 else t.text, x + o, y + o, _ellipse_mask(d, d))
    else:
        r = ctx.rng.choice([0, 1, 2, 3]) if style != 1 else 2
        r = min(r, s // 4)
        if checked and style != 2:
            ctx.fill(t.accent, x, y, _rrect_mask(s, s, r))
            ctx.fill((255, 255, 255), x, y, _tick_mask(s, 0.12))
            return
        ctx.fill(bg, x, y, _rrect_mask(s, s, r))
        ctx.fill(t.control_border, x, y, _rring_mask(s, s, r, border_t))
        if checked:
            ctx.fill(t.text, x, y, _tick_mask(s, 0.12))


class ChoiceSet(_El):
    """Expanded Input.ChoiceSet (radio buttons) or multi-select / Input.Toggle (checkboxes)."""

    def __init__(
        self,
        choices: Sequence[str],
        multi: bool = False,
        selected: Sequence[int] = (),
        gap: float = 10,
        size: Optional[float] = None,
        text_size: str = "default",
    ):
        self.choices, self.multi, self.selected = list(choices), multi, set(selected)
        self.gap, self.size, self.text_size = gap, size, text_size
        self.glyph_factor: Optional[float] = None

    def _s(self, ctx: _Ctx) -> int:
        if self.size:
            return ctx.px(self.size)
        if self.glyph_factor is None:
            self.glyph_factor = realism.glyph_factor(ctx.rng) if realism.enabled() else 1.15
        return ctx.px(ctx.sizes[self.text_size] * self.glyph_factor)

    def natural_width(self, ctx: _Ctx) -> int:
        s = self._s(ctx)
        return s + ctx.px(8) + max(TextBlock(c, self.text_size).natural_width(ctx) for c in self.choices)

    def measure(self, ctx: _Ctx, width: int) -> int:
        s = self._s(ctx)
        self.s = s
        self.label_gap = ctx.px(8)
        if realism.enabled() and ctx.rng.random() < realism.WIDE_LABEL_GAP_SHARE:
            self.label_gap = ctx.px(ctx.rng.uniform(16, 48))
        self.blocks = [TextBlock(c, self.text_size) for c in self.choices]
        self.rows = []
        total = 0
        for i, block in enumerate(self.blocks):
            th = block.measure(ctx, max(20, width - s - self.label_gap))
            font = block._font(ctx)
            lh, _ = block._line_height(ctx, font)
            rh = max(s, th)
            self.rows.append((total, rh, lh))
            total += rh + (ctx.px(self.gap) if i < len(self.blocks) - 1 else 0)
        self.h = total
        self.style = ctx.rng.choice([0, 0, 1, 2])
        return total

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        s = self.s
        for i, (block, (ry, _, lh)) in enumerate(zip(self.blocks, self.rows, strict=False)):
            ty = y + ry + max(0, (s - lh) // 2) if lh < s else y + ry
            cy = y + ry + max(0, (lh - s) // 2) if lh >= s else y + ry
            _draw_control(ctx, "check" if self.multi else "radio", x, cy, s, i in self.selected, self.style)
            block.do_label = False  # pic2card boxes a choice as one: the glyph and its label text
            block.draw(ctx, x + s + self.label_gap, ty, max(20, width - s - self.label_gap))
            box = (x, cy, x + s, cy + s)
            if block.ink is not None:
                box = (x, min(cy, block.ink[1]), block.ink[2], max(cy + s, block.ink[3]))
            ctx.label_text(box, CHECKBOX if self.multi else RADIO, block.em)


class InputText(_El):
    """Input.Text / Number / Date / Time or a compact ChoiceSet: the frame is not labelled, the
    placeholder or value text inside it is a textbox (as in pic2card's labels)."""

    def __init__(self, placeholder: str, lines: int = 1, kind: str = "text", value: bool = False):
        self.placeholder, self.lines, self.kind, self.value = placeholder, lines, kind, value

    def natural_width(self, ctx: _Ctx) -> int:
        return ctx.px(180)

    def measure(self, ctx: _Ctx, width: int) -> int:
        font = ctx.font("default")
        lh = int(font.size * ctx.line_factor)
        self.h = max(ctx.px(30), lh + ctx.px(14)) + (self.lines - 1) * lh
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        t = ctx.theme
        r = min(ctx.px(t.button_radius if t.button_radius < 10 else 4), 6)
        style = ctx.rng.random()
        ctx.fill(t.input_bg, x, y, _rrect_mask(width, self.h, r))
        if style < 0.75:
            ctx.fill(t.input_border, x, y, _rring_mask(width, self.h, r, 1))
        else:  # Fluent style: only a bottom border
            ctx.fill(
                t.input_border,
                x,
                y,
                _rring_mask(width, self.h, r, 1) if style < 0.85 else Image.new("L", (width, 1), 60),
            )
            ctx.fill(t.control_border, x, y + self.h - 1, Image.new("L", (width, 1), 255))
        pad = ctx.px(8)
        text_w = width - 2 * pad
        if self.kind in ("date", "time", "dropdown"):
            icon = min(ctx.px(16), self.h - 4)
            icon_mask = _chevron_mask(icon)
            ctx.fill(t.subtle, x + width - pad - icon, y + (self.h - icon) // 2, icon_mask)
            text_w -= icon + pad
        block = TextBlock(
            self.placeholder,
            "default",
            color="default" if self.value else t.placeholder,
            wrap=self.lines > 1,
            max_lines=self.lines,
            label=True,
        )
        block.measure(ctx, max(20, text_w))
        font = block._font(ctx)
        lh, _ = block._line_height(ctx, font)
        top = (min(self.h, ctx.px(30) if self.lines == 1 else self.h) - lh) // 2 if self.lines == 1 else pad // 2 + 2
        block.draw(ctx, x + pad, y + max(1, top), max(20, text_w))


class Rating(_El):
    def __init__(
        self,
        value: float,
        size: float = 16,
        value_text: bool = False,
        count: Optional[str] = None,
        gap: float = 3,
        align: str = "left",
        count_color: str = "subtle",
    ):
        self.value, self.size, self.value_text, self.count = value, size, value_text, count
        self.gap, self.align, self.count_color = gap, align, count_color

    def _parts(self, ctx: _Ctx) -> Tuple[int, int, int, List[TextBlock]]:
        sh = ctx.px(self.size)
        sw, _ = _star_size(sh)
        gap = ctx.px(self.gap)
        texts = []
        if self.value_text:
            texts.append(TextBlock(f"{self.value:.1f}", "default", "bolder"))
        if self.count:
            texts.append(
                TextBlock(self.count, "small" if ctx.rng.random() < 0.5 else "default", color=self.count_color)
            )
        return sw, sh, gap, texts

    def natural_width(self, ctx: _Ctx) -> int:
        sw, sh, gap, texts = self._parts(ctx)
        return 5 * sw + 4 * gap + sum(t.natural_width(ctx) + ctx.px(6) for t in texts)

    def measure(self, ctx: _Ctx, width: int) -> int:
        sw, sh, gap, texts = self._parts(ctx)
        while 5 * sw + 4 * gap > width and sh > 8:
            sh -= 1
            sw, _ = _star_size(sh)
        self.sw, self.sh, self.g = sw, sh, gap
        stars_w = 5 * sw + 4 * gap
        self.texts = []
        used = stars_w
        for t in texts:
            tw = t.natural_width(ctx)
            if used + ctx.px(6) + tw <= width:
                self.texts.append((t, tw))
                used += ctx.px(6) + tw
        self.total_w = used
        heights = [sh] + [t.measure(ctx, tw) for t, tw in self.texts]
        self.h = max(heights)
        self.inner = ctx.rng.uniform(0.38, 0.5)
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        t = ctx.theme
        if self.align == "center":
            x += (width - self.total_w) // 2
        elif self.align == "right":
            x += width - self.total_w
        cx = x
        items = []
        value_first = self.value_text and self.texts and self.texts[0][0].text.replace(".", "").isdigit()
        if value_first:
            items.append(self.texts[0])
        items.append(None)
        items += [p for p in self.texts if not (value_first and p is self.texts[0])]
        for item in items:
            if item is None:
                sy = y + (self.h - self.sh) // 2
                full = _star_mask(self.sw, self.sh, self.inner)
                for i in range(5):
                    sx = cx + i * (self.sw + self.g)
                    frac = min(1.0, max(0.0, self.value - i))
                    if t.star_empty_style == "outline":
                        ctx.fill(t.star, sx, sy, _star_mask(self.sw, self.sh, self.inner, max(1, self.sh // 12)))
                    else:
                        ctx.fill(t.star_empty, sx, sy, full)
                    if frac > 0:
                        if frac >= 0.99:
                            ctx.fill(t.star, sx, sy, full)
                        else:
                            cut = int(round(self.sw * frac))
                            ctx.fill(t.star, sx, sy, full.crop((0, 0, cut, self.sh)))
                ink = _threshold_bbox(full) or (0, 0, self.sw, self.sh)
                last = cx + 4 * (self.sw + self.g)
                ctx.label((cx + ink[0], sy + ink[1], last + ink[2], sy + ink[3]), RATING)
                cx += 5 * self.sw + 4 * self.g + ctx.px(6)
            else:
                block, tw = item
                block.draw(ctx, cx, y + (self.h - block.h) // 2, tw)
                cx += tw + ctx.px(6)


class ActionSet(_El):
    def __init__(
        self,
        titles: Sequence[str],
        vertical: bool = False,
        align: str = "left",
        stretch: bool = False,
        style: Optional[str] = None,
        size: str = "default",
    ):
        self.titles, self.vertical, self.align, self.stretch = list(titles), vertical, align, stretch
        self.style, self.size = style, size

    def _font(self, ctx: _Ctx):
        return ctx.font(self.size, self.weight)

    def measure(self, ctx: _Ctx, width: int) -> int:
        t = ctx.theme
        self.st = self.style or t.button_style
        self.weight = "bolder" if (self.st in ("teams", "link") or ctx.rng.random() < 0.4) else "default"
        font = self._font(ctx)
        self.bh = ctx.px(ctx.rng.choice([28, 30, 32, 32, 36])) if self.st != "link" else int(font.size * 1.5)
        self.pad = ctx.px(ctx.rng.choice([10, 12, 16, 20])) if self.st != "link" else 0
        self.gap = ctx.px(ctx.rng.choice([8, 8, 10, 12])) if self.st != "link" else ctx.px(ctx.rng.choice([16, 20, 24]))
        minw = ctx.px(ctx.rng.choice([0, 60, 80])) if self.st != "link" else 0
        self.bw = [max(minw, int(math.ceil(font.getlength(s) * ctx.stretch)) + 2 * self.pad + 6) for s in self.titles]
        total = sum(self.bw) + self.gap * (len(self.bw) - 1)
        each = (width - self.gap * (len(self.bw) - 1)) // len(self.bw)
        if self.stretch and each < max(self.bw) * (0.9 if ctx.rng.random() < 0.3 else 1.0):
            self.stretch = False  # equal-width buttons would cut the captions
        if not self.vertical and not self.stretch and total > width:
            if len(self.titles) > 1 and each >= max(self.bw) * 0.85:
                self.stretch = True
            else:
                self.vertical = True
        if self.vertical:
            if self.stretch or self.st != "link":
                self.bw = [width if self.stretch or ctx.rng.random() < 0.7 else min(width, max(self.bw))] * len(self.bw)
            self.bw = [min(width, w) for w in self.bw]
            self.h = len(self.bw) * self.bh + (len(self.bw) - 1) * ctx.px(8)
        else:
            if self.stretch:
                each = (width - self.gap * (len(self.bw) - 1)) // len(self.bw)
                self.bw = [each] * len(self.bw)
            self.h = self.bh
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        t = ctx.theme
        font = self._font(ctx)
        r = min(ctx.px(t.button_radius) if t.button_radius < 99 else self.bh // 2, self.bh // 2)
        positions = []
        if self.vertical:
            for i, w in enumerate(self.bw):
                bx = x + ((width - w) // 2 if self.align == "center" else 0)
                positions.append((bx, y + i * (self.bh + ctx.px(8)), w))
        else:
            total = sum(self.bw) + self.gap * (len(self.bw) - 1)
            bx = (
                x + (width - total) // 2
                if self.align == "center"
                else x + (width - total if self.align == "right" else 0)
            )
            for w in self.bw:
                positions.append((bx, y, w))
                bx += w + self.gap
        ink: List[Tuple[int, int, int, int]] = []
        for i, ((bx, by, w), title) in enumerate(zip(positions, self.titles, strict=False)):
            st = self.st
            if st == "primary_first":
                st = "filled" if i == 0 else "outline"
            if st == "teams" and i == 0 and ctx.rng.random() < 0.3:
                st = "filled"
            text_colour = t.text
            if st == "filled":
                ctx.fill(t.accent, bx, by, _rrect_mask(w, self.bh, r))
                text_colour = (255, 255, 255)
            elif st == "outline":
                ctx.fill(t.accent, bx, by, _rring_mask(w, self.bh, r, 1))
                text_colour = t.accent
            elif st == "teams":
                ctx.fill(t.input_bg if not t.dark else t.card_bg, bx, by, _rrect_mask(w, self.bh, r))
                ctx.fill(t.input_border, bx, by, _rring_mask(w, self.bh, r, 1))
            elif st == "tint":
                ctx.fill(_mix(t.accent, t.card_bg, 0.85), bx, by, _rrect_mask(w, self.bh, r))
                text_colour = t.accent
            elif st == "grey":
                ctx.fill(
                    t.emphasis_bg if t.emphasis_bg != t.card_bg else _mix(t.card_bg, (128, 128, 128), 0.15),
                    bx,
                    by,
                    _rrect_mask(w, self.bh, r),
                )
            elif st == "link":
                text_colour = t.accent
            label = _ellipsize(title, font, max(10, w - 2 * self.pad - 4), ctx.stretch)
            block = TextBlock(
                label,
                self.size,
                self.weight,
                text_colour,
                wrap=False,
                align="center" if st != "link" or self.vertical else "left",
                label=True,
            )
            block.measure(ctx, w)
            before = len(ctx.labels)
            block.draw(ctx, bx, by + (self.bh - block.h) // 2, w)
            del ctx.labels[before:]
            # pic2card labels each button as a textbox (the whole button; a link: its caption),
            # and the row of buttons is the action set
            if st == "link":
                if block.ink is not None:
                    ink.append(block.ink)
                    ctx.label_text(block.ink, TEXTBOX, block.em)
            else:
                ink.append((bx, by, bx + w, by + self.bh))
                ctx.label((bx, by, bx + w, by + self.bh), TEXTBOX)
        if ink:
            ctx.label(
                (min(b[0] for b in ink), min(b[1] for b in ink), max(b[2] for b in ink), max(b[3] for b in ink)),
                ACTIONSET,
            )
