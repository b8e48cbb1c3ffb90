import json

import numpy as np
import pytest
from PIL import Image

from mmgen.cli import main
from mmgen.data.shapes import shapes_sample


@pytest.fixture
def scene_png(tmp_path):
    path = tmp_path / "scene.png"
    shapes_sample(0, 1).image.save(path)
    return path


def test_encode_then_decode_round_trip(tiny_model_dir, scene_png, tmp_path, capsys):
    out = tmp_path / "enc"
    assert main(["encode", str(scene_png), "--out", str(out), "--model", tiny_model_dir]) == 0
    printed = capsys.readouterr().out
    assert "PSNR" in printed and "16x16 tokens" in printed
    doc = json.loads((out / "tokens.json").read_text())
    assert doc["shape"] == [16, 16] and len(doc["tokens"]) == 16 and doc["model"] == tiny_model_dir
    assert doc["image_size"] == [64, 64]
    assert (
        main(["decode", str(out / "tokens.json"), "--out", str(tmp_path / "dec.png"), "--model", tiny_model_dir]) == 0
    )
    decoded = np.asarray(Image.open(tmp_path / "dec.png"))
    assert np.array_equal(decoded, np.asarray(Image.open(out / "reconstruction.png")))


def test_encode_records_the_model_mmgen_model_names(tiny_model_dir, scene_png, tmp_path, monkeypatch):
    """With MMGEN_MODEL set and no --model, the tokens file named mmgen-base, so decode took the wrong tokenizer."""
    monkeypatch.setenv("MMGEN_MODEL", tiny_model_dir)
    assert main(["encode", str(scene_png), "--out", str(tmp_path / "enc")]) == 0
    assert json.loads((tmp_path / "enc" / "tokens.json").read_text())["model"] == tiny_model_dir


def test_an_empty_mmgen_model_is_unset(monkeypatch):
    """`MMGEN_MODEL= mmgen encode ...` said "no model given"; the app already read an empty one as unset."""
    from mmgen.tokens import DEFAULT_MODEL, default_model

    for value in ("", "  "):
        monkeypatch.setenv("MMGEN_MODEL", value)
        assert default_model() == DEFAULT_MODEL


def test_encode_handles_odd_sizes_and_modes(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "odd.png"
    Image.new("P", (70, 45)).save(path)
    assert main(["encode", str(path), "--out", str(tmp_path / "o"), "--model", tiny_model_dir]) == 0
    assert "note: encoded at 68x44" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_encode_bad_file_is_a_clear_error(tiny_model_dir, tmp_path, capsys, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    assert main(["encode", str(path), "--out", str(tmp_path / "o"), "--model", tiny_model_dir]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"tokens": [[0, 1], [2]]}, "rectangular"),
        ({"tokens": [[0, 999]]}, "code ids must lie"),
        ({"tokens": [[0, 1.5]]}, "integer"),
        ({"tokens": []}, "non-empty"),
        (
            {"tokens": [[1]], "num_codes": 7},
            "codebook of 7 codes; this model has 64: decode them with the tokenizer that made them (--model",
        ),
        ({"tokens": [[1]], "num_codes": "64"}, "codebook of '64'"),  # a string, said as one
        ({"tokens": [[0, 10**23]]}, "code ids must lie"),  # beyond int64
        ({"tokens": [[0, 1]], "shape": 8}, "'shape' says 8"),
        ({"tokens": [[0, 1]], "shape": None}, "'shape' says None"),
        ([1, 2], "not an mmgen tokens file"),
    ],
)
def test_decode_bad_tokens_is_a_clear_error(tiny_model_dir, tmp_path, capsys, doc, message):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    assert main(["decode", str(path), "--out", str(tmp_path / "x.png"), "--model", tiny_model_dir]) == 2
    assert message in capsys.readouterr().err


def test_decode_invalid_json(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "t.json"
    path.write_text("{oops")
    assert main(["decode", str(path), "--out", str(tmp_path / "x.png"), "--model", tiny_model_dir]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_shapes_command(tmp_path, capsys):
    assert main(["shapes", "--n", "3", "--out", str(tmp_path / "s")]) == 0
    assert len((tmp_path / "s" / "metadata.jsonl").read_text().splitlines()) == 3
    assert main(["shapes", "--n", "0", "--out", str(tmp_path / "s")]) == 2
    assert main(["shapes", "--n", "1", "--size", "128", "--out", str(tmp_path / "big")]) == 0
    assert Image.open(tmp_path / "big" / "000000.png").size == (128, 128)  # the spec's 128 px: mmgen-base's size
    assert "128 px" in capsys.readouterr().out


def test_encode_takes_a_folder_named_like_a_file_that_exists(tmp_path, capsys):
    """`--out recon.png` is refused unless recon.png is a folder already (then it is the user's folder)."""
    (tmp_path / "out.png").mkdir()
    assert main(["encode", str(tmp_path / "missing.png"), "--out", str(tmp_path / "out.png")]) == 2
    said = capsys.readouterr().err
    assert "missing.png: no such file" in said and "is a file" not in said  # past the --out check
    assert main(["encode", str(tmp_path / "missing.png"), "--out", str(tmp_path / "new.PNG")]) == 2
    assert "is a file: give a folder" in capsys.readouterr().err and not (tmp_path / "new.PNG").exists()


def test_console_script_is_installed():
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "mmgen"  # the venv's bin/, whether or not it is on PATH
    assert exe.exists(), "pip install -e . should install the `mmgen` console script"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("shapes", "encode", "decode", "train-tokenizer", "eval-tokenizer"):
        assert cmd in out


@pytest.mark.parametrize(
    "command, message",
    [
        (["decode", "{tmp}/huge.json", "--out", "{tmp}/d.png"], "a 300x300 grid: at most 256 tokens a side"),
        (["decode", "{tmp}/ok.json", "--out", "{tmp}"], "--out {tmp} is a folder"),
        (["encode", "{tmp}/scene.png", "--out", "{tmp}/o", "--max-side", "-1"], "--max-side must be 0 (no limit)"),
        (["caption", "{tmp}/scene.png", "--top", "0"], "--top must be at least 1, got 0"),
        (["caption", "{tmp}/scene.png", "--captions", "{tmp}/latin1.txt"], "latin1.txt: not a UTF-8 text file"),
    ],
)
def test_out_of_range_numbers_and_names_are_one_clear_line(
    tiny_model_dir, scene_png, tmp_path, capsys, command, message
):
    (tmp_path / "huge.json").write_text(json.dumps({"tokens": [[0] * 300] * 300}))
    (tmp_path / "ok.json").write_text(json.dumps({"tokens": [[0] * 4] * 4}))
    (tmp_path / "latin1.txt").write_bytes("a red circle \xe9\n".encode("latin-1"))
    assert main([a.format(tmp=tmp_path) for a in command] + ["--model", tiny_model_dir]) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


def test_ctrl_c_is_a_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    import mmgen.data.shapes

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mmgen.data.shapes, "write_shapes", interrupted)
    assert main(["shapes", "--n", "2", "--out", str(tmp_path / "s")]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    import mmgen.training.train_tokenizer

    monkeypatch.setattr(mmgen.training.train_tokenizer, "main", interrupted)
    assert main(["train-tokenizer", "--out", str(tmp_path / "run")]) == 130  # e.g. while encoding its data
    said = capsys.readouterr().err
    assert said.startswith("\ninterrupted") and "before its first checkpoint: nothing to resume" in said
    (tmp_path / "run" / "checkpoints" / "step-5").mkdir(parents=True)  # a run stopped in training saves one first
    assert main(["train-tokenizer", "--out", str(tmp_path / "run")]) == 130
    assert "--resume, or the recipe again, continues from the last checkpoint" in capsys.readouterr().err


CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 31457280000 bytes. Error code 12 (Cannot allocate memory)"
)
CUDA_OOM = "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.10 GiB"


@pytest.mark.parametrize(
    "command, error, said",
    [
        (["train-tokenizer", "--batch-size", "60"], CPU_OOM, "(tried to allocate 29.3 GiB): a --batch-size under 60"),
        (["train-generator", "--batch-size", "9"], CUDA_OOM, "(tried to allocate 20.00 GiB): a --batch-size under 9"),
        (["encode", "x.png", "--max-side", "0"], "out of memory", "(the device's memory is full): a smaller --max"),
    ],
)
def test_out_of_memory_is_a_line_not_a_traceback(command, error, said, tmp_path, capsys, monkeypatch):
    """An allocator's failure (a --batch-size, or an image, too large for the memory) says what to make smaller."""
    import mmgen.tokens
    import mmgen.training.train_generator
    import mmgen.training.train_tokenizer

    def out_of_memory(*args, **kwargs):
        raise RuntimeError(error)

    for module, name in [(mmgen.training.train_tokenizer, "main"), (mmgen.training.train_generator, "main")]:
        monkeypatch.setattr(module, name, out_of_memory)
    monkeypatch.setattr(mmgen.tokens, "encode_image", out_of_memory)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    monkeypatch.chdir(tmp_path)
    assert main(command + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory " + said) and err.count("\n") == 1, err


def test_another_runtime_error_is_not_called_out_of_memory(tmp_path, monkeypatch):
    import mmgen.training.train_tokenizer

    def broken(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(mmgen.training.train_tokenizer, "main", broken)
    with pytest.raises(RuntimeError, match="mat1 and mat2"):  # a bug keeps its traceback
        main(["train-tokenizer", "--out", str(tmp_path / "run")])


@pytest.mark.parametrize(
    "command, message",
    [
        (["eval-attention", "--n", "0"], "argument --n: must be at least 1, got 0"),
        (["eval-tokenizer", "--n-shapes", "-3"], "argument --n-shapes: must be at least 1, got -3"),
        (["eval-generator", "--sweep", "--sweep-n-two", "0"], "argument --sweep-n-two: must be at least 1"),
        (["eval-judge", "--n-drawings", "many"], "argument --n-drawings: expected a whole number, got 'many'"),
        (["train-verifier", "--batch-size", "0"], "argument --batch-size: must be at least 1"),
    ],
)
def test_evaluations_refuse_counts_below_one_before_loading_anything(command, message, capsys):
    """`--n 0` used to run the evaluation and end in numpy's mean of nothing (a nan, or a traceback)."""
    with pytest.raises(SystemExit) as exit_:
        main(command)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_every_option_of_every_command_says_what_it_does():
    import argparse

    from mmgen.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    bare = {
        name: [a.option_strings[-1] if a.option_strings else a.dest for a in sub._actions if not a.help]
        for name, sub in commands.items()
    }
    assert {name: options for name, options in bare.items() if options} == {}


def test_the_command_list_is_quick_and_each_command_builds_its_own_options_only():
    """`mmgen --help` used to import torch, diffusers and every trainer (7 s) to list the commands."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom mmgen.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "generate" in out and "train-generator" in out and out.split()[-2:] == ["False", "False"]

    from mmgen.cli_parser import build_parser

    shapes = build_parser("shapes")
    assert shapes.parse_args(["shapes", "--n", "3", "--out", "x"]).n == 3
    with pytest.raises(SystemExit):  # the other commands' options were not built
        shapes.parse_args(["encode", "image.png", "--out", "x"])


def test_help_says_each_default_once(capsys):
    with pytest.raises(SystemExit):
        main(["shapes", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "2 is held out for their evaluation (default: 0)" in text and text.count("(default: 0)") == 1
    assert "--n N how many scenes" in text and "how many scenes (default" not in text  # required: no default
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 250,999)" in text and "image.png" in text and ") (default:" not in text  # said once


def test_ctrl_c_while_a_command_loads_is_one_line(monkeypatch, capsys):
    from mmgen import cli_parser

    def interrupted(parser):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli_parser.COMMANDS, "shapes", ("write shapes-v1 samples", interrupted))
    assert main(["shapes", "--n", "1", "--out", "x"]) == 130
    assert capsys.readouterr().err == "interrupted\n"
