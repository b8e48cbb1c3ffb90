"""Stops, damaged checkpoints, full disks and stray folders: a run says what happened and goes on where it can."""

import json
import shutil

import pytest
import torch
from run_helpers import interrupt

from mmgen.cli import build_parser
from mmgen.models.vqvae import VQVAE
from mmgen.training.checkpoints import checkpoints, saving_model, writing_checkpoint
from mmgen.training.train_tokenizer import main

TINY = ["--preset", "tiny", "--resolution", "32", "--batch-size", "4", "--log-every", "1", "--warmup-steps", "1"]


def _args(out, *extra):
    return build_parser().parse_args(["train-tokenizer", "--out", str(out), *TINY, "--val-every", "100", *extra])


def _cut_short(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_resume_passes_over_a_damaged_checkpoint_to_the_one_before(tmp_path, capsys):
    out = tmp_path / "run"
    main(_args(out, "--steps", "4", "--checkpoint-every", "1"))  # keeps step-2 and step-3
    unbroken = VQVAE.from_pretrained(out / "vqvae").state_dict()
    interrupt(out, "vqvae")
    _cut_short(out / "checkpoints" / "step-3" / "training_state.pt")  # as a full disk leaves it
    capsys.readouterr()
    main(_args(out, "--steps", "4", "--checkpoint-every", "1", "--resume"))
    said = capsys.readouterr().out
    assert "step-3 is damaged (training_state.pt:" in said and "resumed from" in said and "step-2" in said
    resumed = VQVAE.from_pretrained(out / "vqvae").state_dict()
    assert all(torch.equal(unbroken[k], resumed[k]) for k in unbroken)  # from step 2, exactly as the unbroken run
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "step" in r] == [1, 2, 3, 4]


def test_resume_refuses_when_no_checkpoint_is_whole(tmp_path):
    out = tmp_path / "run"
    main(_args(out, "--steps", "3", "--checkpoint-every", "1"))  # keeps step-1 and step-2
    interrupt(out, "vqvae")
    _cut_short(out / "checkpoints" / "step-2" / "vqvae" / "diffusion_pytorch_model.safetensors")
    (out / "checkpoints" / "step-1" / "training_state.pt").write_bytes(bytes(1000))  # zeros, as after a power cut
    with pytest.raises(ValueError, match="no checkpoint in .* is whole: delete the folder to train again"):
        main(_args(out, "--steps", "3", "--checkpoint-every", "1", "--resume"))


def test_other_bytes_in_a_checkpoint_are_damage_not_a_traceback(tmp_path):
    out = tmp_path / "run"
    main(_args(out, "--steps", "2", "--checkpoint-every", "1"))
    interrupt(out, "vqvae")
    for state in out.glob("checkpoints/step-*/training_state.pt"):
        state.write_text("hello world")  # torch.load said KeyError: 101
    with pytest.raises(ValueError, match="no checkpoint in .* is whole: delete the folder to train again"):
        main(_args(out, "--steps", "2", "--checkpoint-every", "1", "--resume"))


@pytest.mark.parametrize("resume", [[], ["--resume"]])
def test_a_run_is_never_trained_into_a_folder_that_is_not_one(tmp_path, resume):
    """A published model (--resume said 'its run stopped while saving ... delete it'), a folder of models or of
    images took a run's files beside theirs; an empty --out trained into the working folder."""
    shutil.copytree("assets/mmgen-base-64", tmp_path / "model", ignore=shutil.ignore_patterns("*.safetensors"))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "cat.png").write_bytes(b"")
    for out in (tmp_path / "model", tmp_path / "images", tmp_path):
        with pytest.raises(ValueError, match="holds other files than a run's .* train into a new or empty folder"):
            main(_args(out, "--steps", "1", *resume))
    with pytest.raises(ValueError, match="--out is empty"):
        main(_args("", "--steps", "1", *resume))
    (tmp_path / "empty").mkdir()
    main(_args(tmp_path / "empty", "--steps", "1"))  # an empty folder is a new run's
    assert (tmp_path / "empty" / "vqvae" / "config.json").is_file()


def test_a_stray_folder_among_the_checkpoints_is_not_one(tmp_path):
    out = tmp_path / "run"
    main(_args(out, "--steps", "3", "--checkpoint-every", "2"))
    interrupt(out, "vqvae")
    shutil.copytree(out / "checkpoints" / "step-2", out / "checkpoints" / "step-2 copy")  # a user's backup
    assert [p.name for p in checkpoints(out)] == ["step-2"]
    main(_args(out, "--steps", "3", "--checkpoint-every", "2", "--resume"))
    assert (out / "vqvae" / "config.json").is_file()


def test_a_full_disk_while_saving_says_so_and_leaves_no_half_checkpoint(tmp_path):
    def full_disk():
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")

    with pytest.raises(OSError, match="could not write the checkpoint of step 5 into .*: .enforce fail"):
        with writing_checkpoint(tmp_path, 5) as ckpt:
            (ckpt / "half").write_text("x")
            full_disk()
    assert list((tmp_path / "checkpoints").iterdir()) == []
    with pytest.raises(
        OSError,
        match=r"could not save the trained model into .* \(is the disk full\?\).*recipe\): it continues",
    ):
        with saving_model(tmp_path / "vqvae"):
            (tmp_path / "vqvae").mkdir()
            (tmp_path / "vqvae" / "config.json").write_text("{}")  # half a model would read as a trained one
            full_disk()
    assert not (tmp_path / "vqvae").exists()


def test_a_damaged_or_unwritable_cache_of_the_encoded_set_costs_an_encoding_not_the_run(
    tmp_path, tiny_model_dir, capsys
):
    from mmgen.models.dit import DiT
    from mmgen.training.train_generator import main as train_generator

    def run(out, cache):
        extra = ["--num-samples", "16", "--steps", "2", "--val-every", "100", "--cache-dir", str(cache)]
        args = ["train-generator", "--out", str(tmp_path / out), "--vqvae", tiny_model_dir, *TINY[:2], *extra]
        train_generator(build_parser().parse_args([*args, "--batch-size", "4", "--warmup-steps", "1"]))
        return DiT.from_pretrained(tmp_path / out / "transformer").state_dict()

    cache = tmp_path / "cache"
    first = run("a", cache)
    (cached,) = cache.iterdir()
    _cut_short(cached)
    capsys.readouterr()
    again = run("b", cache)
    assert "is unreadable" in capsys.readouterr().out and cached.stat().st_size > 0  # encoded and cached again
    (tmp_path / "a-file").write_text("")
    unwritable = run("c", tmp_path / "a-file")
    assert "could not cache the encoded training set" in capsys.readouterr().out
    assert all(torch.equal(first[k], w[k]) for w in (again, unwritable) for k in first)


def test_a_stop_asked_for_saves_the_step_and_resume_goes_on_exactly(tmp_path, monkeypatch, capsys):
    from mmgen import cli
    from mmgen.training import stopping

    main(_args(tmp_path / "unbroken", "--steps", "4", "--checkpoint-every", "3"))
    unbroken = VQVAE.from_pretrained(tmp_path / "unbroken" / "vqvae").state_dict()
    out = tmp_path / "run"
    monkeypatch.setattr(stopping, "stop_requested", lambda: True)  # as if Ctrl-C came during step 1
    argv = [
        "train-tokenizer",
        "--out",
        str(out),
        *TINY,
        "--val-every",
        "100",
        "--steps",
        "4",
        "--checkpoint-every",
        "3",
    ]
    assert cli.main(argv) == 130
    assert "interrupted: " + str(out) + " has a checkpoint of step 1 (the same command with --resume" in (
        capsys.readouterr().err
    )
    assert [p.name for p in checkpoints(out)] == ["step-1"] and not (out / "vqvae").exists()
    monkeypatch.undo()
    main(_args(out, "--steps", "4", "--checkpoint-every", "3", "--resume"))
    resumed = VQVAE.from_pretrained(out / "vqvae").state_dict()
    assert all(torch.equal(unbroken[k], resumed[k]) for k in unbroken)


def test_ctrl_c_or_sigterm_asks_once_while_steps_run_and_stops_at_once_otherwise():
    import os
    import signal

    from mmgen.training.stopping import graceful_stop, stop_requested, stoppable

    before = signal.getsignal(signal.SIGINT)
    with graceful_stop():
        with pytest.raises(KeyboardInterrupt):  # loading or encoding: no step to finish, so at once
            os.kill(os.getpid(), signal.SIGINT)
        for _ in stoppable(range(1)):
            assert not stop_requested()
            os.kill(os.getpid(), signal.SIGTERM)  # a cluster's preemption: no exception, a request
            assert stop_requested()
            with pytest.raises(KeyboardInterrupt):  # asked twice: at once
                os.kill(os.getpid(), signal.SIGINT)
        for _ in stoppable(range(1)):  # Ctrl-C under `accelerate launch`: the launcher passes it on as a SIGTERM
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)  # the same request (it stopped at once, losing the step's checkpoint)
            assert stop_requested()
            with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C still stops at once
                os.kill(os.getpid(), signal.SIGINT)
    assert not stop_requested() and signal.getsignal(signal.SIGINT) is before


def test_a_run_log_names_the_command_that_runs_it_again(monkeypatch):
    """Under `accelerate launch` each process runs `python -m mmgen.cli`: the log said "cli.py train-..."."""
    from mmgen.training.checkpoints import launched_as

    monkeypatch.setattr("sys.argv", ["/somewhere/mmgen/cli.py", "train-generator"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched_as() == "accelerate launch --multi_gpu --num_processes 2 -m mmgen.cli"
    monkeypatch.delenv("WORLD_SIZE")
    assert launched_as() == "python -m mmgen.cli"
    monkeypatch.setattr("sys.argv", ["/venv/bin/mmgen", "train-generator"])
    assert launched_as() == "mmgen"


def test_a_launch_that_asked_for_several_processes_but_started_one_is_said(monkeypatch):
    """`accelerate launch --cpu --num_processes 2` (or without --multi_gpu) runs one process on one thread, unsaid."""
    from types import SimpleNamespace

    from mmgen.training.processes import launch_warnings

    one = SimpleNamespace(num_processes=1)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert launch_warnings(one) == []  # `accelerate launch` of one process: nothing to say
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # set by accelerate when more than one was asked for
    assert "--multi_gpu" in launch_warnings(one)[0]
    assert launch_warnings(SimpleNamespace(num_processes=2)) == []


def test_a_resumed_tokenizer_run_steps_on_from_the_checkpoints_rng(tmp_path, monkeypatch):
    """Dead codes restart from the global RNG (after ~70 steps: more than a test runs), so a resumed run matches an
    unbroken one only if its first step starts from the checkpoint's RNG: not moved on by the loader's seed draw
    or the building of a discriminator."""
    from mmgen.training import stopping, train_tokenizer

    out = tmp_path / "run"
    gan = ["--adversarial", "--disc-start", "0"]
    main(_args(out, "--steps", "4", "--checkpoint-every", "2", *gan))
    interrupt(out, "vqvae")
    states = []

    def recording(steps):
        for item in stopping.stoppable(steps):
            states.append(torch.get_rng_state())
            yield item

    monkeypatch.setattr(train_tokenizer, "stoppable", recording)
    main(_args(out, "--steps", "4", "--checkpoint-every", "2", "--resume", *gan))
    saved = torch.load(out / "checkpoints" / "step-2" / "training_state.pt", weights_only=True)
    assert torch.equal(states[0], saved["torch_rng"])


def test_the_generator_stops_with_a_checkpoint_of_its_step(tmp_path, tiny_model_dir, monkeypatch):
    from mmgen.training import stopping, train_generator

    monkeypatch.setattr(stopping, "stop_requested", lambda: True)
    extra = ["--num-samples", "16", "--steps", "3", "--val-every", "100", "--cache-dir", ""]
    argv = ["train-generator", "--out", str(tmp_path / "g"), "--vqvae", tiny_model_dir, *TINY[:2], *extra]
    with pytest.raises(stopping.StopRequested, match="has a checkpoint of step 1"):
        train_generator.main(build_parser().parse_args([*argv, "--batch-size", "4", "--warmup-steps", "1"]))
    assert [p.name for p in checkpoints(tmp_path / "g")] == ["step-1"]


def test_resume_under_another_number_of_processes_is_refused(tmp_path):
    """The LR schedule is built over steps x processes and the global batch is batch_size x processes: a resume
    under another count would change both halfway. The log's header holds the count the run trained with."""
    out = tmp_path / "run"
    main(_args(out, "--steps", "4", "--checkpoint-every", "3"))
    interrupt(out, "vqvae")  # as if killed after step 4, before saving
    lines = (out / "train_log.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["num_processes"] == 1
    (out / "train_log.jsonl").write_text("\n".join([json.dumps(header | {"num_processes": 2}), *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"trained with 2 process\(es\), this run has 1.*--num_processes 2"):
        main(_args(out, "--steps", "4", "--resume"))
    (out / "train_log.jsonl").write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    main(_args(out, "--steps", "4", "--resume"))  # the same count: resumes


def test_a_resume_in_another_precision_is_in_the_log(tmp_path):
    """A run started in float32 and resumed in bf16 (accelerate allows it) was carded "mixed precision no"."""
    from mmgen.training.checkpoints import resume_log

    log = tmp_path / "train_log.jsonl"
    records = [{"command": "mmgen", "args": {}, "mixed_precision": "no", "hardware": "a 2-core CPU (no GPU)"}]
    records += [{"step": s, "loss": 1.0, "elapsed_s": float(s)} for s in (50, 100, 150)]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert resume_log(log, 100, {"mixed_precision": "bf16", "hardware": "a 2-core CPU (no GPU)"}) == 100.0
    header, *steps = [json.loads(line) for line in log.read_text().splitlines()]
    assert header["mixed_precision"] == "no to step 100, then bf16" and header["hardware"] == "a 2-core CPU (no GPU)"
    assert [r["step"] for r in steps] == [50, 100]
