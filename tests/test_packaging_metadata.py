"""The project's packaging metadata: what ``pip install -e '.[dev]'`` builds, without warnings.

setuptools 77+ deprecates ``project.license`` as a table (``{text = ...}``) and license
classifiers in favour of an SPDX expression (PEP 639); a build with the old form prints the same
deprecation warning for every metadata step. These tests read ``pyproject.toml`` as the build
backend does and the core metadata of the installed distribution, and validate both with
``packaging`` (the library pip and setuptools use to read them).
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from packaging.licenses import canonicalize_license_expression
from packaging.metadata import Metadata
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.cli import invoke

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_an_spdx_expression_not_a_deprecated_table() -> None:
    license_ = PYPROJECT["project"]["license"]
    assert isinstance(license_, str), "project.license: a table is deprecated; use SPDX"
    assert canonicalize_license_expression(license_) == license_
    classifiers = PYPROJECT["project"].get("classifiers", [])
    assert not [c for c in classifiers if c.startswith("License ::")]


def test_build_backend_understands_license_expressions() -> None:
    build = PYPROJECT["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    requirements = {Requirement(r).name: Requirement(r) for r in build["requires"]}
    # PEP 639 license expressions: setuptools 77 and later; "wheel" is not needed since 70.1.
    assert set(requirements) == {"setuptools"}
    assert not requirements["setuptools"].specifier.contains(Version("76.9"))
    assert requirements["setuptools"].specifier.contains(Version("80.9"))


def test_installed_core_metadata_is_valid() -> None:
    dist = importlib.metadata.distribution("dunning")
    # The core metadata file as the build backend wrote it (a wheel's METADATA, an editable
    # install's PKG-INFO), read as bytes: the README it carries is UTF-8.
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    assert text is not None
    metadata = Metadata.from_email(text.encode("utf-8"), validate=True)
    assert metadata.name == "dunning"
    assert metadata.license_expression == PYPROJECT["project"]["license"]
    assert metadata.license is None  # the deprecated free-text field is not written


def test_version_comes_from_the_package_metadata() -> None:
    done = invoke("--version")
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"dunning {importlib.metadata.version('dunning')}"
    assert importlib.metadata.version("dunning") == PYPROJECT["project"]["version"]
