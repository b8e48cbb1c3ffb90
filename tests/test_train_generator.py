import json

import pytest
import torch

from mmgen.cli import build_parser
from mmgen.models.dit import DiT, DiTOutput
from mmgen.training.checkpoints import log_stages
from mmgen.training.train_generator import main, sampling_weights


def _args(out, model_dir, *extra):
    return build_parser().parse_args(
        [
            "train-generator",
            "--out",
            str(out),
            "--vqvae",
            model_dir,
            "--preset",
            "tiny",
            "--num-samples",
            "16",
            "--batch-size",
            "4",
            "--log-every",
            "1",
            "--val-every",
            "100",
            "--checkpoint-every",
            "2",
            "--warmup-steps",
            "1",
            *extra,
        ]
    )


def test_trains_saves_and_resumes(tmp_path, tiny_model_dir):
    out = tmp_path / "gen"
    main(_args(out, tiny_model_dir, "--steps", "3", "--text-refiner-layers", "1", "--joint-attention"))
    dit = DiT.from_pretrained(out / "transformer")
    assert dit.config.joint_attention and "text" in dit.blocks[0].qkv
    assert dit.config.in_channels == 4 and dit.config.scaling_factor > 1  # unit-norm 4-d codes: std ~ 1/2
    assert dit.config.text_refiner_layers == 1 and len(dit.text_refiner) == 1
    saved = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert saved["prediction_type"] == "v_prediction" and saved["timestep_spacing"] == "leading"
    assert (out / "samples" / "step-3.png").exists()
    assert (out / "checkpoints" / "step-2" / "ema.pt").exists()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert (
        log[0]["distinct_captions"] > 1
        and log[0]["encoding_s"] >= 0
        and [r["step"] for r in log if "step" in r] == [1, 2, 3]
    )

    main(_args(out, tiny_model_dir, "--steps", "4", "--resume"))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "step" in r] == [1, 2, 3, 3, 4]
    resumed = DiT.from_pretrained(out / "transformer").config  # the architecture comes from the checkpoint
    assert resumed.text_refiner_layers == 1 and resumed.joint_attention


def test_same_seed_same_weights(tmp_path, tiny_model_dir):
    main(_args(tmp_path / "a", tiny_model_dir, "--steps", "2"))
    main(_args(tmp_path / "b", tiny_model_dir, "--steps", "2"))
    a = DiT.from_pretrained(tmp_path / "a" / "transformer").state_dict()
    b = DiT.from_pretrained(tmp_path / "b" / "transformer").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_compiled_training_saves_a_plain_dit(tmp_path, tiny_model_dir, monkeypatch):
    """--compile wraps the DiT in torch.compile's module, whose state dict keys gain an `_orig_mod.` prefix;
    checkpoints, validation and the final weights must still be a plain DiT. (The eager backend keeps the
    test fast; the wrapping is the same as inductor's.)"""
    import functools

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    out = tmp_path / "gen"
    main(_args(out, tiny_model_dir, "--steps", "3", "--compile", "--val-every", "2"))
    plain = tmp_path / "plain"
    main(_args(plain, tiny_model_dir, "--steps", "3", "--val-every", "2"))
    a = DiT.from_pretrained(out / "transformer").state_dict()
    b = DiT.from_pretrained(plain / "transformer").state_dict()
    assert set(a) == set(b) and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert DiT.from_pretrained(out / "checkpoints" / "step-2" / "transformer") is not None
    assert (out / "samples" / "step-2.png").exists()


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


class _Constant(torch.nn.Module):
    """A stand-in DiT that outputs a fixed tensor."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, noisy, t, states, masks):
        return DiTOutput(sample=self.output)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_diffusion_loss_targets_and_min_snr_weights(prediction_type):
    from mmgen.training.train_generator import diffusion_loss, training_scheduler

    sched = training_scheduler(prediction_type)
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(6, 4, 4, 4, generator=g), torch.randn(6, 4, 4, 4, generator=g)
    t = torch.tensor([0, 100, 400, 600, 900, 999])
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    target = noise if prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * latents
    text = torch.zeros(6, 3, 8), torch.ones(6, 3, dtype=torch.bool)
    assert diffusion_loss(_Constant(target), sched, latents, noise, t, *text, weighting="min-snr").item() < 1e-10

    # Predicting zeros: each sample's error is its target's mean square, weighted by Min-SNR in x0 space.
    snr = a.flatten() / (1 - a.flatten())
    weight = snr.clamp(max=5) / (snr if prediction_type == "epsilon" else snr + 1)
    expected = (target.pow(2).mean(dim=(1, 2, 3)) * weight).mean()
    loss = diffusion_loss(
        _Constant(torch.zeros_like(target)), sched, latents, noise, t, *text, snr_gamma=5.0, weighting="min-snr"
    )
    torch.testing.assert_close(loss, expected)
    plain = diffusion_loss(_Constant(torch.zeros_like(target)), sched, latents, noise, t, *text, snr_gamma=0)
    torch.testing.assert_close(plain, target.pow(2).mean())


def test_self_conditioning_feeds_half_the_batch_its_own_clean_estimate():
    """With self-conditioning the first half of the batch is denoised once without gradients and gets that x0
    estimate back; the second half gets zeros. The loss is then taken on the second call only."""
    from mmgen.training.train_generator import clean_estimate, diffusion_loss, training_scheduler

    sched = training_scheduler("v_prediction")
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(4, 4, 4, 4, generator=g), torch.randn(4, 4, 4, 4, generator=g)
    t = torch.tensor([10, 300, 600, 990])
    calls = []

    class Recorder(torch.nn.Module):
        def forward(self, noisy, t, states, masks, self_cond=None):
            calls.append((noisy.clone(), self_cond.clone(), torch.is_grad_enabled()))
            return DiTOutput(sample=noisy * 0.5)

    text = torch.zeros(4, 3, 8), torch.ones(4, 3, dtype=torch.bool)
    loss = diffusion_loss(Recorder(), sched, latents, noise, t, *text, self_condition=True)
    (first, sc1, grad1), (second, sc2, grad2) = calls
    assert first.shape[0] == 2 and not grad1 and torch.equal(sc1, torch.zeros_like(sc1))
    noisy = sched.add_noise(latents, noise, t)
    assert torch.equal(second, noisy) and grad2
    torch.testing.assert_close(sc2[:2], clean_estimate(sched, noisy[:2], noisy[:2] * 0.5, t[:2]))
    assert torch.equal(sc2[2:], torch.zeros_like(sc2[2:]))
    # x0 from the true v is the clean latent
    torch.testing.assert_close(
        clean_estimate(sched, noisy, sched.get_velocity(latents, noise, t), t), latents, atol=1e-5, rtol=1e-5
    )
    assert loss.item() > 0


def test_self_condition_flag_trains_a_self_conditioned_dit(tmp_path, tiny_model_dir):
    main(_args(tmp_path / "sc", tiny_model_dir, "--steps", "3", "--self-condition"))
    model = DiT.from_pretrained(tmp_path / "sc" / "transformer")
    # step 1 (lr 0) and step 2 (zero output layer: no gradient reaches the input side) leave it at zero
    assert model.config.self_condition and model.self_cond_embed.weight.abs().sum() > 0


def test_min_snr_1_weights_v_like_the_plain_loss_at_high_noise_and_caps_low_noise():
    from mmgen.training.train_generator import diffusion_loss, loss_weights, training_scheduler

    sched = training_scheduler("v_prediction")
    t = torch.tensor([0, 100, 400, 600, 900, 999])
    snr = sched.alphas_cumprod[t] / (1 - sched.alphas_cumprod[t])
    w = loss_weights(sched, t, snr_gamma=5.0, weighting="min-snr-1")
    noisy = snr < 4  # SNR + 1 below the cap: exactly the plain v loss
    torch.testing.assert_close(w[noisy], torch.ones(int(noisy.sum())))
    torch.testing.assert_close(w[~noisy], 5.0 / (snr[~noisy] + 1))
    min_snr = loss_weights(sched, t, snr_gamma=5.0, weighting="min-snr")
    assert w[-2] > 40 * min_snr[-2]  # t = 900: Min-SNR leaves about 2 % of the weight there
    assert torch.equal(w[:2], min_snr[:2])  # low noise: both cap at gamma / (SNR + 1)

    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(6, 4, 4, 4, generator=g), torch.randn(6, 4, 4, 4, generator=g)
    text = torch.zeros(6, 3, 8), torch.ones(6, 3, dtype=torch.bool)
    target = sched.get_velocity(latents, noise, t)
    loss = diffusion_loss(_Constant(torch.zeros_like(target)), sched, latents, noise, t, *text, weighting="min-snr-1")
    torch.testing.assert_close(loss, (target.pow(2).mean(dim=(1, 2, 3)) * w).mean())
    with pytest.raises(ValueError, match="v-prediction"):
        loss_weights(training_scheduler("epsilon"), t, weighting="min-snr-1")
    with pytest.raises(ValueError, match="unknown loss weighting"):
        loss_weights(sched, t, weighting="p2")


def test_timestep_sampling_uniform_is_the_old_draw_and_logit_normal_favours_the_middle():
    from mmgen.training.train_generator import sample_timesteps

    uniform = sample_timesteps(4096, 1000, "uniform", torch.Generator().manual_seed(3))
    assert torch.equal(uniform, torch.randint(0, 1000, (4096,), generator=torch.Generator().manual_seed(3)))
    t = sample_timesteps(20_000, 1000, "logit-normal", torch.Generator().manual_seed(3))
    assert t.dtype == torch.long and int(t.min()) >= 0 and int(t.max()) <= 999
    middle = ((t >= 250) & (t < 750)).float().mean().item()
    assert abs(middle - 0.728) < 0.02  # P(|z| < logit(0.75)) for z ~ N(0, 1); uniform gives 0.5
    assert abs((t < 500).float().mean().item() - 0.5) < 0.02  # symmetric about T / 2
    with pytest.raises(ValueError, match="unknown timestep sampling"):
        sample_timesteps(4, 1000, "cosine")


def test_high_noise_sampling_moves_every_second_draw_into_the_noisiest_quarter():
    from mmgen.training.train_generator import sample_timesteps

    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    uniform = sample_timesteps(20_000, 1000, "uniform", gen_a)
    high = sample_timesteps(20_000, 1000, "high-noise", gen_b)
    assert torch.equal(high[0::2], uniform[0::2])  # the other half is the uniform draw itself
    assert torch.equal(high[1::2], 750 + uniform[1::2] // 4)
    assert int(high.min()) >= 0 and int(high.max()) <= 999 and int(high[1::2].min()) >= 750
    assert abs((high >= 750).float().mean().item() - 0.625) < 0.02
    assert torch.equal(torch.randn(3, generator=gen_a), torch.randn(3, generator=gen_b))  # same stream after it


def test_epsilon_with_the_default_weighting_fails_before_any_work(tmp_path, tiny_model_dir, capsys):
    from mmgen.cli import main as cli_main

    out = tmp_path / "gen"
    argv = ["train-generator", "--out", str(out), "--vqvae", tiny_model_dir, "--prediction-type", "epsilon"]
    assert cli_main(argv) == 2
    assert "--loss-weighting min-snr" in capsys.readouterr().err and not out.exists()


def test_two_object_share_sets_the_batch_mix():
    num_objects = torch.tensor([1] * 70 + [2] * 30)
    weights = sampling_weights(num_objects, 0.6)
    assert torch.isclose(weights.sum(), torch.tensor(1.0)) and torch.isclose(
        weights[num_objects == 2].sum(), torch.tensor(0.6)
    )
    draws = torch.multinomial(weights, 20_000, replacement=True, generator=torch.Generator().manual_seed(0))
    assert abs((num_objects[draws] == 2).float().mean().item() - 0.6) < 0.02
    assert len(set(draws[num_objects[draws] == 1].tolist())) == 70  # every single-object scene still drawn
    for share, counts in ((0.0, num_objects), (1.0, num_objects), (0.5, torch.ones(5, dtype=torch.long))):
        with pytest.raises(ValueError, match="two-object-share"):
            sampling_weights(counts, share)


def test_two_object_share_changes_the_batches_and_needs_shapes(tmp_path, tiny_model_dir):
    main(_args(tmp_path / "mix", tiny_model_dir, "--steps", "2", "--two-object-share", "0.9"))
    main(_args(tmp_path / "plain", tiny_model_dir, "--steps", "2"))
    a = DiT.from_pretrained(tmp_path / "mix" / "transformer").state_dict()
    b = DiT.from_pretrained(tmp_path / "plain" / "transformer").state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)
    log = json.loads((tmp_path / "mix" / "train_log.jsonl").read_text().splitlines()[0])
    assert log["args"]["two_object_share"] == 0.9
    with pytest.raises(ValueError, match="image folder"):
        main(
            _args(
                tmp_path / "folder",
                tiny_model_dir,
                "--steps",
                "1",
                "--data",
                str(tmp_path),
                "--two-object-share",
                "0.5",
            )
        )
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        main(_args(tmp_path / "bad", tiny_model_dir, "--steps", "1", "--two-object-share", "1.5"))
    assert not (tmp_path / "bad").exists()  # failed before any work


def test_resumed_run_matches_an_unbroken_one(tmp_path, tiny_model_dir):
    """The checkpoint keeps the batch RNG, so resuming from step 2 redraws the unbroken run's steps 3 and 4 and
    ends with the same weights."""
    out = tmp_path / "gen"
    main(_args(out, tiny_model_dir, "--steps", "4"))  # checkpoint at step 2
    unbroken = DiT.from_pretrained(out / "transformer").state_dict()
    main(_args(out, tiny_model_dir, "--steps", "4", "--resume"))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "step" in r] == [1, 2, 3, 4, 3, 4]
    resumed = DiT.from_pretrained(out / "transformer").state_dict()
    assert all(torch.equal(unbroken[k], resumed[k]) for k in unbroken)


def test_each_process_draws_its_own_batches(tmp_path, tiny_model_dir, monkeypatch):
    """Under `accelerate launch` every process must see other batches, or N processes train like one."""
    import mmgen.training.train_generator as trainer

    class SecondProcess(trainer.Accelerator):
        process_index = 1  # is_main_process stays True here, so this process still saves its weights

    main(_args(tmp_path / "p0", tiny_model_dir, "--steps", "2"))
    monkeypatch.setattr(trainer, "Accelerator", SecondProcess)
    main(_args(tmp_path / "p1", tiny_model_dir, "--steps", "2"))
    a = DiT.from_pretrained(tmp_path / "p0" / "transformer").state_dict()
    b = DiT.from_pretrained(tmp_path / "p1" / "transformer").state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_the_encoded_training_set_is_cached_and_reused(tmp_path, tiny_model_dir, capsys):
    """The second run reads the encoded set instead of encoding it again, and trains to the same weights as a run
    that encodes (`--cache-dir ''`); other data gets another file."""
    cache = tmp_path / "cache"
    main(_args(tmp_path / "a", tiny_model_dir, "--steps", "2", "--cache-dir", str(cache)))
    assert "cached the encoded training set" in capsys.readouterr().out and len(list(cache.iterdir())) == 1
    main(_args(tmp_path / "b", tiny_model_dir, "--steps", "2", "--cache-dir", str(cache)))
    assert "read the encoded training set" in capsys.readouterr().out
    main(_args(tmp_path / "c", tiny_model_dir, "--steps", "2", "--cache-dir", ""))
    assert "encoded training set" not in capsys.readouterr().out
    weights = [DiT.from_pretrained(tmp_path / run / "transformer").state_dict() for run in "abc"]
    assert all(torch.equal(weights[0][k], w[k]) for w in weights[1:] for k in weights[0])
    main(_args(tmp_path / "d", tiny_model_dir, "--steps", "1", "--cache-dir", str(cache), "--seed", "1"))
    assert len(list(cache.iterdir())) == 2  # --seed also picks the scenes: other key, never a stale read
    main(
        _args(
            tmp_path / "e",
            tiny_model_dir,
            "--steps",
            "1",
            "--cache-dir",
            str(cache),
            "--seed",
            "1",
            "--data-seed",
            "0",
        )
    )
    assert "read the encoded training set" in capsys.readouterr().out and len(list(cache.iterdir())) == 2


def test_init_from_continues_a_trained_dit(tmp_path, tiny_model_dir):
    """A second stage starts from the first stage's weights (with lr 0 they come out unchanged) and keeps its
    architecture; a folder without a fitting DiT fails before any encoding."""
    first = tmp_path / "first"
    main(_args(first, tiny_model_dir, "--steps", "2", "--text-refiner-layers", "1"))
    start = DiT.from_pretrained(first / "transformer").state_dict()
    main(_args(tmp_path / "frozen", tiny_model_dir, "--steps", "2", "--init-from", str(first), "--lr", "0"))
    frozen = DiT.from_pretrained(tmp_path / "frozen" / "transformer")
    assert frozen.config.text_refiner_layers == 1  # from the loaded DiT, not the default of 2
    assert all(torch.equal(start[k], frozen.state_dict()[k]) for k in start)
    main(_args(tmp_path / "tuned", tiny_model_dir, "--steps", "2", "--init-from", str(first)))
    tuned = DiT.from_pretrained(tmp_path / "tuned" / "transformer").state_dict()
    assert not all(torch.equal(start[k], tuned[k]) for k in start)
    first_log = [json.loads(line) for line in (first / "train_log.jsonl").read_text().splitlines()]
    tuned_log = (tmp_path / "tuned" / "train_log.jsonl").read_text().splitlines()
    stages = log_stages([json.loads(line) for line in tuned_log])
    assert stages[0] == first_log and stages[1][0]["stage"] == 2  # one log holds both stages
    assert stages[1][0]["args"]["init_from"] == str(first) and stages[1][-1]["done"]
    with pytest.raises(ValueError, match="no DiT found"):
        main(_args(tmp_path / "none", tiny_model_dir, "--steps", "1", "--init-from", str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="sample-size"):
        main(_args(tmp_path / "size", tiny_model_dir, "--steps", "1", "--init-from", str(first), "--sample-size", "4"))


def test_object_cell_weights_favour_non_background_cells_and_keep_each_images_total():
    from mmgen.training.train_generator import diffusion_loss, object_cell_weights, training_scheduler

    ids = torch.full((3, 8, 8), 7)
    ids[0, 1:3, 1:3] = 2  # a small object: 4 of 64 cells
    ids[1, :, :5] = 4  # most of the image is code 4: that is its background
    w = object_cell_weights(ids, 4.0)
    assert w.shape == (3, 1, 8, 8)
    torch.testing.assert_close(w.mean(dim=(1, 2, 3)), torch.ones(3))
    torch.testing.assert_close(w[0, 0, 1, 1] / w[0, 0, 0, 0], torch.tensor(4.0))
    assert w[1, 0, 0, 0] < w[1, 0, 0, 7]  # code 7 is the object there
    torch.testing.assert_close(w[2], torch.ones(1, 8, 8))  # a flat image has no object cells
    torch.testing.assert_close(object_cell_weights(ids, 1.0), torch.ones(3, 1, 8, 8))
    with pytest.raises(ValueError, match="object-loss-weight"):
        object_cell_weights(ids, 0.0)

    # In the loss, the weights scale each cell's squared error before the per-image mean.
    sched = training_scheduler("v_prediction")
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([100, 500, 900])
    text = torch.zeros(3, 3, 8), torch.ones(3, 3, dtype=torch.bool)
    target = sched.get_velocity(latents, noise, t)
    zero = _Constant(torch.zeros_like(target))
    loss = diffusion_loss(zero, sched, latents, noise, t, *text, snr_gamma=0, cell_weights=w)
    torch.testing.assert_close(loss, (target.pow(2) * w).mean())
    plain = diffusion_loss(zero, sched, latents, noise, t, *text, snr_gamma=0)
    assert not torch.allclose(loss, plain)


def test_object_loss_weight_flag(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="object-loss-weight"):
        main(_args(tmp_path / "bad", tiny_model_dir, "--steps", "1", "--object-loss-weight", "-1"))
    assert not (tmp_path / "bad" / "train_log.jsonl").exists()  # it fails before any work
    out = main(_args(tmp_path / "ow", tiny_model_dir, "--steps", "2", "--object-loss-weight", "4"))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["args"]["object_loss_weight"] == 4.0 and log[-1]["done"]


def test_grounding_loss_weight_flag(tmp_path, tiny_model_dir):
    for bad, match in (
        (["--grounding-loss-weight", "-1"], "must be 0"),
        (["--grounding-loss-weight", "1", "--data", str(tmp_path)], "shapes-v1 labels"),
        (["--grounding-loss-weight", "1", "--joint-attention"], "joint-attention"),
    ):
        with pytest.raises(ValueError, match=match):
            main(_args(tmp_path / "bad", tiny_model_dir, "--steps", "1", *bad))
        assert not (tmp_path / "bad" / "train_log.jsonl").exists()  # each fails before any work
    out = main(_args(tmp_path / "g", tiny_model_dir, "--steps", "3", "--grounding-loss-weight", "0.5"))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["args"]["grounding_loss_weight"] == 0.5 and log[-1]["done"]
    steps = [r for r in log if "step" in r and "loss" in r]
    assert len(steps) == 3 and all(0 < r["grounding"] <= 1 for r in steps)
    plain = main(_args(tmp_path / "p", tiny_model_dir, "--steps", "3"))
    plain_log = [json.loads(line) for line in (plain / "train_log.jsonl").read_text().splitlines()]
    assert not any("grounding" in r for r in plain_log)
    # same seed, batches and noise: the added term is exactly what separates the two losses at step 1 (lr 0)
    first, plain_first = steps[0], next(r for r in plain_log if r.get("step") == 1)
    assert first["loss"] == pytest.approx(plain_first["loss"] + 0.5 * first["grounding"], abs=2e-5)
