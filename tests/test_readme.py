"""The README's code blocks work as written: the Python blocks run against the shipped model (the gradio_client one
against a live app on a tiny model), every command of the bash blocks parses, the JSON blocks parse, and the
results table carries the evaluation's figures."""

import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SHIPPED = ROOT / "assets" / "mmgen-base"
APP_URL = "http://127.0.0.1:7860/"  # where `make demo` serves; the test swaps in the tiny app's address


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def shell_commands(block: str) -> list[list[str]]:
    """The block's commands as argv lists: continuation lines joined, comments and VAR=value prefixes dropped."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
            argv = argv[1:]
        if argv:
            commands.append(argv)
    return commands


PYTHON = code_blocks("python")
CLIENT = [code for code in PYTHON if "Client(" in code]
COMMANDS = [argv for block in code_blocks("bash") for argv in shell_commands(block)]


def run_block(code: str, tmp_path: Path, monkeypatch) -> dict:
    """Run a block as a user would from the repository root, with its outputs landing in tmp_path."""
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


@pytest.mark.skipif(not (SHIPPED / "vqvae").is_dir(), reason="no shipped model yet")
@pytest.mark.parametrize("code", [code for code in PYTHON if code not in CLIENT])
def test_readme_python_block_runs(code, monkeypatch, tmp_path):
    run_block(code, tmp_path, monkeypatch)


def test_readme_gradio_client_block_drives_a_live_app(tiny_app_url, monkeypatch, tmp_path):
    from PIL import Image

    assert len(CLIENT) == 1 and APP_URL in CLIENT[0]
    ns = run_block(CLIENT[0].replace(APP_URL, tiny_app_url), tmp_path, monkeypatch)
    # each of /generate's inputs landed on its own control (the block once sent 7 of 9: overlay became the snap)
    shown_each = ("50 steps of euler-ancestral", "guidance 4 at t ≥ 250,", "codebook snap 0.5,", "best of 4", "seed 0")
    for shown in shown_each:
        assert shown in ns["info"]
    assert ns["seed"] == 0 and Image.open(ns["image"]).size[0] >= 256  # the image, shown enlarged
    assert sorted(Path(f).name for f in ns["files"]) == ["image.png", "run_card.json", "tokens.json"]
    assert "PSNR" in ns["stats"] and Image.open(ns["reconstruction"]).size == Image.open(ns["original"]).size


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(argv)[:60] for argv in COMMANDS])
def test_readme_shell_command_parses(argv):
    """Each command is parsed by the parser that would run it; nothing heavy runs."""
    from mmgen import cli, release

    match argv:
        case ["mmgen", *args]:
            cli.build_parser().parse_args(args)
        case ["accelerate", "launch", *rest] if "mmgen.cli" in rest:
            from accelerate.commands.launch import launch_command_parser

            k = rest.index("mmgen.cli")
            launch_command_parser().parse_args(rest[: k + 1])  # accelerate's own flags, then -m mmgen.cli
            cli.build_parser().parse_args(rest[k + 1 :])
        case ["python", "-m", "mmgen.release", *args]:
            release.build_parser().parse_args(args)
        case ["make", *targets]:
            assert targets and set(targets) <= makefile_targets()
        case ["source", ".venv/bin/activate"]:
            pass
        case _:
            pytest.fail(f"a README command this test does not know how to check: {argv}")


def test_readme_metadata_examples_are_metadata_lines():
    """Every `{"file_name": ...}` the README shows (in a json block or inline) is a valid metadata.jsonl line."""
    import re

    inline = re.findall(r"`(\{\"file_name\".*?\})`", README)
    lines = inline + [line for block in code_blocks("json") for line in block.splitlines() if line.strip()]
    assert lines and all({"file_name", "text"} <= json.loads(line).keys() for line in lines)


def test_readme_has_every_kind_of_block_and_fits_a_page_count():
    assert len(PYTHON) >= 3 and CLIENT and COMMANDS
    assert len(README.splitlines()) <= 250  # a README for users; the history lives in docs/


@pytest.mark.skipif(not (SHIPPED / "eval_generator.json").exists(), reason="no evaluation yet")
def test_readme_results_are_the_evaluations():
    results = README.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in results.splitlines() if line.startswith("| ")]
    tok = json.loads((SHIPPED.parent / "mmgen-base-64" / "eval_tokenizer.json").read_text())  # the f4 VQ-VAE
    f8 = json.loads((SHIPPED.parent / "vqgan-f8" / "eval_tokenizer.json").read_text())
    own = json.loads((SHIPPED / "eval_tokenizer.json").read_text())  # vqgan-f8's tokens, mmgen-base's decoder
    gen = json.loads((SHIPPED / "eval_generator.json").read_text())
    g64 = json.loads((SHIPPED.parent / "mmgen-base-64" / "eval_generator.json").read_text())
    single, s64, strict, strict64 = gen["single"], g64["single"], gen["strict_judge"], g64["strict_judge"]
    expected = [  # (what the row is about, the figure it must show)
        (f"VQ-VAE f4, {tok['shapes']['n_images']} shapes-v1 scenes", f"{tok['shapes']['psnr']:.2f} dB"),
        (f"VQ-VAE f4, 3 natural photos ({tok['photos']['n_images']} views", f"{tok['photos']['psnr']:.2f} dB"),
        ("VQ-VAE f4, codebook", f"{tok['codebook']['usage']:.1%} / {tok['codebook']['perplexity']:.0f} of 512"),
        (
            f"VQ-GAN f8, {f8['shapes']['n_images']} shapes-v1 scenes at 128 px",
            f"| {f8['shapes']['readable_all']:.1%} ({own['shapes']['readable_all']:.1%}) |",
        ),
        (
            f"VQ-GAN f8, 3 natural photos ({f8['photos']['n_images']} views",
            "{psnr:.2f} dB / {detail_kept:.2f} / {edges_in_place:.2f}".format(**f8["photos"]),
        ),
        (f"{single['n']} single-object", f"{single['color']:.1%} / {single['shape']:.1%} / {single['position']:.1%}"),
        (f"{single['n']} single-object", f"| {single['all']:.1%} (64 px: {s64['all']:.1%}) |"),
        (
            f"{gen['paraphrased']['n']} reworded",
            f"| {gen['paraphrased']['all']:.1%} / {gen['paraphrased_known_words']['all']:.1%} "
            f"(64 px: {g64['paraphrased']['all']:.1%}) |",
        ),
        (f"{gen['two']['n']} two-object", f"| {gen['two']['all']:.1%} (64 px: {g64['two']['all']:.1%}) |"),
        (
            "read by the strict judge",
            f"| {strict['single']['all']:.1%} / {strict['two']['all']:.1%} (64 px: "
            f"{strict64['single']['all']:.1%} / {strict64['two']['all']:.1%}) |",
        ),
        ("free prompts", f"| {gen['free']['min']} (64 px: {g64['free']['min']}) |"),
    ]
    people = json.loads((SHIPPED.parent / "shape-verifier" / "eval_judge.json").read_text())["people"].values()
    n = sum(g["objects"] for g in people)
    agrees = {k: sum(g[k] * g["objects"] for g in people) / n for k in ("strict_agrees", "lenient_agrees")}
    expected.append(
        (
            f"strict judge vs a person, {n} objects labelled blind",
            f"| {agrees['strict_agrees']:.1%} (lenient: {agrees['lenient_agrees']:.1%}) |",
        )
    )
    emoji = json.loads((SHIPPED.parent / "mmgen-emoji" / "eval_retrieval.json").read_text())["emoji-reworded"]
    expected.append((f"mmgen-emoji, {emoji['n']} reworded", f"| {emoji['pixels']['top5']:.1%} (chance"))
    for about, figure in expected:
        assert any(about in row and figure in row for row in rows), (about, figure)
