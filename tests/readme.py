"""What the docs say, read for the tests that check it: sections of the README and of the
docs site's pages (docs/*.md), their code blocks, the Kubernetes manifests, and the
environment variables the code reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml

from tests.harness import REPO

README = REPO / "README.md"
KUBERNETES = REPO / "contrib" / "kubernetes"
PRODUCTION = "docs/production.md"
REPLICAS = "docs/replicas.md"
GUARD = "docs/guard.md"
# the sections on deploying prunehook, (page, title): every variable they name must be one
# prunehook reads
DEPLOYMENT_SECTIONS = (
    (REPLICAS, "Replicas and PostgreSQL"),
    (REPLICAS, "Moving an existing installation"),
    (PRODUCTION, "Deploying on a PaaS"),
    (PRODUCTION, "Kubernetes"),
    (PRODUCTION, "Platforms that freeze the CPU after the response"),
    (GUARD, "The host's own interval"),
)
# an environment variable's name as the docs write it: capitals with at least one underscore
VARIABLE = re.compile(r"(?<![A-Za-z0-9_])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?![A-Za-z0-9_])")
FENCE = re.compile(r"^ *```")
HEADING = re.compile(r"^(#{1,6}) (.+)$")


def pages() -> list[Path]:
    """The README and every page of the docs site."""
    return [README, *sorted((REPO / "docs").glob("*.md"))]


def _headings(lines: list[str]) -> list[tuple[int, int, str]]:
    """(line number, level, title) of each Markdown heading, code blocks' `#` lines left out."""
    found, fenced = [], False
    for number, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (heading := HEADING.match(line)):
            found.append((number, len(heading.group(1)), heading.group(2)))
    return found


def section(page: str, title: str) -> str:
    """The section of `page` (a path from the repository's root) headed `title`, up to the
    next heading of its level or above: a page's `# title` is the whole page."""
    lines = (REPO / page).read_text().splitlines()
    headings = _headings(lines)
    found = [(number, level) for number, level, text in headings if text == title]
    if len(found) != 1:
        raise ValueError(f"{page} has {len(found)} sections headed {title!r}, not one")
    ((start, level),) = found
    end = next((n for n, lv, _ in headings if n > start and lv <= level), len(lines))
    return "\n".join(lines[start:end]) + "\n"


def fenced_blocks(text: str) -> list[str]:
    """The ``` blocks of `text`, each without its fences or indentation (a block in a list
    item is indented with it)."""
    blocks = re.findall(r"^( *)```[a-z]*\n(.*?)^\1```$", text, re.M | re.S)
    return [
        "\n".join(line.removeprefix(indent) for line in body.splitlines())
        for indent, body in blocks
    ]


def assignments(block: str) -> dict[str, str]:
    """`NAME=value  # comment` lines as a mapping (values unquoted, comments dropped)."""
    found = {}
    for line in block.splitlines():
        name, _, value = line.partition("=")
        found[name.strip()] = value.split("  #")[0].strip()
    return found


def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every YAML document of contrib/kubernetes/, by file name."""
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        for path in sorted(KUBERNETES.glob("*.yaml"))
    }


def manifest(kind: str, name: str) -> dict[str, Any]:
    (found,) = [
        doc
        for docs in manifests().values()
        for doc in docs
        if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    return found


def container() -> dict[str, Any]:
    (only,) = manifest("Deployment", "prunehook")["spec"]["template"]["spec"]["containers"]
    return only


# -- what the code reads -------------------------------------------------------------------


def _settings_variables() -> set[str]:
    """The names webhook/config.py reads: PRUNEHOOK_* one per field of its schemas, and
    gunicorn's worker and thread counts."""
    from webhook.config import PREFIX, SERVER_COUNTS, VARIABLES

    return {PREFIX + name.upper() for name in VARIABLES} | set(SERVER_COUNTS)


def _environ_reads(path: Path) -> set[str]:
    """Names a Python file reads from os.environ (`.get("X")`, `["X"]`) or os.getenv."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        literal = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            is_environ = isinstance(owner, ast.Attribute) and owner.attr == "environ"
            if (node.func.attr == "get" and is_environ) or node.func.attr == "getenv":
                literal = node.args[0] if node.args else None
        elif isinstance(node, ast.Subscript):
            owner = node.value
            if isinstance(owner, ast.Attribute) and owner.attr == "environ":
                literal = node.slice
        if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
            names.add(literal.value)
    return names


def variables_read() -> set[str]:
    """Every environment variable prunehook reads: its settings, the process-level ones
    (gunicorn.conf.py, the app), and the guard's."""
    python = [
        *sorted((REPO / "webhook").rglob("*.py")),
        REPO / "webhook" / "gunicorn_settings.py",
        REPO / "wsgi.py",
    ]
    guard = (REPO / "contrib" / "prunehook-guard").read_text()
    return (
        _settings_variables()
        | {name for path in python for name in _environ_reads(path)}
        | set(re.findall(r"\$\{?(PRUNEHOOK_[A-Z0-9_]+)", guard))
    )
