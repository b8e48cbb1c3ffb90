"""Bad input a user may type: one clear line, before any work that it would waste (found by a probe of the CLI)."""

import json
from pathlib import Path

import pytest

from mmgen.cli import main

LONG = "a" * 300  # a file name longer than any file system allows


@pytest.fixture
def other_model_dir(tmp_path) -> str:
    """A folder whose config is some other model's (a DiT), with no vqvae/ inside."""
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "DiT"}))
    return str(tmp_path)


def test_a_model_that_is_no_tokenizer_is_named_not_loaded(other_model_dir, tmp_path, capsys):
    """diffusers reads a folder without vqvae/ as the model itself: it used to fail later on meta tensors."""
    args = ["--preset", "tiny", "--steps", "1", "--out", str(tmp_path / "run")]
    assert main(["train-tokenizer", "--init-from", other_model_dir, *args]) == 2
    err = capsys.readouterr().err
    assert f"--init-from {other_model_dir}: no mmgen tokenizer in" in err
    assert "it holds a DiT, not a VQVAE" in err
    assert main(["eval-tokenizer", "--model", other_model_dir, "--folder", str(tmp_path)]) == 2
    assert "it holds a DiT, not a VQVAE" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "option, message",
    [
        (["--num-codes", "0"], "--num-codes must be between 2 and 65536, got 0"),
        (["--num-codes", "-5"], "--num-codes must be between 2 and 65536, got -5"),
        (["--resolution", "100000"], "--resolution is the training crop's side: at most 1024, got 100000"),
        (["--resolution", "30"], "--resolution must be a multiple of 4, its downsampling; got 30"),
    ],
)
def test_tokenizer_training_refuses_sizes_out_of_range(tmp_path, capsys, option, message):
    assert main(["train-tokenizer", "--preset", "tiny", "--steps", "1", "--out", str(tmp_path / "r"), *option]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_trainer_refused_for_its_data_leaves_no_run_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for trainer in ("train-tokenizer", "train-generator"):
        out = tmp_path / trainer
        assert main([trainer, "--data", str(tmp_path / "empty"), "--steps", "1", "--out", str(out)]) == 2
        assert "no images found" in capsys.readouterr().err
        assert not out.exists()


def test_an_output_that_cannot_be_written_fails_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """Permissions alone pass root and miss a name too long: the file is really opened (and not left behind)."""
    import mmgen.pipeline

    def never(*args, **kwargs):
        raise AssertionError("the model loaded before --out was checked")

    monkeypatch.setattr(mmgen.pipeline.MMGenPipeline, "from_pretrained", never)
    for option in ("--out", "--tokens"):
        extra = ["--out", str(tmp_path / "ok.png")] if option == "--tokens" else []
        assert main(["generate", "a red circle", *extra, option, str(tmp_path / f"{LONG}.png")]) == 2
        assert f"{option} {tmp_path}/{LONG}.png: cannot be written" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # ok.png was only tried
    kept = tmp_path / "kept.png"
    kept.write_bytes(b"old")
    with pytest.raises(AssertionError, match="the model loaded"):  # an existing file passes, untouched
        main(["generate", "a red circle", "--out", str(kept)])
    assert kept.read_bytes() == b"old"


@pytest.mark.parametrize(
    "command, message",
    [
        (["eval-tokenizer", "--out", "{tmp}/" + LONG + ".json"], "--out {tmp}/" + LONG + ".json: cannot be written"),
        (["eval-generator", "--out", "{tmp}/f/" + LONG + ".json"], ": cannot be written"),
        (["compare-tokenizers", "{tmp}/x.png", "--tokenizer", "t", "--out", "{tmp}/c.txt"], "must end in .png"),
        (["compare-tokenizers", "{tmp}/x.png", "--tokenizer", "t", "--max-side", "-2"], "--max-side must be 0"),
        (["encode", "{tmp}/x.png", "--out", "{tmp}/file"], "--out {tmp}/file is a file: give a folder"),
        (["encode", "{tmp}/x.png", "--out", "{tmp}/recon.png"], "--out {tmp}/recon.png is a file: give a folder"),
        # a model's own files: a results JSON written over them left the model unloadable
        (["eval-tokenizer", "--out", "{tmp}/m/vqvae/results.json"], "is a model's own file"),
        (["eval-attention", "--out", "{tmp}/m/model_index.json"], "is a model's own file"),
        (["compare-tokenizers", "{tmp}/x.png", "--tokenizer", "t", "--out", "{tmp}/x.png"], "is one of the images"),
        # an image: rewritten as JSON (eval-*), or by its own reconstruction (encode)
        (["eval-tokenizer", "--out", "{tmp}/x.png"], "--out {tmp}/x.png: the name must end in .json"),
        (["eval-generator", "--out", "{tmp}/results"], "--out {tmp}/results: the name must end in .json"),
        (["encode", "{tmp}/reconstruction.png", "--out", "{tmp}"], "its reconstruction.png would overwrite the image"),
    ],
)
def test_results_files_are_checked_before_the_work(tmp_path, capsys, command, message):
    """These used to print the whole evaluation's table (minutes) and then fail to write it."""
    (tmp_path / "file").write_text("")
    (tmp_path / "m" / "vqvae").mkdir(parents=True)  # a model folder's component
    (tmp_path / "m" / "vqvae" / "config.json").write_text("{}")
    assert main([a.format(tmp=tmp_path) for a in command]) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


def test_a_folder_named_as_a_models_part_is_not_one(tmp_path):
    from mmgen.model_paths import refuse_model_file

    refuse_model_file(str(tmp_path / "results" / "tokenizer" / "eval.json"))  # a user's folder, no model around it
    (tmp_path / "m" / "transformer").mkdir(parents=True)
    (tmp_path / "m" / "model_index.json").write_text("{}")
    with pytest.raises(ValueError, match="is a model's own file"):
        refuse_model_file(str(tmp_path / "m" / "transformer" / "eval.json"))


def test_a_prompt_of_undecodable_bytes_is_refused():
    """A Latin-1 terminal's "é" reaches Python as a lone surrogate; the text encoder's tokenizer raised a TypeError."""
    from mmgen.settings import check_prompt

    with pytest.raises(ValueError, match="not UTF-8 text"):
        check_prompt("a red caf\udce9 circle")
    assert check_prompt(" a red café circle ") == "a red café circle"


@pytest.mark.parametrize(
    "option, message",
    [
        (["--lr", "nan"], "--lr must be a finite number above 0, got nan"),
        (["--lr=-1"], "--lr must be a finite number above 0"),
        (["--width", "12"], "--width must be a multiple of 8"),
        (["--out", "{tmp}/v/train_log.jsonl"], "cannot make the folder (File exists)"),
    ],
)
def test_the_verifiers_options_fail_before_it_trains_and_keep_the_old_log(tmp_path, capsys, option, message):
    """These failed after the training (torch's "Invalid learning rate", a GroupNorm's groups) with the log of the
    verifier already in --out rewritten; now at once, and a run's log replaces the old one only once it is saved."""
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "train_log.jsonl").write_text("the shipped verifier's log\n")
    args = ["--samples", "4", "--steps", "1", "--batch-size", "2", "--out", str(tmp_path / "v")]
    assert main(["train-verifier", *args, *[o.format(tmp=tmp_path) for o in option]]) == 2
    assert message in capsys.readouterr().err
    assert (tmp_path / "v" / "train_log.jsonl").read_text() == "the shipped verifier's log\n"


def test_a_trainers_out_under_a_file_fails_before_its_data_is_read(tmp_path, capsys):
    """train-generator said "Not a directory" after encoding its training set (minutes at the default size)."""
    (tmp_path / "afile").write_text("")
    for command in ("train-generator", "train-tokenizer"):
        assert main([command, "--out", str(tmp_path / "afile" / "run")]) == 2
        assert f"--out {tmp_path}/afile/run: {tmp_path}/afile is a file, not a folder" in capsys.readouterr().err


def test_a_bad_labels_file_fails_before_the_verifier_trains(tmp_path, capsys):
    (tmp_path / "fake.png").write_bytes(b"\x89PNG")
    args = ["--samples", "4", "--steps", "1", "--batch-size", "2", "--out", str(tmp_path / "v")]
    assert main(["train-verifier", *args, "--labels", str(tmp_path / "fake.png")]) == 2
    assert f"--labels {tmp_path}/fake.png: not a labels file" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_decode_uses_the_tokenizer_its_file_names(tiny_model_dir, tmp_path, capsys):
    """Without --tokenizer, tokens decode with the model encode recorded (the default has another codebook)."""
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    assert main(["encode", str(tmp_path / "red.png"), "--out", str(tmp_path / "e"), "--model", tiny_model_dir]) == 0
    assert main(["decode", str(tmp_path / "e" / "tokens.json"), "--out", str(tmp_path / "d.png")]) == 0
    assert Image.open(tmp_path / "d.png").size == (32, 32)
    capsys.readouterr()
    data = json.loads((tmp_path / "e" / "tokens.json").read_text())
    other = Path(tiny_model_dir).parent / "elsewhere"
    Path(tiny_model_dir).rename(other)  # the recorded model is gone: a note, then the default
    assert main(["decode", str(tmp_path / "e" / "tokens.json"), "--out", str(tmp_path / "d2.png")]) == 2
    err = capsys.readouterr().err
    assert "note: the file's tokenizer cannot be loaded" in err and "error: these tokens come from a codebook" in err
    tokens = str(tmp_path / "e" / "tokens.json")
    assert main(["decode", tokens, "--out", str(tmp_path / "d3.png"), "--model", str(other)]) == 0
    assert f"note: these tokens were made with {data['model']}; decoding them with {other}" in capsys.readouterr().err


def test_the_app_stops_on_a_bad_setting_with_one_line(monkeypatch, tmp_path):
    import app

    monkeypatch.delenv("MMGEN_MODEL", raising=False)
    monkeypatch.setenv("MMGEN_MODELS", ",,")
    with pytest.raises(SystemExit, match="error: MMGEN_MODELS=',,' names no model"):
        app.main_pages()
    (tmp_path / "vqvae").mkdir()
    monkeypatch.setenv("MMGEN_MODELS", str(tmp_path))
    with pytest.raises(SystemExit, match="not a text-to-image model \\(no model_index.json\\)"):
        app.main_pages()
    monkeypatch.setenv("MMGEN_MAX_STEPS", "abc")
    with pytest.raises(SystemExit, match="error: MMGEN_MAX_STEPS must be a number"):
        app.main_pages()
    monkeypatch.setattr(app, "BF16", "true")  # MMGEN_BF16=true, read when app.py is imported
    with pytest.raises(SystemExit, match="error: MMGEN_BF16 must be auto, 0 or 1, got 'true'"):
        app.main_pages()


@pytest.mark.parametrize(
    "command, option",
    [
        (["shapes", "--n", "2", "--out", "x"], "--seed"),
        (["train-tokenizer"], "--seed"),
        (["train-generator"], "--data-seed"),
        (["eval-tokenizer"], "--shapes-seed"),
        (["eval-retrieval", "--model", "m", "--queries", "q"], "--seed"),
    ],
)
def test_a_negative_seed_names_its_option(capsys, command, option):
    """numpy used to say "expected non-negative integer", naming no option (and only once a run had begun)."""
    with pytest.raises(SystemExit):
        main([*command, option, "-1"])
    assert f"argument {option}: must be at least 0, got -1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "part, key, value, message",
    [
        ("transformer", "num_heads", 0, "a DiT's hidden_size 32 must split into num_heads 0 heads"),
        ("transformer", "sample_size", 0, "a 0x0 latent grid does not split into 2x2 patches"),
        ("transformer", "hidden_size", "abc", "no DiT can be built from its config.json"),
        ("transformer", "scaling_factor", "x", "a DiT's scaling_factor is a number above 0, got 'x'"),
        ("transformer", "depth", 3, "its weights do not fit its config.json (20 tensors differ: blocks.2."),
        ("transformer", "depth", 1, "its weights do not fit its config.json (20 tensors differ: blocks.1."),
        ("vqvae", "num_codes", "x", "no VQVAE can be built from its config.json (randn() received"),
        ("scheduler", "beta_schedule", "nonsense", "nonsense is not implemented for"),
    ],
)
def test_a_config_edited_wrong_is_one_line(tiny_pipe, tmp_path, capsys, part, key, value, message):
    """A config.json value edited into nonsense failed in the model's code (ZeroDivisionError, a TypeError, a meta
    tensor), or with a depth one short drew from a model missing a block, with only a warning."""
    tiny_pipe.save_pretrained(tmp_path / "m")
    path = tmp_path / "m" / part / ("scheduler_config.json" if part == "scheduler" else "config.json")
    config = json.loads(path.read_text())
    path.write_text(json.dumps(config | {key: value}))
    capsys.readouterr()  # the save's progress bar
    assert main(["generate", "a red circle", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err.splitlines()[-1], err
    assert not (tmp_path / "x.png").exists()
