"""What a Docker image of the service weighs, read from ``pic2card_notes/Dockerfile`` without a Docker engine.

The Dockerfile and ``.dockerignore`` are parsed as Docker reads them (for the instructions and
patterns they use): what each image copies from the build context (:func:`copy_sources`), its
environment (:func:`image_environment`), and what it adds on top of the Python base image
(:func:`image_payload`: the copied files plus the pip packages it installs, for chapter 04's size
comparison and ``tests/test_docker.py``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from detr_deploy.bench.sizes import distribution_size, requirement_closure
from detr_deploy.paths import REPO_ROOT

__all__ = [
    "DOCKERFILE",
    "DOCKERIGNORE",
    "dockerfile_stages",
    "copy_sources",
    "image_environment",
    "image_commands",
    "DockerIgnore",
    "image_payload",
]

DOCKERFILE = REPO_ROOT / "pic2card_notes" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def _dockerfile_instructions(text: str) -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    instructions, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def _command(text: str) -> List[str]:
    """A CMD's argument as the argv it runs: the exec form's JSON list, or the shell form under /bin/sh."""
    return json.loads(text) if text.lstrip().startswith("[") else ["/bin/sh", "-c", text]


def dockerfile_stages(dockerfile: Path = DOCKERFILE) -> Tuple[Dict[str, str], Dict[str, dict]]:
    """(global ARG defaults, {stage name: {"base": FROM argument, "copies": [(sources, dest)],
    "runs": [RUN arguments], "env": {ENV name: value}, "commands": {"CMD" or "HEALTHCHECK": argv}}}),
    stages in file order."""
    global_args: Dict[str, str] = {}
    stages: Dict[str, dict] = {}
    stage = None
    for keyword, rest in _dockerfile_instructions(Path(dockerfile).read_text()):
        if keyword == "ARG" and stage is None:
            name, _, default = rest.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"stage{len(stages)}"
            stage = stages[name] = {"base": words[0], "copies": [], "runs": [], "env": {}, "commands": {}}
        elif keyword == "RUN" and stage is not None:
            stage["runs"].append(rest)
        elif keyword == "ENV" and stage is not None:
            words = shlex.split(rest)
            if words and "=" not in words[0]:  # Docker's legacy form: ENV KEY value with spaces
                stage["env"][words[0]] = " ".join(words[1:])
            else:
                stage["env"].update(word.split("=", 1) for word in words)
        elif keyword in ("COPY", "ADD") and stage is not None:
            words = [w for w in rest.split() if not w.startswith("--chown") and not w.startswith("--chmod")]
            if any(w.startswith("--from") for w in words):
                continue  # from another stage or image, not from the build context
            words = [w for w in words if not w.startswith("--")]
            stage["copies"].append((words[:-1], words[-1]))
        elif keyword == "CMD" and stage is not None:
            stage["commands"]["CMD"] = _command(rest)
        elif keyword == "HEALTHCHECK" and stage is not None:
            _, _, check = rest.partition("CMD ")  # after the options; HEALTHCHECK NONE has no command
            stage["commands"]["HEALTHCHECK"] = _command(check) if check else None
    return global_args, stages


def _expand(text: str, variables: Mapping[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: variables.get(m.group(1), m.group(0)), text)


def _stage_chain(target: Optional[str], dockerfile: Path) -> List[dict]:
    """The stages an image for build argument TARGET=``target`` is made of, base first."""
    global_args, stages = dockerfile_stages(dockerfile)
    variables = dict(global_args, **({"TARGET": target} if target else {}))
    name = list(stages)[-1]
    chain = []
    while name in stages:
        chain.append(stages[name])
        name = _expand(stages[name]["base"], variables)
    return chain[::-1]


def copy_sources(target: Optional[str] = None, dockerfile: Path = DOCKERFILE) -> List[Tuple[str, str]]:
    """(context path, image destination) of every COPY from the build context into the image
    built with ``--build-arg TARGET=<target>`` (default: the Dockerfile's default target)."""
    return [
        (source, dest)
        for stage in _stage_chain(target, dockerfile)
        for sources, dest in stage["copies"]
        for source in sources
    ]


def image_environment(target: Optional[str] = None, dockerfile: Path = DOCKERFILE) -> Dict[str, str]:
    """The ENV variables the image for ``TARGET=<target>`` is built with (later stages win)."""
    environment: Dict[str, str] = {}
    for stage in _stage_chain(target, dockerfile):
        environment.update(stage["env"])
    return environment


def image_commands(target: Optional[str] = None, dockerfile: Path = DOCKERFILE) -> Dict[str, Optional[List[str]]]:
    """``{"CMD": argv, "HEALTHCHECK": argv}`` of the image for ``TARGET=<target>`` (later stages win)."""
    commands: Dict[str, Optional[List[str]]] = {}
    for stage in _stage_chain(target, dockerfile):
        commands.update(stage["commands"])
    return commands


class DockerIgnore:
    """``.dockerignore`` matching: patterns in order, the last match wins, ``!`` re-includes;
    a pattern that matches a folder matches everything under it; ``*`` stays within one
    path element, ``**`` crosses them (Docker's rules, for the patterns used here)."""

    def __init__(self, path: Path = DOCKERIGNORE):
        self.rules: List[Tuple[bool, re.Pattern]] = []
        if Path(path).is_file():
            for line in Path(path).read_text().splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                include = line.startswith("!")
                pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
                self.rules.append((include, re.compile(self._translate(pattern) + r"(/.*)?\Z")))

    @staticmethod
    def _translate(pattern: str) -> str:
        out, index = "", 0
        while index < len(pattern):
            if pattern.startswith("**", index):
                out, index = out + ".*", index + 2
            elif pattern[index] == "*":
                out, index = out + "[^/]*", index + 1
            elif pattern[index] == "?":
                out, index = out + "[^/]", index + 1
            else:
                out, index = out + re.escape(pattern[index]), index + 1
        return out

    def excluded(self, relative_path: str) -> bool:
        path = os.path.normpath(relative_path).lstrip("/")
        verdict = False
        for include, regex in self.rules:
            if regex.match(path):
                verdict = not include
        return verdict


def _files_under(root: Path, relative: str, ignore: DockerIgnore) -> Dict[str, int]:
    path = root / relative
    if path.is_file():
        return {} if ignore.excluded(relative) else {relative: path.stat().st_size}
    found = {}
    for item in sorted(path.rglob("*")):
        name = str(item.relative_to(root))
        if item.is_file() and not ignore.excluded(name):
            found[name] = item.stat().st_size
    return found


def image_payload(
    target: Optional[str] = None,
    context: Path = REPO_ROOT,
    dockerfile: Path = DOCKERFILE,
    dockerignore: Optional[Path] = None,
) -> dict:
    """What the image for ``TARGET=<target>`` adds on top of its Python base image, measured
    from the build context (no Docker engine): the files its COPY instructions take (after
    ``.dockerignore``) and the pip packages it installs with their dependencies (their size in this
    environment).

    Returns ``{"target", "copied": {path: bytes}, "missing": [paths], "pip": {dist: bytes},
    "copied_bytes", "pip_bytes", "total_bytes"}``. ``missing`` lists COPY sources not in
    ``context`` (run the build steps first: ``make build`` and ``python -m detr_deploy.native.runtime_folder``).
    """
    context = Path(context)
    ignore = DockerIgnore(dockerignore if dockerignore is not None else context / ".dockerignore")
    global_args, _ = dockerfile_stages(dockerfile)
    chain = _stage_chain(target, dockerfile)
    copied: Dict[str, int] = {}
    missing: List[str] = []
    for source, _ in copy_sources(target, dockerfile):
        if not (context / source).exists():
            missing.append(source)
        else:
            copied.update(_files_under(context, source.rstrip("/"), ignore))
    pip: Dict[str, int] = {}
    for stage in chain:
        for run in stage["runs"]:
            if re.search(r"\bpip3? install\b", run):
                for name in re.findall(r"[\"']?([A-Za-z0-9_.\-]+)==", run):
                    for distribution in requirement_closure(name):  # pip brings the dependencies too
                        pip[distribution] = distribution_size(distribution)
    return {
        "target": target or global_args.get("TARGET"),
        "copied": copied,
        "missing": missing,
        "pip": pip,
        "copied_bytes": sum(copied.values()),
        "pip_bytes": sum(pip.values()),
        "total_bytes": sum(copied.values()) + sum(pip.values()),
    }
