"""The front door: the README stays short and its links resolve, user docs name no
issue numbers, and the licence and citation files agree with pyproject.toml.

The docs site itself (every page in the nav, no broken link or anchor, the API
reference resolving) is checked by ``mkdocs build --strict`` in ``.ci/test``.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _pyproject_version() -> str:
    return re.search(r'(?m)^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)


def test_the_readme_is_a_front_door_of_at_most_250_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_the_readmes_relative_links_resolve():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert local, "the README links its docs pages"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, missing


def test_user_docs_name_no_issue_numbers():
    pattern = re.compile(r"\bissues? ?#?\d+|\(#\d+\)", re.IGNORECASE)
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in USER_DOCS
             for m in pattern.finditer(p.read_text())]
    assert not found, found


def test_the_citation_file_matches_the_package():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["title"] == "dynas"
    assert str(cff["version"]) == _pyproject_version()
    assert cff["license"] == "MIT"
    assert all(author.get("name") or author.get("family-names") for author in cff["authors"])


def test_the_licence_is_the_one_the_readme_and_citation_name():
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License")
    assert "MIT" in (ROOT / "README.md").read_text()
