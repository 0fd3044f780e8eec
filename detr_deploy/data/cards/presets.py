"""Presets shared by the templates and the random compositions: TextBlock kinds, action captions, icon rows."""

from __future__ import annotations

from typing import List, Optional, Sequence

from detr_deploy.data.cards.elements import Column, ColumnSet, TextBlock, _Ctx, _El


def _tb(ctx: _Ctx, kind: str, text: Optional[str] = None, **kw) -> TextBlock:
    """Common TextBlock presets."""
    tx = ctx.text
    if kind == "title":
        return TextBlock(
            text or tx.title(2, 5),
            kw.pop("size", ctx.rng.choice(["large", "large", "medium", "extraLarge"])),
            kw.pop("weight", "bolder"),
            title_font=True,
            **kw,
        )
    if kind == "subtitle":
        return TextBlock(
            text or tx.title(2, 6),
            kw.pop("size", "medium"),
            kw.pop("weight", ctx.rng.choice(["bolder", "default"])),
            **kw,
        )
    if kind == "para":
        return TextBlock(text or tx.paragraph(1, 3), kw.pop("size", "default"), **kw)
    if kind == "caption":
        return TextBlock(
            text or ctx.rng.choice([tx.date(), tx.time(), f"{tx.date()} {tx.time()}", tx.sentence(2, 6)]),
            kw.pop("size", "small"),
            color=kw.pop("color", "subtle"),
            **kw,
        )
    return TextBlock(text or tx.sentence(3, 8), **kw)


def _actions(ctx: _Ctx, lo: int = 1, hi: int = 3) -> List[str]:
    titles: List[str] = []
    for _ in range(ctx.rng.randint(lo, hi)):
        label = ctx.text.label()
        if label not in titles:
            titles.append(label)
    return titles or ["Submit"]


def _beside(side: _El, items: Sequence[_El], **kw) -> ColumnSet:
    """``side`` (an image or icon) in an auto-width column with ``items`` stacked next to it, both centred."""
    return ColumnSet([Column([side], "auto", "center"), Column(items, "stretch", "center")], **kw)
