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


def test_gradio_is_pinned_past_its_advisories_and_the_space_runs_a_version_in_range():
    """Versions before 6.16 have published advisories; the Space's `sdk_version` (README front matter) is the
    gradio it runs, so it must satisfy the same range as pyproject.toml and requirements.txt."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    gradio = Requirement(next(d for d in project if d.startswith("gradio")))
    header = (ROOT / "README.md").read_text().split("---")[1]
    sdk_version = next(line.split(":", 1)[1].strip() for line in header.splitlines() if line.startswith("sdk_version"))
    assert sdk_version in gradio.specifier
    assert not any(Version(v) in gradio.specifier for v in ("6.0.0", "6.15.9", "7.0.0"))
