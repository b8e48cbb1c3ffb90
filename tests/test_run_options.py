"""A training run's numbers are checked before anything loads (mmgen/training/run_options.py)."""

from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from mmgen.cli import build_parser, main
from mmgen.training.run_options import check_run_options, kept_bytes


@pytest.mark.parametrize("command", ["train-tokenizer", "train-generator"])
def test_the_defaults_pass(command):
    check_run_options(build_parser().parse_args([command]))


@pytest.mark.parametrize(
    "command, option, value, message",
    [
        ("train-generator", "--log-every", "0", "--log-every must be at least 1, got 0"),
        ("train-generator", "--checkpoint-every", "0", "--checkpoint-every must be at least 1"),
        ("train-tokenizer", "--val-every", "0", "--val-every must be at least 1"),
        ("train-generator", "--steps", "0", "--steps must be at least 1"),
        ("train-tokenizer", "--lr", "-1e-3", "--lr must be 0 or more"),
        ("train-generator", "--lr", "nan", "--lr must be a finite number"),
        ("train-generator", "--ema-decay", "1.5", "--ema-decay must be between 0 and 1"),
        ("train-generator", "--caption-dropout", "-0.1", "--caption-dropout must be between 0 and 1"),
        ("train-tokenizer", "--warmup-steps", "-5", "--warmup-steps must be 0 or more"),
        ("train-generator", "--text-refiner-layers", "-1", "--text-refiner-layers must be 0 or more"),
        ("train-generator", "--sample-size", "0", "--sample-size must be at least 1"),
    ],
)
def test_numbers_out_of_range_are_one_clear_line(command, option, value, message):
    args = build_parser().parse_args([command, f"{option}={value}"])
    with pytest.raises(ValueError, match=message):
        check_run_options(args)


@pytest.mark.parametrize("command", ["train-tokenizer", "train-generator"])
def test_the_image_folder_is_not_a_runs_out(command, tmp_path, monkeypatch):
    """A run trained into its own image folder wrote its log there, and every later read of the folder (its own
    --resume too) found "no images": the folder had become a run's."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pics").mkdir()
    for out in ("pics", "./pics/", str(tmp_path / "pics")):
        args = build_parser().parse_args([command, "--data", "pics", "--out", out])
        with pytest.raises(ValueError, match="--out is the image folder itself"):
            check_run_options(args)
    check_run_options(build_parser().parse_args([command, "--data", "pics", "--out", "pics/run"]))


def test_a_recipe_stage_out_of_range_fails_before_the_first_stage_trains(tmp_path):
    from mmgen.training.train_generator import main

    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'model = "{tmp_path / "m"}"\nscheduler = "ddpm"\n[generator]\nsteps = 2\n'
        f'[[generator.stages]]\nout = "{tmp_path / "a"}"\n'
        f'[[generator.stages]]\nout = "{tmp_path / "b"}"\nlog_every = 0\n'
    )
    with pytest.raises(ValueError, match="--log-every must be at least 1"):
        main(build_parser().parse_args(["train-generator", "--recipe", str(recipe)]))
    assert not (tmp_path / "a").exists()


def test_a_log_cut_short_is_a_run_not_finished_and_a_broken_line_is_named(tmp_path):
    from mmgen.training.recipe import read_log

    log = tmp_path / "train_log.jsonl"
    log.write_text('{"command": "x"}\n{"step": 50, "loss": 0.1}\n{"step": 1')
    assert read_log(log) == [{"command": "x"}, {"step": 50, "loss": 0.1}]
    log.write_text('{"command": "x"}\n{"step": 1\n{"done": true}\n')
    with pytest.raises(ValueError, match=r"train_log.jsonl: line 2 is not JSON .*delete that line to go on"):
        read_log(log)


def test_a_resumed_run_drops_the_line_cut_short_before_it_appends(tmp_path):
    from mmgen.training.checkpoints import append_log
    from mmgen.training.recipe import read_log

    log = tmp_path / "train_log.jsonl"
    log.write_text('{"command": "x"}\n{"step": 1')
    append_log(log, {"step": 2})
    assert read_log(log) == [{"command": "x"}, {"step": 2}]


@pytest.mark.parametrize("command", ["train-tokenizer", "train-generator"])
def test_fp16_on_the_cpu_is_refused_rather_than_trained_in_float32(command, tmp_path, monkeypatch):
    """accelerate turns fp16 autocast off on the CPU: the run would log fp16 and train in float32. Refused, whether
    --mixed-precision or accelerate's own setting (`accelerate launch --mixed_precision fp16`) asks for it."""
    from mmgen.training.processes import make_accelerator

    args = build_parser().parse_args([command, "--out", str(tmp_path), "--mixed-precision", "fp16", "--cpu"])
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        make_accelerator(args)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    args = build_parser().parse_args([command, "--out", str(tmp_path), "--cpu"])
    assert args.mixed_precision is None  # the option's default leaves it to accelerate
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        make_accelerator(args)


def test_a_step_keeps_what_its_batch_needs_once_per_item():
    """The measure `check_batch_fits` rests on: what autograd keeps for a small net grows by the same bytes with
    each item (a (16, 8, 8) fp32 output of the conv, kept by the ReLU), and the weights count once."""
    conv, accelerator = torch.nn.Conv2d(1, 16, 3, padding=1), Accelerator(cpu=True)

    def loss_of(n):
        return conv(torch.zeros(n, 1, 8, 8)).relu().sum()

    kept = [kept_bytes(loss_of, n, accelerator) for n in (1, 2, 3)]
    assert kept[2] - kept[1] == kept[1] - kept[0] >= 16 * 8 * 8 * 4


@pytest.mark.parametrize("command", ["train-tokenizer", "train-generator"])
def test_a_batch_that_cannot_fit_is_refused_before_it_is_drawn(command, tiny_model_dir, tmp_path, monkeypatch, capsys):
    """`--batch-size 60000` drew its 60,000 scenes for a minute and a half, then ended in the allocator's
    traceback (30000: killed by the system, without a word). Now it is one line before a step is drawn, and a
    batch that fits is not refused."""
    import psutil

    free = SimpleNamespace(available=20 * 2**20)  # 20 MiB free
    monkeypatch.setattr(psutil, "virtual_memory", lambda: free)
    run = [command, "--preset", "tiny", "--steps", "1", "--resolution" if "tokenizer" in command else "--num-samples"]
    run += ["32", "--vqvae", tiny_model_dir, "--cache-dir", ""] if "generator" in command else ["32"]
    assert main(run + ["--batch-size", "20000", "--out", str(tmp_path / "big")]) == 2
    said = capsys.readouterr().err
    assert "error: --batch-size 20000 does not fit: its activations alone take" in said
    assert "GiB, and cpu memory has 0.0 GiB free. A smaller --batch-size fits" in said
    assert not (tmp_path / "big").exists()
    assert main(run + ["--batch-size", "2", "--out", str(tmp_path / "small")]) == 0
