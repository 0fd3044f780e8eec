"""Every number a chapter states in its prose comes from the chapter itself.

A number in a Markdown cell must appear in an output of the same notebook (text/plain,
text/markdown or a stream) or in its code (a constant the code defines). A sentence whose
number is measured is written by a code cell (``display(Markdown(...))``), so the text and
the measurement cannot drift apart. Not counted as numbers: section and chapter references,
numbered-list markers, years, code spans, code blocks and URLs. What a chapter states by
design (an architecture's sizes, a setting explained but not printed) is listed in
``BY_DESIGN``, per chapter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

# per chapter: numbers its prose states as design facts, not as measurements
BY_DESIGN = {
    # the official DETR's resize (shorter side 800, longer at most 1333), against the chapter's
    "01_export_detr_to_torchscript": {"800", "1333"},
}

_FENCED = re.compile(r"```.*?```", re.S)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
_URL = re.compile(r"https?://\S+|\]\([^)]*\)")
_HEADING_NUMBER = re.compile(r"^(#+\s*)\d+[a-z]?(?:\.\d+)*\.?", re.M)
_LIST_MARKER = re.compile(r"^(\s*)\d+\.\s", re.M)
_INDENTED_CODE = re.compile(r"^(?: {4}|\t).*$", re.M)
_REFERENCE = re.compile(r"\b(?:chapters?|sections?|appendix)\s+\d+[a-z]?(?:\s*(?:,|and|or|/|to|-)\s*\d+[a-z]?)*", re.I)
_SIZE = re.compile(r"(\d)x(?=\d)")  # 480x640 -> 480 640
# a number that is not part of a name (fp16, x0, ResNet-50, C++20, layer3)
_NUMBER = re.compile(r"(?<![\w.])(?<![A-Za-z]-)(?<!\+\+)(\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?)(?![\d.]\d)")
_ANY_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?")


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def _normalised(number: str) -> str:
    return number.replace(",", "")


def _is_year(number: str) -> bool:
    return number.isdigit() and len(number) == 4 and 1950 <= int(number) <= 2030


def prose_numbers(markdown: str) -> list:
    """The numbers a Markdown cell states, without references, code and URLs."""
    text = _FENCED.sub(" ", markdown)
    text = _CODE_SPAN.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _INDENTED_CODE.sub(" ", text)
    text = _HEADING_NUMBER.sub(r"\1", text)
    text = _LIST_MARKER.sub(r"\1", text)
    text = _REFERENCE.sub(" ", text)
    text = _SIZE.sub(r"\1 ", text)
    numbers = [_normalised(match) for match in _NUMBER.findall(text)]
    return [number for number in numbers if not _is_year(number)]


def _outputs_text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(_text(output.get("text", "")))
        for kind in ("text/plain", "text/markdown"):
            if kind in output.get("data", {}):
                parts.append(_text(output["data"][kind]))
    return "\n".join(parts)


def chapter_numbers(notebook: dict) -> set:
    """Every number in the notebook's outputs and code."""
    found = set()
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        for text in (_text(cell["source"]), _outputs_text(cell)):
            found.update(_normalised(number) for number in _ANY_NUMBER.findall(_SIZE.sub(r"\1 ", text)))
    return found


def unsupported_numbers(notebook: dict, by_design=frozenset()) -> list:
    """``(cell index, number)`` for each prose number that no output or code of the notebook holds."""
    known = chapter_numbers(notebook) | set(by_design)
    missing = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "markdown":
            missing += [(index, number) for number in prose_numbers(_text(cell["source"])) if number not in known]
    return missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_prose_numbers_come_from_the_chapter(path):
    notebook = json.loads(path.read_text())
    missing = unsupported_numbers(notebook, BY_DESIGN.get(path.stem, set()))
    assert not missing, f"{path.name}: prose numbers found in no output or code cell: " + ", ".join(
        f"cell {index}: {number}" for index, number in missing
    )


# ---------------------------------------------------------------------------- the check itself


def _notebook(markdown: str, output: str, code: str = "x = 1") -> dict:
    return {
        "cells": [
            {"cell_type": "markdown", "source": markdown},
            {
                "cell_type": "code",
                "source": code,
                "outputs": [{"output_type": "stream", "name": "stdout", "text": output}],
            },
        ]
    }


def test_a_planted_wrong_number_is_flagged():
    notebook = _notebook("The export takes 97 s and the model has 42 layers.", "export: 97 s, 41 layers\n")
    assert unsupported_numbers(notebook) == [(0, "42")]


def test_numbers_from_outputs_and_code_pass():
    markdown = "The model has 4,247,115 parameters, 64 queries and a 480x640 input; tolerance 1e-3."
    notebook = _notebook(markdown, "4,247,115 parameters, 64 queries\nsize (480, 640)\n", code="atol = 1e-3")
    assert unsupported_numbers(notebook) == []


def test_references_code_urls_and_years_are_not_numbers():
    markdown = (
        "## 3. Timing\n"
        "1. first, as in chapter 02b and chapters 03 and 04 (section 5; sections 4 and 11)\n"
        "Written in 2020 with `torch.sym_min(384, 12)`, fp16, ResNet-50, C++20, x0 and layer3; "
        "see https://example.org/v2/7 or [chapter 01](01_export.ipynb).\n"
        "```python\nthreshold = 0.85\n```\n"
        "    ValueError: 17 px\n"
    )
    assert prose_numbers(markdown) == []


def test_a_number_differing_from_the_output_only_in_rounding_is_flagged():
    notebook = _notebook("the transformer is 42% of the model", "share 0.418\n")
    assert unsupported_numbers(notebook) == [(0, "42")]
    assert unsupported_numbers(notebook, by_design={"42"}) == []
