"""Card colour themes (light and dark), modelled on the Adaptive Cards hosts' palettes."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

from detr_deploy.data.cards.pictures import _vivid
from detr_deploy.data.classes import Color


@dataclass
class _Theme:
    dark: bool
    page_bg: Color
    card_bg: Color
    border: Optional[Color]
    shadow: float
    radius: int
    text: Color
    subtle: Color
    accent: Color
    good: Color
    warning: Color
    attention: Color
    emphasis_bg: Color
    separator: Color
    input_bg: Color
    input_border: Color
    placeholder: Color
    control_border: Color
    button_style: str
    button_radius: int
    star: Color
    star_empty: Color
    star_empty_style: str


_ACCENTS = [
    (0, 120, 212),
    (98, 100, 167),
    (0, 99, 177),
    (16, 124, 16),
    (46, 137, 252),
    (91, 95, 199),
    (0, 120, 215),
    (196, 49, 75),
    (202, 80, 16),
    (0, 153, 188),
    (135, 100, 184),
    (0, 90, 158),
]


def _mix(a: Color, b: Color, t: float) -> Color:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b, strict=False))  # type: ignore[return-value]


def _make_theme(rng: random.Random) -> _Theme:
    dark = rng.random() < 0.22
    accent = rng.choice(_ACCENTS) if rng.random() < 0.85 else _vivid(rng, 0.45)
    if dark:
        card_bg = rng.choice([(41, 41, 41), (45, 44, 44), (32, 31, 31), (36, 36, 36), (27, 26, 26), (50, 49, 48)])
        page_bg = rng.choice([(31, 31, 31), (20, 20, 20), (41, 41, 41), (17, 17, 17), (51, 51, 51), card_bg])
        text = rng.choice([(255, 255, 255), (240, 240, 240), (225, 223, 221)])
        subtle = rng.choice([(180, 180, 180), (200, 198, 196), (160, 160, 160)])
        accent = _mix(accent, (255, 255, 255), rng.uniform(0.2, 0.45))
        emphasis = _mix(card_bg, (255, 255, 255), rng.uniform(0.05, 0.1))
        separator = _mix(card_bg, (255, 255, 255), rng.uniform(0.12, 0.22))
        input_bg = rng.choice([_mix(card_bg, (0, 0, 0), 0.25), _mix(card_bg, (255, 255, 255), 0.06)])
        input_border = _mix(card_bg, (255, 255, 255), rng.uniform(0.2, 0.4))
        placeholder = _mix(card_bg, (255, 255, 255), rng.uniform(0.45, 0.6))
        control_border = _mix(card_bg, (255, 255, 255), rng.uniform(0.55, 0.75))
        border = rng.choice([None, None, _mix(card_bg, (255, 255, 255), 0.15)])
        star_empty = _mix(card_bg, (255, 255, 255), rng.uniform(0.25, 0.4))
    else:
        card_bg = rng.choice([(255, 255, 255)] * 6 + [(250, 250, 250), (252, 252, 252), (250, 249, 248)])
        page_bg = rng.choice(
            [
                (255, 255, 255),
                (245, 245, 245),
                (243, 242, 241),
                (240, 240, 240),
                (235, 235, 235),
                (250, 249, 248),
                (230, 232, 236),
                (238, 241, 246),
                (225, 225, 225),
                _mix(accent, (255, 255, 255), 0.9),
            ]
        )
        text = rng.choice([(50, 49, 48), (0, 0, 0), (36, 36, 36), (51, 51, 51), (32, 31, 30), (23, 43, 77)])
        subtle = rng.choice([(96, 94, 92), (118, 118, 118), (128, 128, 128), (97, 97, 97), (107, 114, 128)])
        emphasis = rng.choice(
            [(243, 242, 241), (245, 245, 245), (248, 248, 248), (240, 242, 245), _mix(accent, (255, 255, 255), 0.92)]
        )
        separator = rng.choice([(238, 238, 238), (225, 223, 221), (230, 230, 230), (210, 210, 210)])
        input_bg = rng.choice([(255, 255, 255), (255, 255, 255), (250, 250, 250), (243, 242, 241)])
        input_border = rng.choice([(138, 136, 134), (200, 198, 196), (204, 204, 204), (225, 223, 221), (170, 170, 170)])
        placeholder = rng.choice([(161, 159, 157), (128, 128, 128), (150, 150, 150), (112, 112, 112)])
        control_border = rng.choice([(96, 94, 92), (50, 49, 48), (118, 118, 118), (138, 136, 134)])
        border = rng.choice([None, (225, 223, 221), (230, 230, 230), (209, 209, 209), (237, 235, 233)])
        star_empty = rng.choice([(200, 198, 196), (210, 210, 210), (225, 223, 221), (190, 190, 190)])
    if page_bg == card_bg and border is None and rng.random() < 0.7:
        border = _mix(card_bg, (128, 128, 128), 0.25)
    return _Theme(
        dark=dark,
        page_bg=page_bg,
        card_bg=card_bg,
        border=border,
        shadow=rng.choice([0.0, 0.0, 0.08, 0.14, 0.22]) * (0.6 if dark else 1.0),
        radius=rng.choice([0, 2, 4, 4, 6, 8, 8, 10, 12, 16]),
        text=text,
        subtle=subtle,
        accent=accent,
        good=rng.choice([(84, 162, 84), (16, 124, 16), (35, 134, 54)]),
        warning=rng.choice([(230, 149, 0), (193, 156, 0), (202, 80, 16)]),
        attention=rng.choice([(204, 51, 0), (164, 38, 44), (209, 52, 56)]),
        emphasis_bg=emphasis,
        separator=separator,
        input_bg=input_bg,
        input_border=input_border,
        placeholder=placeholder,
        control_border=control_border,
        button_style=rng.choices(
            ["teams", "filled", "outline", "tint", "link", "grey", "primary_first"], weights=[4, 3, 2.5, 1, 1, 1, 2.5]
        )[0],
        button_radius=rng.choice([0, 2, 3, 4, 4, 6, 8, 99]),
        star=rng.choice(
            [(255, 185, 0), (242, 200, 17), (255, 170, 0), (250, 190, 40), (255, 200, 0), accent, (232, 17, 35)]
        ),
        star_empty=star_empty,
        star_empty_style=rng.choice(["grey", "grey", "outline"]),
    )
