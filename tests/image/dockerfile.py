"""A small, strict reader of the Dockerfile and .dockerignore, for the static image tests.

There is no Docker daemon here, so the image is checked by reading how it is built. This covers the
part of the Dockerfile syntax the project uses: comments, parser directives, line continuations,
JSON (exec) and shell forms, ``key=value`` pairs in ENV, LABEL and ARG, and ``FROM ... AS name``.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # the rest of the logical line, continuations joined
    line: int  # where it starts, 1-based

    def exec_form(self) -> list[str] | None:
        """The JSON array of ``CMD ["a", "b"]``-style arguments, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"line {self.line}: {self.keyword} is not a JSON array of strings")
        return value

    def pairs(self) -> dict[str, str]:
        """``key=value`` pairs of ENV, LABEL or ARG (quotes removed); ``ARG name`` gives ``{name: ""}``."""
        result: dict[str, str] = {}
        for token in shlex.split(self.args):
            key, sep, value = token.partition("=")
            if not sep and self.keyword == "ENV":
                raise ValueError(f"line {self.line}: use ENV key=value")
            result[key] = value
        return result


@dataclass
class Stage:
    image: str  # as written after FROM (ARGs substituted)
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for instruction in self.all("ENV"):
            merged.update(instruction.pairs())
        return merged

    def labels(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for instruction in self.all("LABEL"):
            merged.update(instruction.pairs())
        return merged


@dataclass(frozen=True)
class ImageReference:
    repository: str
    tag: str | None
    digest: str | None


_FROM = re.compile(r"^(?:--platform=\S+\s+)?(?P<image>\S+)(?:\s+AS\s+(?P<name>\S+))?$", re.IGNORECASE)
_REFERENCE = re.compile(
    r"^(?P<repository>[^@]+?)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def instructions(text: str) -> list[Instruction]:
    """The logical instructions of a Dockerfile: comments dropped, ``\\`` continuations joined."""
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(p for p in pending if p).partition(" ")
        result.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    if pending:
        raise ValueError(f"line {start}: the last instruction ends with a line continuation")
    return result


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults (before the first FROM) and the stages, in order."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            match = _FROM.match(instruction.args)
            if match is None:
                raise ValueError(f"line {instruction.line}: cannot read FROM {instruction.args!r}")
            image = _VARIABLE.sub(lambda m: global_args.get(m.group(1), m.group(0)), match.group("image"))
            result.append(Stage(image=image, name=match.group("name"), line=instruction.line))
        elif not result:
            if instruction.keyword != "ARG":
                raise ValueError(f"line {instruction.line}: only ARG may come before the first FROM")
            global_args.update(instruction.pairs())
        else:
            result[-1].instructions.append(instruction)
    return global_args, result


def parse_reference(image: str) -> ImageReference:
    match = _REFERENCE.match(image)
    if match is None:
        raise ValueError(f"not an image reference: {image!r}")
    return ImageReference(match.group("repository"), match.group("tag"), match.group("digest"))


def ignore_patterns(text: str) -> list[str]:
    """The .dockerignore patterns, comments and blank lines dropped, leading ``/`` and ``./`` removed."""
    patterns = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            patterns.append(stripped.removeprefix("./").removeprefix("/"))
    return patterns


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path`` (relative to the context) out of the build context.

    As Docker does: the last matching pattern wins, ``!`` re-includes, ``**`` matches any number of
    folders, and a path is out when one of its parent folders is.
    """
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        regex = _glob_to_regex(body)
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Docker's (Go filepath.Match plus ``**``) glob as a regex over ``/``-separated paths."""
    out = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        elif pattern[index] == "[" and "]" in pattern[index + 1:]:
            end = pattern.index("]", index + 1)
            out.append("[" + pattern[index + 1:end] + "]")  # Go's classes: [abc], [a-z], [^a]
            index = end + 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("^" + "".join(out) + "$")
