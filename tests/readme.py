"""What the docs say, read for the tests that check it: README sections, their code blocks,
the Kubernetes manifests, and the environment variables the code reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml

from tests.harness import REPO

README = REPO / "README.md"
KUBERNETES = REPO / "contrib" / "kubernetes"
# the sections on deploying prunehook: every variable they name must be one prunehook reads
DEPLOYMENT_SECTIONS = (
    "Replicas and PostgreSQL",
    "Moving an existing installation",
    "Deploying on a PaaS",
    "Kubernetes",
    "Platforms that freeze the CPU after the response",
    "The host's own interval",
)
# an environment variable's name as the docs write it: capitals with at least one underscore
VARIABLE = re.compile(r"(?<![A-Za-z0-9_])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?![A-Za-z0-9_])")


def section(title: str) -> str:
    """The README's `## title` section, up to the next `## `."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def fenced_blocks(text: str) -> list[str]:
    """The ``` blocks of `text`, each without its fences or indentation."""
    blocks = re.findall(r"^( *)```[a-z]*\n(.*?)^\1```$", text, re.M | re.S)
    return [
        "\n".join(line.removeprefix(indent) for line in body.splitlines())
        for indent, body in blocks
    ]


def indented_blocks(text: str) -> list[str]:
    """The Markdown code blocks written by indentation (4 spaces more than their list
    item's text: at 4, 6 under `- `, 7 under `1. `), each without the indentation."""
    blocks, current, indent = [], [], 0
    for line in [*text.splitlines(), ""]:
        stripped = line.lstrip(" ")
        depth = len(line) - len(stripped)
        if current and (not stripped or depth >= indent):
            current.append(line[indent:])
            continue
        if current:
            blocks.append("\n".join(current).strip("\n"))
            current = []
        if stripped and depth in (4, 6, 7) and not stripped.startswith(("- ", "```")):
            current, indent = [line[depth:]], depth
    return blocks


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
    """PRUNEHOOK_* names webhook/config.py reads: one per field of its schemas."""
    from webhook.config import PREFIX, VARIABLES

    return {PREFIX + name.upper() for name in VARIABLES}


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
