"""The 14 designed card templates and the registry of all layouts with their weights.

Each layout returns the card body; card-level actions are appended by
:func:`detr_deploy.data.cards.compose.render_card`, with the per-template probabilities and
captions defined here.
"""

from __future__ import annotations

from typing import Callable, Dict, List

from detr_deploy.data.cards.compositions import _t_random
from detr_deploy.data.cards.controls import ChoiceSet, InputText, Rating
from detr_deploy.data.cards.elements import Column, ColumnSet, FactSet, ImageEl, ImageSet, TextBlock, _Ctx, _El
from detr_deploy.data.cards.presets import _beside, _tb
from detr_deploy.data.cards.text import _DAYS


def _t_weather(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    temp = r.randint(-5, 38) if r.random() < 0.5 else r.randint(20, 100)
    unit = r.choice(["\u00b0F", "\u00b0C", "\u00b0"])
    body: List[_El] = [
        _tb(
            ctx,
            "subtitle",
            f"{tx.city()}, {r.choice(['WA', 'CA', 'NY', 'UK', 'FR', 'JP', 'TX', 'DE'])}",
            size="medium",
            weight="default",
        ),
        _tb(ctx, "caption", f"{tx.date()}").at("none"),
    ]
    current = ColumnSet(
        [
            Column(
                [ImageEl(r.choice([48, 64, 72, 80]), kind="icon", icon=r.choice(["sun", "cloud", "rain", "partly"]))],
                "auto",
                "center",
            ),
            Column(
                [
                    TextBlock(
                        f"{temp}", r.choice([40, 44, 52, 60]) * ctx.scale, "default" if r.random() < 0.6 else "lighter"
                    )
                ],
                "auto",
                "center",
            ),
            Column(
                [
                    TextBlock(unit, "medium", "default"),
                    _tb(ctx, "caption", f"Hi {temp + r.randint(1, 8)}\u00b0").at("small"),
                    _tb(ctx, "caption", f"Lo {temp - r.randint(1, 12)}\u00b0").at("none"),
                ],
                "stretch",
                "center",
            ),
        ],
        gap=r.choice([8, 12, 16]),
    )
    body.append(current.at("default"))
    if r.random() < 0.6:
        body.append(
            TextBlock(
                r.choice(["Sunny", "Partly cloudy", "Light rain", "Overcast", "Clear", "Showers", "Windy"])
                + (f" \u2022 Wind {r.randint(2, 30)} mph" if r.random() < 0.5 else ""),
                "default",
                color="subtle",
            ).at("small")
        )
    if r.random() < 0.85:
        days = r.randint(3, 5)
        start = r.randrange(7)
        cols = []
        for d in range(days):
            hi = temp + r.randint(-6, 6)
            cols.append(
                Column(
                    [
                        TextBlock(
                            _DAYS[(start + d) % 7][:3],
                            "default",
                            "bolder" if r.random() < 0.5 else "default",
                            align="center",
                        ),
                        ImageEl(
                            r.choice([28, 32, 40]),
                            kind="icon",
                            align="center",
                            icon=r.choice(["sun", "cloud", "rain", "partly"]),
                        ).at("small"),
                        TextBlock(
                            f"{hi}\u00b0 / {hi - r.randint(4, 15)}\u00b0" if r.random() < 0.7 else f"{hi}\u00b0",
                            "small",
                            align="center",
                        ).at("small"),
                    ],
                    "stretch",
                )
            )
        body.append(ColumnSet(cols, gap=8, style=None).at("medium", separator=r.random() < 0.5))
    return body


def _t_expense(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    header = _beside(
        ImageEl(r.choice([32, 40, 48]), kind=r.choice(["logo", "icon"])),
        [
            _tb(
                ctx,
                "title",
                r.choice(["Expense Report", "Expense approval", "Travel expenses", "Invoice"]),
                size="medium",
            ),
            _tb(ctx, "caption", f"{tx.company()} \u2022 {tx.date()}").at("none"),
        ],
    )
    body: List[_El] = [header]
    body.append(
        FactSet(
            [
                ("Submitted by", tx.name()),
                ("Report ID", f"#{r.randint(10000, 99999)}"),
                ("Date", tx.date()),
                ("Purpose", tx.title(1, 3)),
            ][: r.randint(2, 4)],
            title_weight=r.choice(["bolder", "default"]),
            title_color=r.choice(["default", "subtle"]),
        ).at("medium", separator=r.random() < 0.5)
    )
    rows = []
    for i in range(r.randint(2, 4)):
        rows.append(
            ColumnSet(
                [
                    Column([TextBlock(tx.date(), "small", color="subtle")], "auto" if r.random() < 0.5 else 80),
                    Column([TextBlock(tx.title(1, 3), "default", wrap=True)], "stretch"),
                    Column([TextBlock(tx.money(), "default", align="right")], "auto"),
                ]
            ).at("small" if i else "medium", separator=i == 0 or r.random() < 0.4)
        )
    body += rows
    body.append(
        ColumnSet(
            [
                Column([TextBlock("Total", "medium", "bolder")], "stretch"),
                Column([TextBlock(tx.money(), "medium", "bolder", color=r.choice(["default", "accent"]))], "auto"),
            ]
        ).at("medium", separator=True)
    )
    return body


def _t_flight(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    codes = ["SEA", "SFO", "JFK", "LHR", "AMS", "CDG", "NRT", "SYD", "DXB", "SIN", "BOS", "ORD", "LAX", "FRA"]
    a, b = r.sample(codes, 2)
    body: List[_El] = []
    if r.random() < 0.7:
        body.append(
            _beside(
                ImageEl(r.choice([24, 28, 32]), kind=r.choice(["icon", "logo"])),
                [
                    TextBlock(
                        r.choice(["Flight Status", "Flight update", "Your trip", "Boarding pass"]),
                        "default",
                        "bolder",
                        color=r.choice(["default", "accent"]),
                    )
                ],
            )
        )
    body.append(
        _tb(ctx, "title", f"{tx.company()} {r.randint(10, 999)}", size=r.choice(["medium", "large"])).at("default")
    )
    body.append(
        _tb(
            ctx,
            "caption",
            f"{tx.date()} \u2022 {r.choice(['On time', 'Delayed', 'Boarding', 'Gate changed'])}",
            color=r.choice(["subtle", "good", "attention"]),
        ).at("none")
    )
    route = ColumnSet(
        [
            Column(
                [
                    TextBlock(tx.city(), "small", color="subtle"),
                    TextBlock(a, r.choice([32, 36, 42]) * ctx.scale, "default").at("none"),
                    TextBlock(tx.time(), "default").at("none"),
                ],
                "auto",
            ),
            Column([ImageEl(r.choice([24, 32]), kind="icon", align="center")], "stretch", "center"),
            Column(
                [
                    TextBlock(tx.city(), "small", color="subtle", align="right"),
                    TextBlock(b, r.choice([32, 36, 42]) * ctx.scale, "default", align="right").at("none"),
                    TextBlock(tx.time(), "default", align="right").at("none"),
                ],
                "auto",
            ),
        ]
    )
    body.append(route.at("medium", separator=r.random() < 0.5))
    if r.random() < 0.7:
        body.append(
            FactSet(
                [
                    ("Gate", f"{r.choice('ABCDN')}{r.randint(1, 40)}"),
                    ("Seat", f"{r.randint(1, 40)}{r.choice('ABCDEF')}"),
                    ("Terminal", str(r.randint(1, 5))),
                    ("Boarding", tx.time()),
                ][: r.randint(2, 4)]
            ).at("medium")
        )
    return body


def _t_restaurant(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = []
    hero_top = r.random() < 0.6
    if hero_top:
        body.append(
            ImageEl(
                stretch=True,
                aspect=r.uniform(0.35, 0.6),
                kind=r.choice(["photo", "product", "landscape", "bokeh", "auto"]),
            )
        )
    name = f"{tx.company()} {r.choice(['Cafe', 'Bistro', 'Kitchen', 'Grill', 'Diner', 'Trattoria', 'Bar'])}"
    info = [
        _tb(ctx, "title", name, size=r.choice(["medium", "large"])),
        Rating(
            r.choice([3, 3.5, 4, 4.5, 5, 4, 2.5]),
            r.choice([12, 14, 16, 18, 20]),
            value_text=r.random() < 0.4,
            count=r.choice([None, f"({r.randint(5, 2500)})", f"{r.randint(5, 900)} reviews"]),
        ).at("small"),
        _tb(
            ctx,
            "caption",
            f"{r.choice(['Italian', 'Thai', 'Mexican', 'Cafe', 'Seafood', 'Vegan'])} \u2022 {'$' * r.randint(1, 4)} "
            f"\u2022 {r.randint(1, 9)}.{r.randint(0, 9)} mi",
        ).at("small"),
    ]
    if hero_top or r.random() < 0.5:
        body += info
    else:
        body.append(
            ColumnSet(
                [
                    Column(info, "stretch"),
                    Column([ImageEl(r.choice([72, 90, 110]), kind=r.choice(["photo", "product"]))], "auto"),
                ]
            )
        )
    if r.random() < 0.8:
        body.append(_tb(ctx, "para", max_lines=r.choice([0, 3])).at("default"))
    return body


def _t_poll(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = []
    if r.random() < 0.5:
        body.append(
            _tb(
                ctx,
                "caption",
                r.choice(["Poll", "Quick poll", "Survey", "Vote"]) + f" \u2022 {tx.name()}",
                size="small",
            )
        )
    q = tx.sentence(4, 12).rstrip(".!") + "?"
    body.append(TextBlock(q, r.choice(["medium", "default", "large"]), "bolder").at("small" if body else "none"))
    n = r.randint(2, 5)
    choices = [tx.title(1, 4) if r.random() < 0.6 else tx.sentence(3, 9) for _ in range(n)]
    selected = [r.randrange(n)] if r.random() < 0.6 else []
    body.append(ChoiceSet(choices, multi=False, selected=selected, gap=r.choice([6, 8, 10, 12])).at("medium"))
    if r.random() < 0.3:
        body.append(_tb(ctx, "caption", f"{r.randint(2, 300)} votes \u2022 closes {tx.date()}").at("medium"))
    return body


def _t_form(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = [
        _tb(
            ctx,
            "title",
            r.choice(["Registration", "Request form", "New ticket", "Sign up", "Contact us", tx.title(2, 4)]),
        )
    ]
    if r.random() < 0.6:
        body.append(_tb(ctx, "para", tx.sentence(6, 16), color=r.choice(["default", "subtle"])).at("small"))
    fields = r.randint(1, 3)
    for _ in range(fields):
        label = r.choice(
            ["Name", "Email", "Phone number", "Title", "Description", "Department", "Due date", "Comments", "Company"]
        )
        kind = "date" if "date" in label.lower() else r.choice(["text", "text", "dropdown"])
        body.append(
            TextBlock(label + (" *" if r.random() < 0.3 else ""), "default", r.choice(["default", "bolder"])).at(
                "medium"
            )
        )
        placeholder = (
            r.choice([f"Enter {label.lower()}", tx.words(1, 3), "Select an option", label, tx.date()])
            if kind != "date"
            else tx.date()
        )
        body.append(
            InputText(
                placeholder,
                lines=r.choice([1, 1, 1, 2, 3]) if label in ("Description", "Comments") else 1,
                kind=kind,
                value=r.random() < 0.25,
            ).at("small")
        )
    if r.random() < 0.5:
        body.append(
            TextBlock(
                r.choice(["Priority", "Type", "Size", "Category", "Frequency", tx.title(1, 2)]),
                "default",
                r.choice(["default", "bolder"]),
            ).at("medium")
        )
        opts = r.choice(
            [
                ["Low", "Medium", "High"],
                ["Daily", "Weekly", "Monthly"],
                ["Small", "Medium", "Large"],
                [tx.title(1, 3) for _ in range(r.randint(2, 4))],
            ]
        )
        body.append(
            ChoiceSet(opts, selected=[r.randrange(len(opts))] if r.random() < 0.7 else [], gap=r.choice([6, 8, 10])).at(
                "small"
            )
        )
    if r.random() < 0.7:
        body.append(
            TextBlock(
                r.choice(["Select topics", "Interests", "Options", "Preferences", tx.title(1, 3)]), "default", "bolder"
            ).at("medium")
        )
        n = r.randint(2, 5)
        body.append(
            ChoiceSet([tx.title(1, 3) for _ in range(n)], multi=True, selected=r.sample(range(n), r.randint(0, n))).at(
                "small"
            )
        )
    if r.random() < 0.6:
        body.append(
            ChoiceSet(
                [
                    r.choice(
                        [
                            "I agree to the terms and conditions",
                            "Send me updates",
                            "Remember my choice",
                            "Notify my team",
                            tx.sentence(3, 7),
                        ]
                    )
                ],
                multi=True,
                selected=[0] if r.random() < 0.5 else [],
            ).at("medium")
        )
    return body


def _t_activity(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = []
    if r.random() < 0.6:
        body.append(_tb(ctx, "title", tx.title(2, 6), size=r.choice(["medium", "large"])))
    body.append(
        _beside(
            ImageEl(r.choice([32, 36, 40, 48]), person=True),
            [TextBlock(tx.name(), "default", "bolder"), _tb(ctx, "caption", f"Created {tx.date()}").at("none")],
        ).at("default")
    )
    body.append(_tb(ctx, "para").at("default"))
    if r.random() < 0.7:
        body.append(
            FactSet(
                [
                    ("Board:", tx.title(1, 3)),
                    ("List:", tx.title(1, 2)),
                    ("Assigned to:", tx.name()),
                    ("Due date:", tx.date()),
                ][: r.randint(2, 4)],
                title_weight=r.choice(["bolder", "default"]),
            ).at("default")
        )
    return body


def _t_product(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    img = ImageEl(stretch=True, aspect=r.uniform(0.5, 0.9), kind=r.choice(["product", "product", "photo", "shapes"]))
    info: List[_El] = [
        _tb(ctx, "title", tx.title(1, 4), size=r.choice(["medium", "large"])),
        TextBlock(
            tx.money(), r.choice(["medium", "large"]), "bolder", color=r.choice(["default", "accent", "good"])
        ).at("small"),
    ]
    if r.random() < 0.7:
        info.append(
            Rating(
                r.choice([3.5, 4, 4.5, 5, 4.5]),
                r.choice([12, 14, 16]),
                value_text=r.random() < 0.3,
                count=r.choice([None, f"({r.randint(3, 5000):,})"]),
            ).at("small")
        )
    if r.random() < 0.6:
        info.append(
            _tb(ctx, "para", tx.sentence(6, 18), color="subtle", size=r.choice(["small", "default"])).at("small")
        )
    if r.random() < 0.5:
        return [img] + [el for el in info]
    return [
        ColumnSet([Column([ImageEl(r.choice([90, 110, 130]), kind=img.kind)], "auto"), Column(info, "stretch")], gap=12)
    ]


def _t_gallery(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = [
        _tb(
            ctx,
            "title",
            r.choice(["Photo gallery", "New photos", "Shared album", tx.title(2, 4)]),
            size=r.choice(["medium", "large"]),
        )
    ]
    if r.random() < 0.5:
        body.append(_tb(ctx, "caption", f"{tx.name()} added {r.randint(2, 30)} photos").at("none"))
    person = r.random() < 0.15
    body.append(
        ImageSet(
            r.randint(2, 8), r.choice([60, 72, 80, 96, 110]), kind="auto", person=person, gap=r.choice([4, 6, 8, 10])
        ).at("medium")
    )
    if r.random() < 0.5:
        body.append(_tb(ctx, "para", tx.sentence(5, 15)).at("default"))
    return body


def _t_news(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = []
    if r.random() < 0.5:
        body.append(
            _beside(
                ImageEl(r.choice([20, 24, 28]), kind=r.choice(["logo", "icon"])),
                [
                    TextBlock(
                        r.choice(["News", "Top stories", tx.company() + " News", "Daily digest", "Blog"]),
                        "small",
                        "bolder",
                        color="subtle",
                    )
                ],
            )
        )
    body.append(
        ImageEl(
            stretch=True, aspect=r.uniform(0.4, 0.6), kind=r.choice(["photo", "landscape", "skyline", "auto"]), bleed=0
        ).at("small")
    )
    body.append(_tb(ctx, "title", tx.sentence(4, 10).rstrip(".!?"), size=r.choice(["medium", "large"])).at("default"))
    body.append(_tb(ctx, "caption", f"{tx.name()} \u2022 {r.randint(2, 15)} min read").at("small"))
    body.append(_tb(ctx, "para", max_lines=r.choice([0, 0, 2, 3, 4])).at("default"))
    if r.random() < 0.5:
        for _ in range(r.randint(1, 3)):
            body.append(
                ColumnSet(
                    [
                        Column(
                            [ImageEl(r.choice([48, 56, 64]), kind=r.choice(["photo", "landscape", "auto"]))], "auto"
                        ),
                        Column(
                            [
                                TextBlock(tx.sentence(4, 10).rstrip(".!?"), "default", "bolder", max_lines=2),
                                _tb(ctx, "caption").at("small"),
                            ],
                            "stretch",
                        ),
                    ]
                ).at("medium", separator=r.random() < 0.6)
            )
    return body


def _t_reminder(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = [
        TextBlock(
            r.choice(["Reminder", "Upcoming meeting", "Calendar", "Event"]),
            "small",
            "bolder",
            color=r.choice(["accent", "subtle", "attention"]),
        ),
        _tb(ctx, "title", tx.title(2, 5), size=r.choice(["medium", "large"])).at("small"),
        _tb(ctx, "caption", f"{tx.date()} \u2022 {tx.time()} - {tx.time()}", size="default").at("small"),
        _tb(
            ctx,
            "caption",
            f"{r.choice(['Room', 'Building', 'Conf room'])} {r.randint(1, 40)}/{r.randint(100, 4000)}, {tx.city()}",
            size="default",
        ).at("none"),
    ]
    if r.random() < 0.5:
        body.append(ImageSet(r.randint(2, 5), r.choice([24, 28, 32]), person=True, gap=4).at("default"))
    if r.random() < 0.7:
        body.append(
            InputText(r.choice(["5 minutes", "15 minutes", "30 minutes", "1 hour"]), kind="dropdown", value=True).at(
                "medium"
            )
        )
    return body


def _t_survey(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = [
        _tb(
            ctx,
            "title",
            r.choice(["How did we do?", "Rate your experience", "Feedback", "Quick survey", tx.title(2, 4)]),
        )
    ]
    if r.random() < 0.6:
        body.append(_tb(ctx, "para", tx.sentence(6, 14), color=r.choice(["default", "subtle"])).at("small"))
    body.append(
        Rating(
            r.choice([0, 1, 2, 3, 4, 5, 3.5]),
            r.choice([20, 24, 28, 32]),
            gap=r.choice([4, 6, 8]),
            align=r.choice(["left", "left", "center"]),
        ).at("medium")
    )
    if r.random() < 0.7:
        body.append(TextBlock(tx.sentence(4, 9).rstrip(".!") + "?", "default", "bolder").at("medium"))
        opts = r.choice(
            [
                ["Yes", "No"],
                ["Yes", "No", "Maybe"],
                ["Very satisfied", "Satisfied", "Neutral", "Dissatisfied"],
                [tx.title(1, 2) for _ in range(3)],
            ]
        )
        if r.random() < 0.3 and len(opts) <= 3:
            body.append(
                ColumnSet(
                    [Column([ChoiceSet([o], selected=[0] if r.random() < 0.3 else [])], "auto") for o in opts], gap=20
                ).at("small")
            )
        else:
            body.append(ChoiceSet(opts, selected=[r.randrange(len(opts))] if r.random() < 0.5 else []).at("small"))
    if r.random() < 0.6:
        body.append(
            InputText(
                r.choice(["Tell us more (optional)", "Add a comment", "Your feedback"]), lines=r.choice([1, 2, 3])
            ).at("medium")
        )
    return body


def _t_profile(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    name = tx.name()
    centred = r.random() < 0.5
    align = "center" if centred else "left"
    head: List[_El] = [
        ImageEl(r.choice([64, 72, 80, 96]), person=True, align=align),
        TextBlock(name, r.choice(["medium", "large"]), "bolder", align=align).at("small"),
        TextBlock(
            r.choice(
                ["Product Manager", "Software Engineer", "Designer", "Sales Lead", "Director of " + tx.title(1, 1)]
            ),
            "default",
            color="subtle",
            align=align,
        ).at("none"),
    ]
    if not centred:
        head = [_beside(head[0], head[1:], gap=12)]
    head.append(
        FactSet(
            [
                ("Email", f"{name.split()[0].lower()}@{tx.company().lower().replace(' ', '')}.com"),
                ("Phone", f"+1 {r.randint(200, 999)} {r.randint(100, 999)} {r.randint(1000, 9999)}"),
                ("Office", f"{tx.city()} {r.randint(1, 40)}/{r.randint(1000, 3000)}"),
                ("Manager", tx.name()),
            ][: r.randint(2, 4)]
        ).at("medium", separator=r.random() < 0.5)
    )
    return head


def _t_tasks(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = [
        _tb(ctx, "title", r.choice(["To do", "Checklist", "Tasks for today", "Onboarding", tx.title(2, 3)]))
    ]
    if r.random() < 0.5:
        body.append(_tb(ctx, "caption", f"{r.randint(1, 9)} of {r.randint(9, 15)} completed").at("none"))
    n = r.randint(2, 6)
    if r.random() < 0.5:
        body.append(
            ChoiceSet(
                [tx.sentence(2, 7).rstrip(".!?") for _ in range(n)],
                multi=True,
                selected=r.sample(range(n), r.randint(0, n)),
                gap=r.choice([8, 10, 12]),
            ).at("medium")
        )
    else:
        for i in range(n):
            body.append(
                ColumnSet(
                    [
                        Column(
                            [
                                ChoiceSet(
                                    [tx.sentence(2, 6).rstrip(".!?")],
                                    multi=True,
                                    selected=[0] if r.random() < 0.4 else [],
                                )
                            ],
                            "stretch",
                        ),
                        Column(
                            [
                                TextBlock(
                                    tx.date() if r.random() < 0.6 else tx.name(), "small", color="subtle", align="right"
                                )
                            ],
                            "auto",
                            "center",
                        ),
                    ]
                ).at("small" if i else "medium", separator=r.random() < 0.4)
            )
    return body


TEMPLATES: Dict[str, Callable[[_Ctx], List[_El]]] = {
    "weather": _t_weather,
    "expense": _t_expense,
    "flight": _t_flight,
    "restaurant": _t_restaurant,
    "poll": _t_poll,
    "form": _t_form,
    "activity": _t_activity,
    "product": _t_product,
    "gallery": _t_gallery,
    "news": _t_news,
    "reminder": _t_reminder,
    "survey": _t_survey,
    "profile": _t_profile,
    "tasks": _t_tasks,
    "random": _t_random,
}
"""Card layouts by name; ``render_card(template=...)`` picks one, default: weighted random."""

_TEMPLATE_WEIGHTS = {name: 1.0 for name in TEMPLATES}
_TEMPLATE_WEIGHTS.update({"random": 9.0, "poll": 1.6, "survey": 1.3, "form": 1.3, "tasks": 1.2, "restaurant": 1.2})
_ACTION_PROB = {
    "weather": 0.3,
    "expense": 0.9,
    "flight": 0.5,
    "restaurant": 0.7,
    "poll": 0.95,
    "form": 0.95,
    "activity": 0.9,
    "product": 0.7,
    "gallery": 0.4,
    "news": 0.6,
    "reminder": 0.9,
    "survey": 0.95,
    "profile": 0.7,
    "tasks": 0.6,
    "random": 0.55,
}
_ACTION_TITLES = {
    "expense": [["Approve", "Reject"], ["Approve", "Reject", "View report"], ["View details"]],
    "poll": [["Submit"], ["Vote"], ["Submit vote"], ["Submit", "View results"]],
    "form": [["Submit"], ["Submit", "Cancel"], ["Save", "Cancel"], ["Send"]],
    "activity": [["Set due date", "Comment", "View"], ["Open", "Comment"], ["View in app"]],
    "reminder": [["Snooze", "Dismiss"], ["Join meeting", "Snooze"], ["Accept", "Tentative", "Decline"]],
    "survey": [["Submit"], ["Send feedback"], ["Submit", "Not now"]],
    "restaurant": [["More info", "Book a table"], ["Directions"], ["Order now", "Menu"]],
    "product": [["Add to cart"], ["Buy now", "Details"], ["View product"]],
}
