import json

import torch

from mmgen.cli import build_parser
from mmgen.models.dit import DiT
from mmgen.training.train_generator import main


def _args(out, model_dir, *extra):
    return build_parser().parse_args(["train-generator", "--out", str(out), "--vqvae", model_dir, "--preset", "tiny",
                                      "--num-samples", "16", "--batch-size", "4", "--log-every", "1",
                                      "--val-every", "100", "--checkpoint-every", "2", "--warmup-steps", "1",
                                      *extra])  # fmt: skip


def test_trains_saves_and_resumes(tmp_path, tiny_model_dir):
    out = tmp_path / "gen"
    main(_args(out, tiny_model_dir, "--steps", "3"))
    dit = DiT.from_pretrained(out / "transformer")
    assert dit.config.in_channels == 4 and dit.config.scaling_factor > 1  # unit-norm 4-d codes: std ~ 1/2
    assert (out / "scheduler" / "scheduler_config.json").exists()
    assert (out / "samples" / "step-3.png").exists()
    assert (out / "checkpoints" / "step-2" / "ema.pt").exists()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["distinct_captions"] > 1 and [r["step"] for r in log if "step" in r] == [1, 2, 3]

    main(_args(out, tiny_model_dir, "--steps", "4", "--resume"))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "step" in r] == [1, 2, 3, 3, 4]


def test_same_seed_same_weights(tmp_path, tiny_model_dir):
    main(_args(tmp_path / "a", tiny_model_dir, "--steps", "2"))
    main(_args(tmp_path / "b", tiny_model_dir, "--steps", "2"))
    a = DiT.from_pretrained(tmp_path / "a" / "transformer").state_dict()
    b = DiT.from_pretrained(tmp_path / "b" / "transformer").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_every_sampler_skips_the_degenerate_last_timestep():
    """Under the cosine schedule alpha_bar(999) ~ 2e-9: a sampler that starts there turns small epsilon errors
    into noise (seen: DPM-Solver++ images full of speckles). Every scheduler built from the trainer's config,
    even after a save/load round trip, must start at a safe timestep."""
    import tempfile

    from mmgen.pipeline import SCHEDULERS
    from mmgen.training.train_generator import training_scheduler

    folder = tempfile.mkdtemp()
    SCHEDULERS["dpm++"].from_config(training_scheduler().config).save_pretrained(folder)
    saved = SCHEDULERS["dpm++"].from_pretrained(folder)
    for cls in SCHEDULERS.values():
        sched = cls.from_config(saved.config)
        sched.set_timesteps(20)
        assert sched.timesteps[0] <= 950, cls.__name__
        assert sched.alphas_cumprod[int(sched.timesteps[0])] > 1e-3, cls.__name__
