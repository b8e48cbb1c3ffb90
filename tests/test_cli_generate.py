import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmgen.cli import main


@pytest.fixture
def pipe_dir(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    return str(tmp_path / "pipe")


def test_generate_writes_image_tokens_and_trajectory(pipe_dir, tmp_path, capsys):
    out = tmp_path / "img.png"
    args = [
        "generate",
        "a red circle",
        "--model",
        pipe_dir,
        "--out",
        str(out),
        "--steps",
        "3",
        "--trajectory",
        str(tmp_path / "t.gif"),
        "--tokens",
        str(tmp_path / "tok.json"),
        "--scheduler",
        "ddim",
    ]
    assert main(args) == 0
    assert Image.open(out).size == (32, 32)
    tokens = json.loads((tmp_path / "tok.json").read_text())
    assert tokens["shape"] == [8, 8]
    assert tokens["model"] == str(Path(pipe_dir).resolve())  # as typed, `decode` elsewhere fell back to mmgen-base
    gif = Image.open(tmp_path / "t.gif")
    assert gif.n_frames == 3
    assert gif.size == (4 * 32, 4 * 32 + 40)  # enlarged 4x, each frame over its step's line, as the app's export
    assert "3 steps" in capsys.readouterr().out


def test_same_seed_same_image(pipe_dir, tmp_path):
    for name in ("a.png", "b.png"):
        assert (
            main(
                [
                    "generate",
                    "a blue star",
                    "--model",
                    pipe_dir,
                    "--out",
                    str(tmp_path / name),
                    "--steps",
                    "2",
                    "--seed",
                    "7",
                ]
            )
            == 0
        )
    assert list(Image.open(tmp_path / "a.png").getdata()) == list(Image.open(tmp_path / "b.png").getdata())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["   "], "Type a prompt"),
        (["x", "--steps", "0"], "1..1000"),
        (["x", "--steps", "1001"], "1..1000"),
        (["x", "--guidance", "-1"], ">= 0"),
        (["x" * 3000], "too long"),
        (["x", "--codebook-snap", "2"], "0..1"),
        (["x", "--candidates", "0"], "1..16"),
    ],
)
def test_generate_bad_input_is_a_clear_error(pipe_dir, tmp_path, capsys, extra, message):
    assert main(["generate", *extra, "--model", pipe_dir, "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_scheduler_is_refused(pipe_dir, capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", "a red circle", "--model", pipe_dir, "--scheduler", "bogus"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_guidance_interval_reaches_the_pipeline(pipe_dir, tmp_path, monkeypatch, capsys):
    from mmgen.pipeline import MMGenPipeline
    from mmgen.settings import DEFAULT_GUIDANCE_INTERVAL

    seen, call = [], MMGenPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append(kwargs["guidance_interval"])
        return call(self, *args, **kwargs)

    monkeypatch.setattr(MMGenPipeline, "__call__", spy)
    for extra in (["--guidance-interval", "all"], ["--guidance-interval", "100,900"], []):
        assert (
            main(
                [
                    "generate",
                    "a red circle",
                    "--model",
                    pipe_dir,
                    "--out",
                    str(tmp_path / "x.png"),
                    "--steps",
                    "2",
                    "--candidates",
                    "1",
                    *extra,
                ]
            )
            == 0
        )
    assert seen == [None, (100.0, 900.0), DEFAULT_GUIDANCE_INTERVAL]
    for bad in ("900,100", "250", "low,high"):
        with pytest.raises(SystemExit) as e:
            main(["generate", "a red circle", "--model", pipe_dir, "--guidance-interval", bad])
        assert e.value.code == 2 and "LOW,HIGH" in capsys.readouterr().err


def test_generate_samples_at_the_models_own_defaults_unless_told(tiny_pipe, tmp_path, capsys):
    from mmgen.pipeline import MMGenPipeline

    own = MMGenPipeline(**tiny_pipe.components, sampling_defaults={"num_inference_steps": 3})
    own.save_pretrained(tmp_path / "pipe")
    base = ["generate", "a red circle", "--model", str(tmp_path / "pipe"), "--candidates", "1"]
    for extra, steps in (([], 3), (["--steps", "2"], 2)):
        assert main([*base, "--out", str(tmp_path / "x.png"), "--trajectory", str(tmp_path / "t.gif"), *extra]) == 0
        assert f"({steps} steps)" in capsys.readouterr().out  # the trajectory's frames
    assert main([*base, "--steps", "0"]) == 2  # a bad value is refused before the model loads
    assert "Steps must be a whole number" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--out", "{tmp}/folder"], "--out {tmp}/folder is a folder: give a file name such as {tmp}/folder/image.png"),
        (["--out", "{tmp}/a.txt"], "--out {tmp}/a.txt: the name must end in .png or "),
        (["--out", "{tmp}/file/x.png"], "--out {tmp}/file/x.png: cannot make its folder"),
        (["--trajectory", "{tmp}/t.mp4"], "--trajectory {tmp}/t.mp4: the name must end in .gif or .webp or .png"),
        (
            ["--tokens", "{tmp}/folder"],
            "--tokens {tmp}/folder is a folder: give a file name such as {tmp}/folder/tokens.json",
        ),
        (["--attention", "{tmp}/file/w.png"], "--attention {tmp}/file/w.png: cannot make its folder"),
        (["--tokens", "-"], "--tokens -: the name must end in .json"),  # wrote a file named "-"
        (["--out", "{tmp}/x.png", "--trajectory", "{tmp}/x.png"], "must name different files"),  # one lost
    ],
)
def test_generate_checks_every_output_name_before_loading_the_model(tmp_path, capsys, monkeypatch, extra, message):
    import mmgen.pipeline

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(mmgen.pipeline.MMGenPipeline, "from_pretrained", never)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    args = ["generate", "a red circle", "--out", str(tmp_path / "ok.png")] + [a.format(tmp=tmp_path) for a in extra]
    assert main(args) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err


def test_generate_makes_the_folders_of_every_output(pipe_dir, tmp_path):
    args = ["generate", "a red circle", "--model", pipe_dir, "--steps", "2", "--candidates", "1"]
    outs = ["--out", "a/x.png", "--trajectory", "b/t.gif", "--tokens", "c/t.json", "--attention", "d/w.png"]
    assert main(args + [o if o.startswith("--") else str(tmp_path / o) for o in outs]) == 0
    assert all((tmp_path / p).is_file() for p in ("a/x.png", "b/t.gif", "c/t.json", "d/w.png"))


def test_generate_shows_the_sampling_bar_but_no_loading_bars(pipe_dir, tmp_path, capsys):
    """Loading printed a bar per component and per weights shard ("Loading checkpoint shards"); the command now
    prints what it did and the sampling loop's bar."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.enable_progress_bar()  # as in a fresh process (another test may have turned it off)
    out = str(tmp_path / "x.png")
    assert main(["generate", "a red circle", "--steps", "2", "--model", pipe_dir, "--out", out]) == 0
    err = capsys.readouterr().err
    assert "Loading pipeline components" not in err and "2/2" in err


def test_a_run_card_draws_its_image_again(pipe_dir, tmp_path, capsys):
    """--card writes what the image depends on; --from-card draws the same pixels with no other option, and an
    option typed beside it replaces the card's value (said on stderr)."""
    card = tmp_path / "card.json"
    first = ["generate", "a blue star", "--model", pipe_dir, "--steps", "3", "--seed", "5", "--candidates", "2"]
    assert main([*first, "--scheduler", "ddim", "--out", str(tmp_path / "a.png"), "--card", str(card)]) == 0
    written = json.loads(card.read_text())
    assert written["prompt"] == "a blue star" and written["seed"] == 5 and written["steps"] == 3
    assert written["scheduler"] == "ddim" and written["num_candidates"] == 2
    assert written["model"] == str(Path(pipe_dir).resolve())
    assert main(["generate", "--from-card", str(card), "--out", str(tmp_path / "b.png")]) == 0
    assert "note:" not in capsys.readouterr().err  # the same model, nothing replaced
    pixels = [np.asarray(Image.open(tmp_path / n)) for n in ("a.png", "b.png")]
    assert np.array_equal(pixels[0], pixels[1])
    again = ["generate", "--from-card", str(card), "--seed", "6", "--out", str(tmp_path / "c.png")]
    assert main(again) == 0
    assert "in place of the card's values: --seed" in capsys.readouterr().err
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "c.png")), pixels[0])  # another seed: another image


def test_a_card_from_another_model_or_a_bad_card_is_said(pipe_dir, tmp_path, capsys, monkeypatch):
    from mmgen.run_card import make_run_card
    from mmgen.settings import SamplingSettings

    card = make_run_card(SamplingSettings("a red circle", num_inference_steps=2, num_candidates=1), "mmgen-base")
    (tmp_path / "app.json").write_text(json.dumps(card))
    args = ["generate", "--from-card", str(tmp_path / "app.json"), "--out", str(tmp_path / "x.png")]
    assert main([*args, "--model", pipe_dir]) == 0
    assert "the card was made with model 'mmgen-base'" in capsys.readouterr().err
    bf16 = make_run_card(
        SamplingSettings("a red circle", num_inference_steps=2, num_candidates=1), pipe_dir, None, "bf16"
    )
    (tmp_path / "bf16.json").write_text(json.dumps(bf16))  # a card of an app serving in bf16 (MMGEN_BF16)
    assert main(["generate", "--from-card", str(tmp_path / "bf16.json"), "--out", str(tmp_path / "x.png")]) == 0
    said = capsys.readouterr().err
    assert "matmuls in bf16, these run in float32" in said and "--bf16 draws it with the matmuls" in said
    bf16_run = ["generate", "--from-card", str(tmp_path / "bf16.json"), "--bf16", "--card", str(tmp_path / "b.json")]
    assert main([*bf16_run, "--out", str(tmp_path / "b.png")]) == 0  # drawn as made: no note
    assert "matmuls" not in capsys.readouterr().err
    assert json.loads((tmp_path / "b.json").read_text())["matmuls"] == "bf16"
    card["model"] = str(tmp_path / "gone")  # a folder on the machine that made it
    (tmp_path / "other.json").write_text(json.dumps(card))
    assert main(["generate", "--from-card", str(tmp_path / "other.json"), "--out", str(tmp_path / "y.png")]) == 2
    assert "choose another with --model" in capsys.readouterr().err
    from mmgen.pipeline import MMGenPipeline

    def no_load(*a, **k):
        raise AssertionError("a bad card or a missing prompt must be refused before the model loads")

    monkeypatch.setattr(MMGenPipeline, "from_pretrained", no_load)
    (tmp_path / "bad.json").write_text('{"format": "mmgen-run-v1", "prompt": "x"}')
    for extra, message in [
        (["--from-card", str(tmp_path / "bad.json")], "lacks a valid field: steps"),
        (["--from-card", str(tmp_path / "none.json")], "could not be read"),
        ([], "give a prompt, or a run card"),
        (["--from-card", str(tmp_path / "app.json"), "--steps", "0"], "1..1000"),
    ]:
        assert main(["generate", *extra, "--model", pipe_dir, "--out", str(tmp_path / "z.png")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_tokens_files_and_cards_name_a_shipped_model_by_its_name(tmp_path, monkeypatch):
    """A tokens file recorded /abs/path/to/assets/mmgen-base: moved to another checkout, decode fell back."""
    from mmgen.cli import recorded_model
    from mmgen.tokens import DEFAULT_MODEL

    monkeypatch.chdir(tmp_path)
    assert recorded_model(DEFAULT_MODEL) == recorded_model("assets/mmgen-base") == "mmgen-base"
    (tmp_path / "mine").mkdir()
    assert recorded_model("mine") == str((tmp_path / "mine").resolve())  # a folder of one's own: its full path
    assert recorded_model("owner/name") == "owner/name"  # a Hub id as it is
