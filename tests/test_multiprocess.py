"""Both trainers under `accelerate launch` with two CPU processes (gloo): they train as one process with the
global batch does (the same losses, within float error), only the main process writes, and --resume works.

Launch on a machine without a GPU: `accelerate launch --multi_gpu --num_processes 2 -m mmgen.cli ...` (accelerate's
multi-process launcher; mmgen runs it on the CPU when no GPU is present, mmgen/training/processes.py).
"""

import json
import os
import subprocess
import sys

import torch
from run_helpers import interrupt

from mmgen.cli import main as cli_main
from mmgen.models.dit import DiT
from mmgen.models.vqvae import VQVAE

LOSS_TOLERANCE = 1e-4  # absolute, per logged step: two processes' gradients are averaged in another order
TOKENIZER = ["--preset", "tiny", "--resolution", "32", "--log-every", "1", "--val-every", "3", "--warmup-steps", "1"]
GENERATOR = ["--preset", "tiny", "--num-samples", "32", "--log-every", "1", "--val-every", "100", "--cache-dir", ""]


def launch(*args: str) -> str:
    """`accelerate launch --multi_gpu --num_processes 2 -m mmgen.cli ARGS` on the CPU, from this checkout; returns
    what both processes printed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "mmgen.cli"]
    done = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def single(*args: str) -> None:
    sys_argv, sys.argv = sys.argv, ["mmgen", *args]
    try:
        cli_main()
    finally:
        sys.argv = sys_argv


def log(path) -> list[dict]:
    return [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]


def losses(records: list[dict]) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def assert_same_losses(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> None:
    assert [s for s, _ in a] == [s for s, _ in b]
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) <= LOSS_TOLERANCE, (a, b)


def test_two_processes_train_the_tokenizer_as_one_with_the_global_batch(tmp_path):
    steps = ["--steps", "6", "--checkpoint-every", "3", "--seed", "0"]
    single("train-tokenizer", "--out", str(tmp_path / "one"), "--batch-size", "8", *TOKENIZER, *steps)
    launch("train-tokenizer", "--out", str(tmp_path / "two"), "--batch-size", "4", *TOKENIZER, *steps)

    one, two = log(tmp_path / "one"), log(tmp_path / "two")
    assert_same_losses(losses(one), losses(two))
    assert len(two) == 1 + 6 + 1  # the header, 6 steps, "done": written once, by the main process
    assert two[0]["num_processes"] == 2 and one[0]["num_processes"] == 1  # the global batch is 2 x --batch-size
    assert [p.name for p in (tmp_path / "two" / "checkpoints").iterdir()] == ["step-3"]
    a = VQVAE.from_pretrained(tmp_path / "one" / "vqvae").state_dict()
    b = VQVAE.from_pretrained(tmp_path / "two" / "vqvae").state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)

    interrupt(tmp_path / "two", "vqvae")  # as if killed after step 6, before saving
    launch("train-tokenizer", "--out", str(tmp_path / "two"), "--batch-size", "4", *TOKENIZER, *steps, "--resume")
    resumed = log(tmp_path / "two")
    assert [s for s, _ in losses(resumed)] == [1, 2, 3, 4, 5, 6]  # steps 4-6 again, from step 3, logged once
    assert_same_losses(losses(resumed)[-3:], losses(two)[-3:])


def test_two_processes_train_the_generator_as_one_with_the_global_batch(tmp_path, tiny_model_dir):
    steps = ["--steps", "4", "--checkpoint-every", "2", "--seed", "0", "--vqvae", tiny_model_dir]
    single("train-generator", "--out", str(tmp_path / "one"), "--batch-size", "8", *GENERATOR, *steps)
    cache = ["--cache-dir", str(tmp_path / "cache")]  # the main process encodes and caches it, the other reads it
    two_args = ["--out", str(tmp_path / "two"), "--batch-size", "4", *GENERATOR, *steps, *cache]
    printed = launch("train-generator", *two_args)
    assert printed.count("cached the encoded training set") == 1, printed
    assert printed.count("read the encoded training set") == 1, printed

    one, two = log(tmp_path / "one"), log(tmp_path / "two")
    assert_same_losses(losses(one), losses(two))
    assert sum("command" in r for r in two) == 1 and len(losses(two)) == 4
    a = DiT.from_pretrained(tmp_path / "one" / "transformer").state_dict()
    b = DiT.from_pretrained(tmp_path / "two" / "transformer").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)

    interrupt(tmp_path / "two", "transformer")
    launch("train-generator", *two_args, "--resume")
    resumed = DiT.from_pretrained(tmp_path / "two" / "transformer").state_dict()
    assert [s for s, _ in losses(log(tmp_path / "two"))] == [1, 2, 3, 4]  # 3 and 4 again, logged once
    assert all(torch.allclose(b[k], resumed[k], atol=1e-5) for k in b)


def test_a_vqgan_recipe_under_two_processes_trains_as_one_with_the_global_batch(tmp_path):
    """A recipe under `accelerate launch` without a GPU: one main process (the recipe runner's state and the
    trainer's agree on the CPU), which alone writes the run and publishes it. The VQ-GAN's adaptive weight is the
    global batch's (both processes' gradients at the decoder's last layer, averaged), so the losses are a single
    process's with the global batch."""
    gan = ["--adversarial", "--disc-start", "1", "--photo-fraction", "0"]
    steps = ["--steps", "3", "--checkpoint-every", "2", "--seed", "0"]
    single("train-tokenizer", "--out", str(tmp_path / "one"), "--batch-size", "8", *TOKENIZER, *steps, *gan)
    recipe = tmp_path / "vqgan.toml"
    recipe.write_text(
        f'model = "{tmp_path / "model"}"\n[tokenizer]\nout = "{tmp_path / "two"}"\npreset = "tiny"\nresolution = 32\n'
        "batch_size = 4\nlog_every = 1\nval_every = 3\nwarmup_steps = 1\nsteps = 3\ncheckpoint_every = 2\n"
        "seed = 0\nadversarial = true\ndisc_start = 1\nphoto_fraction = 0\n"
    )
    printed = launch("train-tokenizer", "--recipe", str(recipe))
    assert printed.count("tokenizer: training in") == 1, printed  # said by the main process alone

    one, two = log(tmp_path / "one"), log(tmp_path / "two")
    assert sum("command" in r for r in two) == 1 and two[0]["num_processes"] == 2
    assert "adaptive_weight" in two[2]  # the discriminator's part from step 1 on
    assert_same_losses(losses(one), losses(two))
    for figure in ("d_loss", "g_adv"):  # the GAN's figures too: they were the main process's half of the batch
        gan = [[(r["step"], r[figure]) for r in records if figure in r] for records in (one, two)]
        assert gan[0] and [s for s, _ in gan[0]] == [s for s, _ in gan[1]]
        assert max(abs(x - y) for (_, x), (_, y) in zip(*gan)) <= 1e-3, gan
    assert (tmp_path / "model" / "vqvae" / "config.json").is_file()  # published


def interrupted_launch(out, processes: int, *args: str, after_steps: int = 3) -> str:
    """`accelerate launch` of `processes` (several: --multi_gpu) Ctrl-C'd as a terminal does it (SIGINT to the
    launcher's process group) once the run's log holds `after_steps` steps; returns what it printed on stderr."""
    import signal
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-m", "accelerate.commands.launch", *(["--multi_gpu"] if processes > 1 else [])]
    command += ["--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no"]
    command += ["--dynamo_backend", "no", "-m", "mmgen.cli", *args]
    run = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while run.poll() is None and time.monotonic() < deadline:
        if (out / "train_log.jsonl").is_file() and len(losses(log(out))) >= after_steps:
            break
        time.sleep(0.1)
    assert run.poll() is None, "the run ended before it was interrupted"
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=90)
    return err


def test_ctrl_c_under_accelerate_keeps_the_step_it_stopped_at(tmp_path):
    """Under `accelerate launch` a Ctrl-C saves a checkpoint of the step under way, as plain `mmgen` does: with two
    processes both stop at the same step (it ended at once, back to the last periodic checkpoint), with one the
    launcher's SIGTERM that follows the Ctrl-C is not taken for a second one (that lost every step since)."""
    for processes in (2, 1):
        out = tmp_path / f"run{processes}"
        steps = ["--steps", "3000", "--checkpoint-every", "1000", "--seed", "0", "--val-every", "5000"]
        tokenizer = [a for a in TOKENIZER if a not in ("--val-every", "3")]
        err = interrupted_launch(
            out, processes, "train-tokenizer", "--out", str(out), "--batch-size", "4", *tokenizer, *steps
        )
        last = losses(log(out))[-1][0]
        assert [p.name for p in (out / "checkpoints").iterdir()] == [f"step-{last}"], err[-2000:]
        # Said once, by the main process. accelerate's one-process launcher, when its own Ctrl-C does not land in
        # its wait for the run (a race), raises CalledProcessError from RuntimeError(the run's stderr), and Python
        # prints that as "RuntimeError: <the run's stderr again>" before the traceback: not the run's own output.
        own = err.split("RuntimeError: ")[0]
        assert own.count(f"has a checkpoint of step {last}") == 1, err[-2000:]
