"""Free compositions: random stacks of elements, column rows and containers, sized to the space they get."""

from __future__ import annotations

from typing import List

from detr_deploy.data.cards.controls import ActionSet, ChoiceSet, InputText, Rating
from detr_deploy.data.cards.elements import (
    Column,
    ColumnSet,
    Container,
    FactSet,
    ImageEl,
    ImageSet,
    TextBlock,
    _Ctx,
    _El,
)
from detr_deploy.data.cards.pictures import _weighted
from detr_deploy.data.cards.presets import _actions, _beside, _tb


def _short(ctx: _Ctx) -> str:
    tx, r = ctx.text, ctx.rng
    return r.choice([tx.title(1, 2), tx.name(), tx.money(), tx.date(), tx.number(), tx.city(), tx.time(), tx.label()])


def _narrow_block(ctx: _Ctx, avail: int) -> _El:
    """Something that fits a column about ``avail`` pixels wide."""
    r, tx = ctx.rng, ctx.text
    narrow = avail < 130
    mid = avail < 260
    kinds = {"short": 3, "caption": 1.5, "image": 1.2, "icon": 0.5, "rating": 0.5, "button": 0.5, "toggle": 0.4}
    if not narrow:
        kinds.update({"para": 1.5, "radio": 0.5, "check": 0.5, "bigtext": 0.5, "input": 0.4})
    if not mid:
        kinds.update({"facts": 0.6, "para": 2.5, "imageset": 0.3})
    kind = _weighted(r, kinds)
    if kind == "short":
        return TextBlock(
            _short(ctx),
            r.choice(["default", "default", "medium", "small"]),
            r.choice(["default", "bolder"]),
            color=r.choice(["default"] * 4 + ["subtle", "accent"]),
            align=r.choice(["left", "left", "center"]),
            wrap=r.random() < 0.7,
            max_lines=2,
        )
    if kind == "caption":
        return _tb(ctx, "caption", max_lines=2)
    if kind == "bigtext":
        return TextBlock(
            r.choice([tx.number(), tx.money(), f"{r.randint(1, 99)}%", f"{r.randint(-9, 99)}\u00b0"]),
            r.choice(["large", "extraLarge"]),
            r.choice(["bolder", "default", "lighter"]),
            color=r.choice(["default", "accent", "good", "attention"]),
        )
    if kind == "para":
        return _tb(ctx, "para", tx.sentence(4, 16), size=r.choice(["default", "small"]), max_lines=r.choice([0, 3, 4]))
    if kind == "image":
        size = min(avail, r.choice([32, 48, 56, 64, 80, 96, 120]))
        return ImageEl(
            size / ctx.scale,
            r.choice([0, 0, size * 0.75 / ctx.scale]),
            person=r.random() < 0.25,
            align=r.choice(["left", "center"]),
            radius=r.choice([0, 0, 0, 4]),
        )
    if kind == "icon":
        return ImageEl(r.choice([16, 20, 24, 32]), kind="icon", align=r.choice(["left", "center"]))
    if kind == "rating":
        return Rating(
            r.choice([2, 3, 3.5, 4, 4.5, 5]),
            r.choice([10, 12, 14, 16]),
            count=None if narrow else r.choice([None, f"({r.randint(1, 999)})"]),
        )
    if kind == "button":
        return ActionSet([tx.label()], stretch=r.random() < 0.3)
    if kind == "toggle":
        return ChoiceSet(
            [tx.title(1, 2) if mid else tx.sentence(2, 6).rstrip(".!?")],
            multi=True,
            selected=[0] if r.random() < 0.5 else [],
        )
    if kind in ("radio", "check"):
        n = r.randint(2, 4)
        return ChoiceSet(
            [tx.title(1, 2 if mid else 4) for _ in range(n)],
            multi=kind == "check",
            selected=[r.randrange(n)] if r.random() < 0.6 else [],
        )
    if kind == "input":
        return InputText(
            r.choice([tx.words(1, 2), "Enter a value", tx.date()]), kind=r.choice(["text", "date", "dropdown"])
        )
    if kind == "facts":
        return FactSet([(tx.title(1, 2), _short(ctx)) for _ in range(r.randint(2, 4))])
    return ImageSet(r.randint(2, 4), r.choice([32, 40, 48]), person=r.random() < 0.5, gap=4)


def _row_pattern(ctx: _Ctx, kind: str, avail: int) -> _El:
    r, tx = ctx.rng, ctx.text
    if kind == "row_header":
        return ColumnSet(
            [
                Column(
                    [
                        ImageEl(
                            r.choice([24, 32, 40, 48, 56]),
                            person=r.random() < 0.6,
                            kind=r.choice(["auto", "logo", "icon"]) if r.random() < 0.5 else "auto",
                        )
                    ],
                    "auto",
                    r.choice(["center", "top"]),
                ),
                Column(
                    [
                        TextBlock(
                            r.choice([tx.name(), tx.title(2, 4)]),
                            r.choice(["default", "medium"]),
                            "bolder",
                            max_lines=2,
                        ),
                        _tb(ctx, "caption", max_lines=1).at("none"),
                    ],
                    "stretch",
                    "center",
                ),
            ],
            gap=r.choice([8, 10, 12]),
        )
    if kind == "row_kv":
        return ColumnSet(
            [
                Column(
                    [
                        TextBlock(
                            tx.title(1, 3),
                            r.choice(["default", "small"]),
                            r.choice(["default", "bolder"]),
                            color=r.choice(["default", "subtle"]),
                            max_lines=2,
                        )
                    ],
                    "stretch",
                    "center",
                ),
                Column(
                    [TextBlock(_short(ctx), "default", r.choice(["default", "bolder"]), align="right", wrap=False)],
                    "auto",
                    "center",
                ),
            ]
        )
    if kind == "row_media":
        img = ImageEl(
            r.choice([48, 56, 64, 80, 96, 120]),
            r.choice([0, 0, 40, 60]),
            kind=r.choice(["auto", "photo", "landscape"]),
            radius=r.choice([0, 0, 4]),
        )
        text = [
            TextBlock(tx.sentence(2, 7).rstrip(".!?"), r.choice(["default", "medium"]), "bolder", max_lines=2),
            _tb(
                ctx,
                "para",
                tx.sentence(4, 14),
                size=r.choice(["small", "default"]),
                color=r.choice(["default", "subtle"]),
                max_lines=r.choice([2, 3]),
            ).at("small"),
        ]
        if r.random() < 0.3:
            text.append(
                Rating(
                    r.choice([3, 3.5, 4, 4.5, 5]),
                    r.choice([10, 12, 14]),
                    count=r.choice([None, f"({r.randint(1, 500)})"]),
                ).at("small")
            )
        cols = [Column([img], "auto"), Column(text, "stretch")]
        if r.random() < 0.3:
            cols.reverse()
        return ColumnSet(cols, gap=r.choice([8, 12, 16]))
    if kind == "row_stats":
        n = r.randint(2, 4 if avail > 360 else 3)
        cols = []
        for _ in range(n):
            cols.append(
                Column(
                    [
                        TextBlock(
                            r.choice(
                                [
                                    tx.number(),
                                    f"{r.randint(1, 99)}%",
                                    tx.money().split(".")[0],
                                    f"{r.randint(1, 9)}.{r.randint(0, 9)}k",
                                ]
                            ),
                            r.choice(["large", "extraLarge"]),
                            r.choice(["bolder", "default", "lighter"]),
                            align="center",
                            color=r.choice(["default", "accent"]),
                        ),
                        TextBlock(tx.title(1, 2), "small", color="subtle", align="center").at("none"),
                    ],
                    "stretch",
                )
            )
        return ColumnSet(cols, col_separator=r.random() < 0.3)
    if kind == "row_text2":
        return ColumnSet(
            [
                Column(
                    [
                        _tb(ctx, "subtitle", size="default", weight="bolder"),
                        _tb(ctx, "para", tx.sentence(4, 12), size="small").at("small"),
                    ],
                    "stretch",
                )
                for _ in range(2)
            ],
            gap=r.choice([12, 16, 20]),
        )
    if kind == "row_choices2":
        multi = r.random() < 0.5
        return ColumnSet(
            [
                Column(
                    [
                        ChoiceSet(
                            [tx.title(1, 2) for _ in range(r.randint(2, 4))],
                            multi=multi,
                            selected=[0] if r.random() < 0.4 else [],
                        )
                    ],
                    "stretch",
                )
                for _ in range(2)
            ]
        )
    if kind == "row_inputs2":
        return ColumnSet(
            [
                Column(
                    [
                        TextBlock(tx.title(1, 2), "default", r.choice(["default", "bolder"])),
                        InputText(
                            r.choice([tx.words(1, 2), tx.date(), "Select"]), kind=r.choice(["text", "date", "dropdown"])
                        ).at("small"),
                    ],
                    "stretch",
                )
                for _ in range(2)
            ],
            gap=r.choice([8, 12, 16]),
        )
    if kind == "row_images":
        n = r.randint(2, 4)
        aspect = r.uniform(0.6, 1.2)
        return ColumnSet(
            [Column([ImageEl(stretch=True, aspect=aspect)], "stretch") for _ in range(n)], gap=r.choice([4, 8, 12])
        )
    # row_free: 2-4 columns of width-aware content
    n = r.choice([2, 2, 2, 3, 3] + ([4] if avail > 480 else []))
    each = (avail - 12 * (n - 1)) // n
    cols = []
    for _ in range(n):
        auto = r.random() < 0.25
        items = [
            _narrow_block(ctx, each).at(r.choice(["none", "small", "default"]))
            for _ in range(r.choice([1, 1, 2, 2, 3]))
        ]
        cols.append(Column(items, "auto" if auto else "stretch", r.choice(["top", "top", "center"])))
    return ColumnSet(cols, gap=r.choice([8, 12, 16, 20]), col_separator=r.random() < 0.1)


def _random_block(ctx: _Ctx, avail: int, depth: int = 0) -> _El:
    r, tx = ctx.rng, ctx.text
    kinds = {
        "title": 1.0,
        "para": 2,
        "caption": 1.0,
        "text": 1.2,
        "image": 1.3,
        "facts": 0.8,
        "radio": 1.5,
        "check": 1.1,
        "toggle": 0.8,
        "input": 0.7,
        "rating": 1.2,
        "actions": 0.7,
        "imageset": 0.4,
        "row_header": 1.0,
        "row_kv": 0.8,
        "row_media": 1.0,
        "row_stats": 0.5,
        "row_text2": 0.3,
        "row_choices2": 0.3,
        "row_inputs2": 0.3,
        "row_images": 0.4,
        "row_free": 1.0,
        "icon_row": 0.5,
    }
    if depth == 0:
        kinds["container"] = 0.7
    kind = _weighted(r, kinds)
    if kind.startswith("row_"):
        return _row_pattern(ctx, kind, avail)
    if kind == "title":
        return _tb(ctx, "title")
    if kind == "para":
        return _tb(
            ctx,
            "para",
            max_lines=r.choice([0, 0, 2, 3]),
            color=r.choice(["default"] * 4 + ["subtle"]),
            size=r.choice(["default", "default", "small", "medium"]),
            italic=r.random() < 0.05,
        )
    if kind == "caption":
        return _tb(ctx, "caption", align=r.choice(["left", "left", "right", "center"]))
    if kind == "text":
        return TextBlock(
            r.choice([tx.title(1, 4), tx.sentence(2, 8), tx.name(), tx.money(), tx.date(), tx.number()]),
            r.choice(list(ctx.sizes)),
            r.choice(["default", "bolder", "lighter", "default"]),
            color=r.choice(["default", "default", "subtle", "accent", "good", "attention", "warning"]),
            align=r.choice(["left", "left", "center", "right"]),
        )
    if kind == "image":
        if depth == 0 and r.random() < 0.5:
            return ImageEl(stretch=True, aspect=r.uniform(0.3, 0.75))
        return ImageEl(
            r.choice([40, 56, 64, 80, 100, 120, 160]),
            r.choice([0, 0, 40, 60, 80, 100]),
            person=r.random() < 0.25,
            align=r.choice(["left", "center", "right"]),
            radius=r.choice([0, 0, 4, 8]),
        )
    if kind == "icon_row":
        return _beside(ImageEl(r.choice([16, 20, 24]), kind="icon"), [TextBlock(tx.sentence(2, 6), "default")])
    if kind == "facts":
        return FactSet(
            [
                (
                    tx.title(1, 2) + r.choice([":", ""]),
                    r.choice([tx.name(), tx.date(), tx.money(), tx.title(1, 3), tx.number()]),
                )
                for _ in range(r.randint(2, 5))
            ],
            title_weight=r.choice(["bolder", "default"]),
        )
    if kind == "radio":
        n = r.randint(2, 5)
        return ChoiceSet(
            [tx.title(1, 4) for _ in range(n)],
            selected=[r.randrange(n)] if r.random() < 0.6 else [],
            gap=r.choice([6, 8, 10, 12]),
        )
    if kind == "check":
        n = r.randint(2, 5)
        return ChoiceSet(
            [tx.title(1, 4) for _ in range(n)],
            multi=True,
            selected=r.sample(range(n), r.randint(0, n)),
            gap=r.choice([6, 8, 10, 12]),
        )
    if kind == "toggle":
        return ChoiceSet([tx.sentence(2, 8).rstrip(".!?")], multi=True, selected=[0] if r.random() < 0.5 else [])
    if kind == "input":
        items: List[_El] = []
        if r.random() < 0.7:
            items.append(TextBlock(tx.title(1, 3), "default", r.choice(["default", "bolder"])))
        items.append(
            InputText(
                r.choice([tx.words(1, 4), "Enter a value", tx.date()]),
                lines=r.choice([1, 1, 1, 2]),
                kind=r.choice(["text", "text", "date", "dropdown"]),
                value=r.random() < 0.3,
            ).at("small")
        )
        return Container(items, padding=0) if len(items) > 1 else items[0]
    if kind == "rating":
        return Rating(
            r.choice([1, 2, 2.5, 3, 3.5, 4, 4.5, 5]),
            r.choice([10, 12, 14, 16, 20, 24]),
            value_text=r.random() < 0.3,
            count=r.choice([None, None, f"({r.randint(1, 999)})", f"{r.randint(1, 999)} ratings"]),
            align=r.choice(["left", "left", "center", "right"]),
        )
    if kind == "actions":
        return ActionSet(
            _actions(ctx, 1, 3),
            vertical=r.random() < 0.15,
            align=r.choice(["left", "left", "center", "right"]),
            stretch=r.random() < 0.2,
        )
    if kind == "imageset":
        return ImageSet(r.randint(2, 6), r.choice([40, 56, 64, 80]), person=r.random() < 0.2, gap=r.choice([4, 8]))
    # container
    inner = avail - 2 * ctx.px(12)
    items = [_random_block(ctx, inner, depth + 1).at(r.choice(["small", "default"])) for _ in range(r.randint(1, 3))]
    return Container(
        items,
        style=r.choice(["emphasis", "emphasis", "accent", "good", "attention", "warning"]),
        radius=r.choice([0, 0, 4, 8]),
    )


def _t_random(ctx: _Ctx) -> List[_El]:
    r = ctx.rng
    body: List[_El] = []
    if r.random() < 0.7:
        body.append(_tb(ctx, "title"))
    for _ in range(r.randint(2, 7)):
        el = _random_block(ctx, ctx.content_w)
        body.append(el.at(r.choice(["small", "default", "default", "medium", "large"]), separator=r.random() < 0.15))
    return body
