"""The Space's requirements.txt and pyproject.toml must not drift apart; the README carries the Space header."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_requirements_txt_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [line for line in lines if line and not line.startswith(("#", "-"))]
    assert sorted(r.replace(" ", "") for r in reqs) == sorted(p.replace(" ", "") for p in project)


def test_readme_has_the_space_front_matter():
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n")
    header = text.split("---")[1]
    for key in ("sdk: gradio", "app_file: app.py", 'python_version: "3.11"'):
        assert key in header
