"""Read the `# --` documentation of the chart's values.yaml (helm-docs conventions).

A key is documented by a comment block right above it that contains `# -- text` (the text may go
on over the following `#` lines). A documented key whose value is a mapping or a list documents
that whole default (e.g. `resources`); keys that only group others (e.g. `image`) need no comment of
their own when every key under them has one. Lines inside a list are part of a value, never keys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.-]*|\"[^\"]+\"):(?:\s|$)")


@dataclass(frozen=True)
class DocumentedKey:
    path: str            # dotted, e.g. "serviceMonitor.interval"
    description: str     # the `# --` text, joined into one line
    default: Any         # the value in values.yaml


def documented_keys(values_file: Path) -> dict[str, str]:
    """Dotted path -> description, for every key with a `# --` comment above it."""
    documented: dict[str, str] = {}
    stack: list[tuple[int, str]] = []   # (indent, key) of the enclosing mapping keys
    comment: list[str] = []
    list_indent: int | None = None      # inside a list value: skip lines indented deeper than this
    for raw in values_file.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip(" "))
        if not stripped:
            comment = []
            continue
        if list_indent is not None:
            if indent > list_indent or (indent == list_indent and stripped.startswith("- ")):
                continue
            list_indent = None
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        if stripped.startswith("- "):
            list_indent = indent - 1 if indent else 0
            comment = []
            continue
        match = KEY_LINE.match(raw)
        if match is None:
            comment = []
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = match.group("key").strip('"')
        stack.append((indent, key))
        path = ".".join(k for _, k in stack)
        text = _description(comment)
        if text is not None:
            documented[path] = text
        comment = []
    return documented


def _description(comment: list[str]) -> str | None:
    for i, line in enumerate(comment):
        if line.startswith("# --"):
            parts = [line[len("# --"):].strip()] + [c.lstrip("#").strip() for c in comment[i + 1:]]
            return " ".join(p for p in parts if p)
    return None


def leaf_paths(values: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every value that is not a non-empty mapping (the keys a user sets)."""
    if isinstance(values, dict) and values:
        paths: list[str] = []
        for key, value in values.items():
            paths += leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
        return paths
    return [prefix]


def undocumented(values_file: Path) -> list[str]:
    """Leaf values with no `# --` comment on themselves or on an enclosing key."""
    documented = documented_keys(values_file)
    values = yaml.safe_load(values_file.read_text(encoding="utf-8"))
    missing = []
    for path in leaf_paths(values):
        parts = path.split(".")
        if not any(".".join(parts[:n]) in documented for n in range(1, len(parts) + 1)):
            missing.append(path)
    return missing


def values_table(values_file: Path) -> list[DocumentedKey]:
    """The documented keys with their defaults, in file order: the chart README's values table."""
    values = yaml.safe_load(values_file.read_text(encoding="utf-8"))
    rows = []
    for path, description in documented_keys(values_file).items():
        default: Any = values
        for part in path.split("."):
            default = default[part]
        rows.append(DocumentedKey(path, description, default))
    return rows


TABLE_START = "<!-- values-table:start -->"
TABLE_END = "<!-- values-table:end -->"


def render_table(values_file: Path) -> str:
    """The values table of the chart README (between its values-table markers)."""
    lines = ["| key | default | description |", "|---|---|---|"]
    for row in values_table(values_file):
        default = json.dumps(row.default, separators=(", ", ": "))
        lines.append(f"| `{row.path}` | `{_cell(default)}` | {_cell(row.description)} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def sync_readme(values_file: Path, readme: Path) -> bool:
    """Rewrite the README's values table from values.yaml; True when it changed."""
    text = readme.read_text(encoding="utf-8")
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    new = f"{head}{TABLE_START}\n{render_table(values_file)}\n{TABLE_END}{tail}"
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":  # .venv/bin/python -m tests.chart.values_doc  (regenerates the tables)
    root = Path(__file__).resolve().parents[2]
    chart = root / "charts" / "linepool-operator"
    for readme in (chart / "README.md", root / "README.md"):
        changed = sync_readme(chart / "values.yaml", readme)
        print(f"{readme}: {'values table updated' if changed else 'up to date'}")
