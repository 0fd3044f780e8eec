"""Which images a batch run covers: folders, globs and list files, resolved to absolute paths.

* a folder contributes every file below it (recursively) whose suffix is an image suffix;
* a glob (``*``, ``?`` or ``[`` in an argument that is not an existing path) contributes the image files
  it matches, and folders it matches as above;
* an image file (image suffix) is itself;
* a list file (suffix ``.txt``, ``.lst``, ``.list`` or none) holds one path per line, blank lines and
  ``#`` comments ignored, relative paths taken from the list's folder. Its entries are used as written,
  unchecked, so a missing or broken one becomes an error line in the results instead of vanishing.

Paths are absolute (not resolved through symbolic links): they are the ``source`` of each result line,
the key a rerun skips by, and what actors on other machines open (a shared file system).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable, List

__all__ = ["IMAGE_SUFFIXES", "InputError", "resolve_inputs"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list", ""})
GLOB_CHARACTERS = ("*", "?", "[")


class InputError(ValueError):
    """An INPUT argument that names nothing usable."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def images_in_folder(folder: Path) -> List[str]:
    return sorted(os.path.abspath(path) for path in folder.rglob("*") if is_image_file(path))


def entries_of_list_file(list_file: Path) -> List[str]:
    if list_file.suffix.lower() not in LIST_SUFFIXES:
        raise InputError(f"{list_file}: neither an image nor a list of paths (.txt, .lst, .list), by its suffix")
    try:
        text = list_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{list_file}: a list of paths must be UTF-8 text") from None
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(os.path.abspath(list_file.parent / Path(line).expanduser()))
    return entries


def expand_input(argument: str) -> List[str]:
    """The image paths one INPUT argument names; InputError when it names nothing that exists."""
    path = Path(argument).expanduser()
    if path.is_dir():
        return images_in_folder(path)
    if path.is_file():
        return [os.path.abspath(path)] if path.suffix.lower() in IMAGE_SUFFIXES else entries_of_list_file(path)
    if any(character in argument for character in GLOB_CHARACTERS):
        found: List[str] = []
        for match in sorted(glob.glob(os.path.expanduser(argument), recursive=True)):
            match_path = Path(match)
            if match_path.is_dir():
                found.extend(images_in_folder(match_path))
            elif is_image_file(match_path):
                found.append(os.path.abspath(match_path))
        if not found:
            raise InputError(f"{argument}: the pattern matches no image files")
        return found
    raise InputError(f"{argument}: no such file or folder")


def resolve_inputs(arguments: Iterable[str]) -> List[str]:
    """Every image the arguments name, in order, each once."""
    seen = {}
    for argument in arguments:
        for path in expand_input(argument):
            seen.setdefault(path, None)
    return list(seen)
