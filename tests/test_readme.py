"""The README's Python blocks run as written, against the shipped model."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


@pytest.mark.skipif(not (ROOT / "assets" / "mmgen-base" / "vqvae").is_dir(), reason="no shipped model yet")
@pytest.mark.parametrize("code", BLOCKS)
def test_readme_python_block_runs(code, monkeypatch, tmp_path):
    if "Client(" in code:
        pytest.skip("needs a running app; tests/test_app.py calls the same endpoint on a live server")
    (tmp_path / "assets").symlink_to(ROOT / "assets")  # relative paths as in the README; outputs land in tmp
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})


def test_readme_has_python_blocks():
    assert BLOCKS
