"""What CI installs is pinned (constraints.txt), and no release with a known advisory fits."""

from __future__ import annotations

import importlib.metadata
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.harness import REPO


def requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    # every extra: make test installs them all (.[test,gcp,aws])
    extras = [each for extra in project["optional-dependencies"].values() for each in extra]
    listed = project["dependencies"] + extras
    return {canonicalize_name(req.name): req for req in map(Requirement, listed)}


def pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    pairs = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pairs}


@pytest.mark.parametrize(
    ("name", "advisory_release"),
    [
        ("paramiko", "3.3.1"),  # Terrapin
        ("marshmallow", "3.26.1"),
        ("marshmallow", "4.1.1"),
        ("flask", "3.1.0"),
        ("werkzeug", "3.1.5"),
        ("gunicorn", "22.0.0"),
        ("jinja2", "3.1.5"),
        ("requests", "2.32.3"),
        ("urllib3", "2.4.0"),
        ("cryptography", "44.0.0"),
    ],
)
def test_no_release_with_a_known_advisory_satisfies_the_requirements(name, advisory_release):
    assert not requirements()[name].specifier.contains(advisory_release)


def test_every_requirement_is_pinned_to_a_release_it_allows():
    pinned = pins()
    for name, requirement in requirements().items():
        assert name in pinned, f"{name} is not in constraints.txt: run make constraints"
        assert requirement.specifier.contains(pinned[name]), (name, pinned[name])


def test_the_virtualenv_runs_what_constraints_txt_pins():
    for name, version in pins().items():
        assert importlib.metadata.version(name) == version, name
