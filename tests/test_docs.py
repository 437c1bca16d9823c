"""The docs cite tests by name: every cited test must exist, so a rename cannot orphan a row."""

from __future__ import annotations

import re

import pytest

from tests.harness import REPO

CITED = re.compile(r"tests/(test_\w+)\.py::(test_\w+)")


@pytest.mark.parametrize("document", ["docs/RELIABILITY.md"])
def test_every_test_a_document_cites_exists(document):
    cited = set(CITED.findall((REPO / document).read_text()))
    assert cited
    missing = [
        f"{module}::{name}"
        for module, name in sorted(cited)
        if f"def {name}(" not in (REPO / "tests" / f"{module}.py").read_text()
    ]
    assert missing == []
