"""Pseudo-English text: words, names, places, dates, money and button captions, from one ``random.Random``."""

from __future__ import annotations

import random

_WORDS = """
the of and to in is for on that with as at by from this be are was it an or have will your
you we our not all can new more one about time team project report update review meeting
plan design data card image service customer order account request status approval budget
travel flight hotel weather forecast today tomorrow week month year daily weekly quarter
sales revenue growth market product launch feature release version build test issue bug task
deadline schedule event invite calendar reminder notice alert message reply comment share
please check confirm submit cancel approve reject open close view details summary total amount
cost price item items expense receipt payment invoice balance transfer deposit credit debit
city street office room building floor location address phone email contact support help
great good best better quick easy simple clear bright fresh warm cold sunny cloudy rain snow
wind storm light dark green blue red orange purple yellow white black silver golden
coffee lunch dinner breakfast menu table booking restaurant kitchen pizza pasta salad burger
music movie book game sport team player score match season league goal win lose draw
learning training course lesson class student teacher school program workshop session
health fitness run walk yoga sleep water energy focus goal habit progress streak
security password login device access policy compliance training privacy risk owner
shipping delivery package tracking arrival departure gate terminal seat boarding baggage
survey feedback question answer option choice rating vote poll result response
""".split()

_FIRST = """Alex Maria John Priya Chen Fatima Lucas Emma Noah Olivia Liam Ava Mia Ethan Sofia Kenji
Aisha Carlos Hannah David Sara Omar Grace Leo Nina Ravi Elena Tom Yuki Zoe Adam Lina Marco Jade
Ivan Amara Felix Chloe Diego Nora Samuel Ines Victor Mei Oscar Leah""".split()
_LAST = """Smith Johnson Garcia Patel Chen Kim Nguyen Muller Rossi Silva Brown Wilson Taylor Lee
Martin Lopez Clark Lewis Walker Hall Young King Wright Scott Green Baker Adams Nelson Hill Campbell
Mitchell Roberts Carter Phillips Evans Turner Torres Parker Collins Edwards Stewart Morris""".split()
_CITIES = """Seattle Redmond London Paris Tokyo Sydney Berlin Madrid Toronto Chicago Boston Austin
Denver Mumbai Bangalore Singapore Dublin Amsterdam Oslo Zurich Vienna Prague Lisbon Rome Cairo
Nairobi Lagos Lima Bogota Santiago Montreal Vancouver Miami Atlanta Dallas Phoenix""".split()
_MONTHS = "January February March April May June July August September October November December".split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_COMPANIES = """Contoso Fabrikam Northwind Tailspin Litware Adatum Proseware Woodgrove Fourth Coffee
Wingtip Lamna Relecloud Alpine Ski Trey Research Margie's Travel""".split()


class _Text:
    """Pseudo-English generator bound to one ``random.Random``."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def word(self) -> str:
        return self.rng.choice(_WORDS)

    def words(self, lo: int, hi: int) -> str:
        return " ".join(self.word() for _ in range(self.rng.randint(lo, hi)))

    def title(self, lo: int = 2, hi: int = 5) -> str:
        words = self.words(lo, hi).split()
        while len(words) > 1 and len(words[-1]) <= 3:
            words.pop()
        return " ".join(w.capitalize() if (i == 0 or len(w) > 3) else w for i, w in enumerate(words))

    def sentence(self, lo: int = 5, hi: int = 14) -> str:
        parts = self.words(lo, hi).split()
        if len(parts) > 6 and self.rng.random() < 0.35:
            parts[self.rng.randint(2, len(parts) - 3)] += ","
        if self.rng.random() < 0.15:
            parts.insert(self.rng.randint(1, len(parts)), self.rng.choice([self.name(), self.city(), self.number()]))
        text = " ".join(parts)
        return text[0].upper() + text[1:] + self.rng.choice(".......!?")

    def paragraph(self, lo: int = 1, hi: int = 3) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(lo, hi)))

    def first(self) -> str:
        return self.rng.choice(_FIRST)

    def name(self) -> str:
        return f"{self.rng.choice(_FIRST)} {self.rng.choice(_LAST)}"

    def city(self) -> str:
        return self.rng.choice(_CITIES)

    def company(self) -> str:
        return self.rng.choice(_COMPANIES)

    def number(self) -> str:
        return str(self.rng.choice([self.rng.randint(1, 99), self.rng.randint(100, 9999)]))

    def money(self) -> str:
        value = self.rng.choice([self.rng.uniform(1, 99), self.rng.uniform(100, 9999)])
        symbol = self.rng.choice(["$", "$", "$", "\u20ac", "\u00a3"])
        return f"{symbol}{value:,.2f}"

    def date(self) -> str:
        r = self.rng
        month, day, year = r.randrange(12), r.randint(1, 28), r.randint(2019, 2026)
        kind = r.randrange(5)
        if kind == 0:
            return f"{_MONTHS[month]} {day}, {year}"
        if kind == 1:
            return f"{_DAYS[r.randrange(7)][:3]}, {_MONTHS[month][:3]} {day}, {year}"
        if kind == 2:
            return f"{month + 1}/{day}/{year}"
        if kind == 3:
            return f"{year}-{month + 1:02d}-{day:02d}"
        return f"{_DAYS[r.randrange(7)]}, {_MONTHS[month]} {day}"

    def time(self) -> str:
        r = self.rng
        if r.random() < 0.6:
            return f"{r.randint(1, 12)}:{r.choice(['00', '15', '30', '45', '05', '50'])} {r.choice(['AM', 'PM'])}"
        return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}"

    def label(self) -> str:
        """A short button / choice caption."""
        r = self.rng
        if r.random() < 0.6:
            return r.choice(
                [
                    "Submit",
                    "Approve",
                    "Reject",
                    "View details",
                    "Open",
                    "Cancel",
                    "Reply",
                    "Save",
                    "Learn more",
                    "Book now",
                    "Accept",
                    "Decline",
                    "Snooze",
                    "Dismiss",
                    "Comment",
                    "Set due date",
                    "Check in",
                    "Share",
                    "Order",
                    "Send",
                    "Vote",
                    "Confirm",
                    "Skip",
                    "Edit",
                    "Next",
                    "Done",
                    "Add to cart",
                    "Track",
                    "Call",
                    "Directions",
                    "Sign up",
                ]
            )
        return self.title(1, 2)
