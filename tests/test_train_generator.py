import argparse
import json

import pytest
import torch
from PIL import Image
from run_helpers import interrupt

from mmgen.cli import build_parser
from mmgen.data.shapes import shapes_sample
from mmgen.models.dit import DiT, DiTOutput
from mmgen.models.vqvae import VQVAE
from mmgen.training.checkpoints import log_stages
from mmgen.training.deepen import deepen, insertion_points, removal_points, shrink
from mmgen.training.losses import diffusion_loss, loss_weights, object_cell_weights, training_scheduler
from mmgen.training.train_generator import main


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


def test_trains_saves_and_resumes(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "gen"
    main(_args(out, tiny_model_dir, "--steps", "3", "--text-refiner-layers", "1"))
    dit = DiT.from_pretrained(out / "transformer")
    assert dit.config.in_channels == 4 and dit.config.scaling_factor > 1  # unit-norm 4-d codes: std ~ 1/2
    assert dit.config.text_refiner_layers == 1 and len(dit.text_refiner) == 1
    saved = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert saved["prediction_type"] == "v_prediction" and saved["timestep_spacing"] == "leading"
    assert (out / "samples" / "step-3.png").exists()
    from mmgen.training.train_generator import VALIDATION_PROMPTS

    assert (out / "samples" / "prompts.txt").read_text().splitlines() == VALIDATION_PROMPTS  # what the grid shows
    assert (out / "checkpoints" / "step-2" / "ema.pt").exists()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert (
        log[0]["distinct_captions"] > 1
        and log[0]["encoding_s"] >= 0
        and [r["step"] for r in log if "step" in r] == [1, 2, 3]
    )
    # the loss settings that are no longer options are logged with the options (the model card reads them)
    assert log[0]["args"]["loss_weighting"] == "min-snr-1" and log[0]["args"]["snr_gamma"] == 5.0

    with pytest.raises(ValueError, match="holds a finished run: --resume continues an interrupted one"):
        main(_args(out, tiny_model_dir, "--steps", "3", "--resume"))
    with pytest.raises(ValueError, match="already holds a trained model"):
        main(_args(out, tiny_model_dir, "--steps", "3"))  # a new run would overwrite it
    interrupt(out, "transformer")  # as if killed after step 3, before saving
    with pytest.raises(ValueError, match="already holds an unfinished run"):
        main(_args(out, tiny_model_dir, "--steps", "3"))
    with pytest.raises(ValueError, match=r"these differ: --text-refiner-layers 2 \(the run: 1\), --steps 4 \(the"):
        main(_args(out, tiny_model_dir, "--steps", "4", "--resume"))
    capsys.readouterr()
    main(_args(f"{out}/", tiny_model_dir, "--steps", "3", "--text-refiner-layers", "1", "--resume"))  # "gen/" is gen
    assert f"resumed from {out / 'checkpoints' / 'step-2'} at step 2" in capsys.readouterr().out  # not step 1 again
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "step" in r] == [1, 2, 3]  # step 3 logged once, by the resumed run
    resumed = DiT.from_pretrained(out / "transformer").config  # the architecture comes from the checkpoint
    assert resumed.text_refiner_layers == 1


def test_the_tokenizer_may_be_its_vqvae_folder_itself(tmp_path, tiny_model_dir):
    """--vqvae MODEL/vqvae, as release --vqvae takes it, trains on the same codes as --vqvae MODEL."""
    main(_args(tmp_path / "a", tiny_model_dir, "--steps", "1"))
    main(_args(tmp_path / "b", f"{tiny_model_dir}/vqvae", "--steps", "1"))
    a, b = (DiT.from_pretrained(tmp_path / run / "transformer").state_dict() for run in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


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


def test_diffusion_loss_targets_v_with_capped_min_snr_weights():
    sched = training_scheduler()
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(6, 4, 4, 4, generator=g), torch.randn(6, 4, 4, 4, generator=g)
    t = torch.tensor([0, 100, 400, 600, 900, 999])
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    target = a.sqrt() * noise - (1 - a).sqrt() * latents  # v
    text = torch.zeros(6, 3, 8), torch.ones(6, 3, dtype=torch.bool)
    assert diffusion_loss(_Constant(target), sched, latents, noise, t, *text).item() < 1e-10

    # Predicting zeros: each sample's error is its target's mean square, weighted by min(SNR + 1, 5) in x0 space.
    snr = a.flatten() / (1 - a.flatten())
    expected = (target.pow(2).mean(dim=(1, 2, 3)) * (snr + 1).clamp(max=5) / (snr + 1)).mean()
    torch.testing.assert_close(
        diffusion_loss(_Constant(torch.zeros_like(target)), sched, latents, noise, t, *text), expected
    )
    plain = diffusion_loss(_Constant(torch.zeros_like(target)), sched, latents, noise, t, *text, snr_gamma=0)
    torch.testing.assert_close(plain, target.pow(2).mean())
    with pytest.raises(ValueError, match="v-prediction"):
        diffusion_loss(_Constant(target), training_scheduler("epsilon"), latents, noise, t, *text)


def test_min_snr_1_weights_v_like_the_plain_loss_at_high_noise_and_caps_low_noise():
    """High noise, where a scene's layout is decided, keeps the plain v loss's weight (plain Min-SNR would leave
    it about 2 % at t = 900); the easy low-noise steps are capped as in Min-SNR."""
    sched = training_scheduler()
    t = torch.tensor([0, 100, 400, 600, 900, 999])
    snr = sched.alphas_cumprod[t] / (1 - sched.alphas_cumprod[t])
    w = loss_weights(sched, t, snr_gamma=5.0)
    noisy = snr < 4  # SNR + 1 below the cap: exactly the plain v loss
    assert noisy[-2] and not noisy[0]
    torch.testing.assert_close(w[noisy], torch.ones(int(noisy.sum())))
    torch.testing.assert_close(w[~noisy], 5.0 / (snr[~noisy] + 1))
    torch.testing.assert_close(loss_weights(sched, t, snr_gamma=0), torch.ones(6))


def test_resumed_run_matches_an_unbroken_one(tmp_path, tiny_model_dir, capsys):
    """The checkpoint keeps the batch RNG, so resuming from step 2 redraws the unbroken run's steps 3 and 4 and
    ends with the same weights."""
    out = tmp_path / "gen"
    main(_args(out, tiny_model_dir, "--steps", "4"))  # checkpoint at step 2
    unbroken = DiT.from_pretrained(out / "transformer").state_dict()
    interrupt(out, "transformer")
    capsys.readouterr()
    main(_args(out, tiny_model_dir, "--steps", "4", "--resume"))
    # training is deterministic: equal weights alone would pass a --resume that trained again from step 1
    assert f"resumed from {out / 'checkpoints' / 'step-2'} at step 2" in capsys.readouterr().out
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "step" in r] == [1, 2, 3, 4]  # steps 3 and 4 logged once, by the resumed run
    resumed = DiT.from_pretrained(out / "transformer").state_dict()
    assert all(torch.equal(unbroken[k], resumed[k]) for k in unbroken)


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
    for other in (["--text-refiner-layers", "2"], ["--preset", "XS/2"]):  # ignored unsaid, and logged as applied
        with pytest.raises(ValueError, match=r"--init-from .*first: its DiT has .*asked: .*leave --preset"):
            main(_args(tmp_path / "resized", tiny_model_dir, "--steps", "2", "--init-from", str(first), *other))
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
    sched = training_scheduler()
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
    for bad in ("-1", "nan", "inf"):  # nan trained on NaN losses, and failed at the first sample as "NaN latents"
        with pytest.raises(ValueError, match="object-loss-weight must be a positive number"):
            main(_args(tmp_path / "bad", tiny_model_dir, "--steps", "1", "--object-loss-weight", bad))
    assert not (tmp_path / "bad" / "train_log.jsonl").exists()  # it fails before any work
    out = main(_args(tmp_path / "ow", tiny_model_dir, "--steps", "2", "--object-loss-weight", "1"))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["args"]["object_loss_weight"] == 1.0 and log[-1]["done"]


TINY_RECIPE = """
model = "{model}"
scheduler = "euler-ancestral"

[sampling]  # the settings the model samples at, published with it
num_inference_steps = 30

[generator]  # shared by both stages
vqvae = "{model}"
preset = "tiny"
num_samples = 16
batch_size = 4
warmup_steps = 1
log_every = 1
val_every = 100
checkpoint_every = 2
object_loss_weight = 1

[[generator.stages]]
out = "{runs}/stage1"
steps = {steps1}

[[generator.stages]]
out = "{runs}/stage2"
init_from = "{model}"
steps = 3
lr = 2e-4
seed = 1
"""


def _recipe_args(recipe, *extra):
    return build_parser().parse_args(["train-generator", "--recipe", str(recipe), *extra])


def _records(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_a_recipe_runs_its_stages_in_order_and_continues_where_it_stopped(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    """Two tiny stages: each trains in its run folder and is published into the model folder, the second starting
    from the first's published weights. Re-running skips finished stages, resumes an interrupted one, and refuses
    a finished run whose settings are not the recipe's."""
    import shutil

    import mmgen.training.train_generator as trainer

    model, runs, recipe = tmp_path / "model", tmp_path / "runs", tmp_path / "tiny.toml"
    shutil.copytree(tiny_model_dir, model)
    recipe.write_text(TINY_RECIPE.format(model=model, runs=runs, steps1=2))
    assert main(_recipe_args(recipe)) == model
    stages = log_stages(_records(runs / "stage2"))  # stage 2's log holds stage 1's, from the published folder
    assert (
        len(stages) == 2 and stages[0] == _records(runs / "stage1") and stages[1][0]["args"]["init_from"] == str(model)
    )
    assert stages[1][0]["args"]["lr"] == 2e-4 and stages[1][0]["args"]["preset"] == "tiny"
    published = DiT.from_pretrained(model / "transformer").state_dict()  # stage 2, in fp16
    final = DiT.from_pretrained(runs / "stage2" / "transformer").state_dict()
    assert all(torch.equal(published[k], final[k].half().float()) for k in final)
    scheduler = json.loads((model / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "EulerAncestralDiscreteScheduler"
    assert json.loads((model / "model_index.json").read_text())["sampling_defaults"] == {"num_inference_steps": 30}

    def no_training(args):
        raise AssertionError(f"trained {args.out} again")

    monkeypatch.setattr(trainer, "train", no_training)
    shutil.rmtree(model / "transformer")  # as if stopped while publishing the last stage
    capsys.readouterr()
    main(_recipe_args(recipe))
    said = capsys.readouterr().out
    assert said.count("already finished, skipped") == 2 and "nothing to do but publish the last again" in said
    again = DiT.from_pretrained(model / "transformer").state_dict()  # the rerun mended the publish
    assert all(torch.equal(again[k], final[k].half().float()) for k in final)
    monkeypatch.undo()

    log = (runs / "stage2" / "train_log.jsonl").read_text().splitlines()
    (runs / "stage2" / "train_log.jsonl").write_text("\n".join(log[:-1]) + "\n")  # as if stopped at step 3
    main(_recipe_args(recipe))
    said = capsys.readouterr().out
    assert "stage 1: publishing" in said and "stage 2: training" in said  # stage 1 republished, then resumed
    assert [r["step"] for r in log_stages(_records(runs / "stage2"))[1] if "step" in r] == [1, 2, 3]
    assert _records(runs / "stage2")[-1]["done"]

    recipe.write_text(TINY_RECIPE.format(model=model, runs=runs, steps1=5))
    with pytest.raises(
        ValueError, match=r"finished with other settings than generator stage 1: steps = 2 \(recipe: 5\)"
    ):
        main(_recipe_args(recipe))


RECIPE = 'model = "m"\nscheduler = "euler-ancestral"\n[generator]\npreset = "tiny"\n[[generator.stages]]\nout = "r1"\n'


@pytest.mark.parametrize(
    "text, match",
    [
        (None, "recipe .* not found"),
        ("model = \n", "not valid TOML"),
        (RECIPE + "[tokenizers]\n", "unknown key 'tokenizers'"),
        (RECIPE.replace('model = "m"', ""), "`model` must name"),
        (RECIPE.replace("euler-ancestral", "euler-fast"), "`scheduler` must be one of"),
        ('model = "m"\n[tokenizer]\nout = "t"\n', r"has no \[generator\] table"),
        ('model = "m"\nscheduler = "ddpm"\n[generator]\npreset = "tiny"\n', "at least one"),
        (RECIPE + "stepz = 3\n", "generator stage 1: unknown option 'stepz'"),
        (RECIPE + "resume = true\n", "unknown option 'resume' .*runner sets resume itself"),
        (RECIPE + "batch-size = 8\n", "unknown option 'batch-size'; did you mean 'batch_size'"),
        (RECIPE + "learning_rate = 0.1\n", "unknown option 'learning_rate'; did you mean 'lr'"),
        (RECIPE + "warmup = 10\n", "unknown option 'warmup'; did you mean 'warmup_steps'"),
        (RECIPE + 'steps = "many"\n', "invalid int value: 'many'"),
        (RECIPE + "steps = 13000.0\n", "invalid int value"),
        (RECIPE + 'mixed_precision = "fp8"\n', "invalid choice: 'fp8'"),
        (RECIPE + 'compile = "yes"\n', "compile must be true or false"),
        (RECIPE + "lr = true\n", "lr takes a value"),
        (RECIPE + "steps = [1, 2]\n", "must be a string, number or boolean"),
        (RECIPE.replace("[[generator.stages]]\n", 'out = "r0"\n[[generator.stages]]\n'), "`out` belongs in each"),
        (RECIPE + "[[generator.stages]]\nsteps = 2\n", "generator stage 2: every stage needs its own run folder"),
        (RECIPE + "[sampling]\nsteps = 30\n", r"\[sampling\]: .*can set num_inference_steps.*not \['steps'\]"),
        (RECIPE + "[sampling]\nguidance_scale = -1\n", r"\[sampling\]: Guidance must be a number"),
        ("sampling = 30\n" + RECIPE, r"\[sampling\] must be a table"),
        (RECIPE + '[[generator.stages]]\nout = "r1"\n', "generator stage 2: every stage needs its own run folder"),
        (RECIPE + '[[generator.stages]]\nout = "r1/"\n', "generator stage 2: every stage needs its own run folder"),
        (b"\xff\xfe model", "not valid TOML"),  # a binary file: the codec's message, naming no file
        # a later stage's typo was found only once the stages before it had trained
        (RECIPE + '[[generator.stages]]\nout = "r2"\ninit_from = "./typo"\n', "stage 2: init_from = './typo': "),
        (RECIPE + '[[generator.stages]]\nout = "r2"\ndata = "no/such/images"\n', "stage 2: data = .*no such folder"),
        ("FOLDER", "is a folder: name a .toml file"),
    ],
)
def test_a_bad_recipe_is_a_clear_error_before_any_work(tmp_path, text, match):
    recipe = tmp_path / "bad.toml"
    if text == "FOLDER":
        recipe.mkdir()
    elif isinstance(text, bytes):
        recipe.write_bytes(text)
    elif text is not None:
        recipe.write_text(text)
    with pytest.raises(ValueError, match=match):
        main(_recipe_args(recipe))
    assert not (tmp_path / "r1").exists() and not any(tmp_path.glob("runs*"))


def test_a_stage_may_start_from_what_an_earlier_stage_makes(tmp_path):
    """The recipe's model folder and the stages' run folders do not exist before the stages run: not typos."""
    from mmgen.training.recipe import check_stage_sources, load_recipe, recipe_stages
    from mmgen.training.train_generator import add_arguments

    recipe = tmp_path / "ok.toml"
    recipe.write_text(
        RECIPE + '[[generator.stages]]\nout = "r2"\ninit_from = "m"\n[[generator.stages]]\nout = "r3"\n'
        'init_from = "r2/"\n'
    )
    loaded = load_recipe(recipe)
    check_stage_sources(recipe_stages(loaded, "generator", add_arguments), loaded.model)


def test_the_command_line_prints_a_bad_recipe_as_an_error(tmp_path, capsys):
    from mmgen.cli import main as cli_main

    (tmp_path / "bad.toml").write_text(RECIPE + "stepz = 3\n")
    assert cli_main(["train-generator", "--recipe", str(tmp_path / "bad.toml")]) == 2
    assert capsys.readouterr().err.startswith("error: recipe ")


def test_command_line_options_apply_to_every_stage_unless_the_recipe_sets_them(tmp_path):
    from mmgen.training import train_generator
    from mmgen.training.recipe import load_recipe, recipe_stages

    (tmp_path / "r.toml").write_text(RECIPE + 'steps = 7\n[[generator.stages]]\nout = "r2"\nsteps = 9\n')
    recipe = load_recipe(tmp_path / "r.toml")
    stages = recipe_stages(recipe, "generator", train_generator.add_arguments, _recipe_args(recipe.path, "--cpu"))
    assert [(s.args.steps, s.args.preset, s.args.cpu, s.args.resume) for s in stages] == [(7, "tiny", True, True)] + [
        (9, "tiny", True, True)
    ]
    with pytest.raises(ValueError, match="--steps 5 on the command line contradicts the recipe's steps = 7"):
        recipe_stages(recipe, "generator", train_generator.add_arguments, _recipe_args(recipe.path, "--steps", "5"))


def test_the_trainers_defaults_are_the_64px_recipes_first_stage():
    """`mmgen train-generator` with no options trains stage 1 of recipes/mmgen-base-64.toml (from nothing), less the
    machine choices; every later stage starts from what the stage before it published."""
    from pathlib import Path

    from mmgen.training import train_generator
    from mmgen.training.recipe import load_recipe, recipe_stages

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "mmgen-base-64.toml")
    stages = recipe_stages(recipe, "generator", train_generator.add_arguments)
    from mmgen.training.init_from import new_dit_options

    defaults = train_generator.add_arguments(argparse.ArgumentParser()).parse_args([])
    for args in (defaults, stages[0].args):
        new_dit_options(args)  # a new DiT's size where not given, as the trainer fills it in
    defaults, first = vars(defaults), vars(stages[0].args)
    machine = {"mixed_precision", "compile", "resume", "recipe"}
    assert {k: v for k, v in first.items() if k not in machine} == {
        k: v for k, v in defaults.items() if k not in machine
    }
    assert len(stages) == 6 and all(s.args.init_from == recipe.model for s in stages[1:])
    assert recipe.model == "assets/mmgen-base-64" and recipe.scheduler == "euler-ancestral"


def test_the_shipped_128px_recipe_continues_the_64px_dit_on_the_vqgan_f8():
    from pathlib import Path

    from mmgen.training import train_generator, train_tokenizer
    from mmgen.training.recipe import load_recipe, recipe_stages

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "mmgen-base.toml")
    (decoder,) = recipe_stages(recipe, "tokenizer", train_tokenizer.add_arguments)
    assert decoder.args.init_from == "assets/vqgan-f8" and decoder.args.decoder_only  # vqgan-f8's tokens
    first, *later = recipe_stages(recipe, "generator", train_generator.add_arguments)
    assert recipe.model == "assets/mmgen-base" and later
    assert {s.args.vqvae for s in (first, *later)} == {"assets/mmgen-base"}  # the tokenizer the recipe published
    assert first.args.init_from == "assets/mmgen-base-64" and first.args.sample_size == 16
    # every later stage continues the published weights on the same encoded scenes, each with a seed of its own
    assert all(s.args.init_from == "assets/mmgen-base" for s in later)
    assert len({s.args.seed for s in (first, *later)}) == 1 + len(later)
    assert all((s.args.data_seed, s.args.num_samples) == (first.args.data_seed, first.args.num_samples) for s in later)
    # the one before last deepens the DiT to 9 blocks, the last distils it back into 6
    assert [s.args.grow_depth for s in later] == [None] * (len(later) - 2) + [9, None]
    assert [s.args.distill_depth for s in later] == [None] * (len(later) - 1) + [6]


def test_trains_on_a_captioned_folder_leaving_out_bad_data(tmp_path, tiny_model_dir, capsys):
    """A user's imagefolder: images without a caption and files that are not images are left out with a count."""
    data = tmp_path / "imgs"
    data.mkdir()
    records = []
    for i in range(4):
        Image.new("RGB", (40, 40), (60 * i, 20, 200)).save(data / f"{i}.png")
        text = f"colour {i}" if i < 2 else "a long caption " * 12 + "on a white background" if i == 2 else ""
        records.append({"file_name": f"{i}.png", "text": text})
    (data / "notes.png").write_text("not an image")
    (data / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    main(_args(tmp_path / "run", tiny_model_dir, "--steps", "2", "--data", str(data), "--cache-dir", ""))
    assert (tmp_path / "run" / "transformer" / "config.json").exists()
    header = json.loads((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()[0])
    assert header["hardware"] == f"a {torch.get_num_threads()}-core CPU (no GPU)"
    out = capsys.readouterr().out
    assert "3 captioned images used, left out 2" in out and "images without a caption: 1, e.g. 3.png" in out
    assert "--num-samples" not in out  # 16 crops of 3 images: every image is used
    # 38 word pieces: its end is never read, and that is said (a background named last was dropped unseen)
    assert "note: 1 of 3 distinct captions (31% of the images) are longer than the 30 word pieces" in out
    main(_args(tmp_path / "few", tiny_model_dir, "--steps", "1", "--data", str(data), "--num-samples", "2"))
    assert "--num-samples 2 encodes the first 2 of its 3 images" in capsys.readouterr().out


def test_an_f8_tokenizer_trains_on_128_px_scenes(tmp_path):
    f8 = VQVAE(block_channels=(8, 8, 16, 16), encoder_layers=(0, 0, 1, 1), decoder_layers=(0, 0, 1, 1), num_codes=64)
    f8.eval().save_pretrained(tmp_path / "f8" / "vqvae")
    out = tmp_path / "gen"
    main(_args(out, str(tmp_path / "f8"), "--steps", "1"))
    assert DiT.from_pretrained(out / "transformer").config.sample_size == 16  # 16x16 latents of 128-px scenes
    assert Image.open(out / "samples" / "step-1.png").height >= 2 * 128  # two rows of 128-px samples
    with pytest.raises(ValueError, match="64, 128 or 256 px"):  # 8x8 f8 latents would be 64-px scenes
        main(_args(tmp_path / "bad", str(tmp_path / "f8"), "--steps", "1", "--sample-size", "10"))


def test_a_recipe_continues_a_dit_on_another_tokenizer(tmp_path, tiny_model_dir, capsys):
    """As the 128-px model continues the 64-px one on the f8 VQ-GAN: the DiT keeps its weights but gets the new
    tokenizer's scaling factor, and the model folder ships the tokenizer it was trained on."""
    import shutil

    from mmgen.images import pil_to_tensor
    from mmgen.models.vqvae import VQVAE_PRESETS

    first, second, other = tmp_path / "first", tmp_path / "second", tmp_path / "other"
    shutil.copytree(tiny_model_dir, first)
    main(_args(tmp_path / "runs" / "first", str(first), "--steps", "1"))
    from mmgen.release import release_generator

    release_generator(tmp_path / "runs" / "first", first)
    torch.manual_seed(1)
    vq = VQVAE(**VQVAE_PRESETS["tiny"] | {"num_codes": 32}).train()  # another design, not a fine-tuned copy
    vq(torch.stack([pil_to_tensor(shapes_sample(3, i).image) * 0.5 for i in range(8)]))
    vq.eval().save_pretrained(other / "vqvae")
    recipe = tmp_path / "second.toml"
    recipe.write_text(
        f'model = "{second}"\nscheduler = "euler-ancestral"\n\n[generator]\nvqvae = "{other}"\npreset = "tiny"\n'
        f"num_samples = 16\nbatch_size = 4\nwarmup_steps = 1\nval_every = 100\n\n[[generator.stages]]\n"
        f'out = "{tmp_path}/runs/second"\ninit_from = "{first}"\nsteps = 1\n'
    )
    assert main(_recipe_args(recipe)) == second
    assert "has another tokenizer: scaling factor measured again" in capsys.readouterr().out
    old = DiT.from_pretrained(first / "transformer").config.scaling_factor
    new = DiT.from_pretrained(second / "transformer").config.scaling_factor
    assert abs(new - old) > 0.01 * old
    shipped = VQVAE.from_pretrained(second / "vqvae").quantizer.codebook
    assert torch.equal(shipped, vq.quantizer.codebook.half().float())
    from mmgen.training.init_from import same_tokenizer

    tuned = VQVAE.from_pretrained(first, subfolder="vqvae")  # a fine-tuned copy (mmgen-emoji's) keeps the factor
    tuned.quantizer.codebook.mul_(0.9)
    assert same_tokenizer(str(first), tuned) and not same_tokenizer(str(first), vq)
    with pytest.raises(ValueError, match="another tokenizer; distil it on its own"):  # its teacher would misread
        main(_args(tmp_path / "bad", str(other), "--steps", "1", "--init-from", str(first), "--distill-depth", "1"))
    assert not (tmp_path / "bad" / "train_log.jsonl").exists()


def test_the_encoded_scenes_cache_is_keyed_on_the_encoder_and_codebook_not_the_decoder(tiny_vq):
    from types import SimpleNamespace

    from mmgen.training.encoded_data import cache_key

    args = SimpleNamespace(data="shapes", seed=0, data_seed=None, num_samples=16, sample_size=8)
    text_encoder = SimpleNamespace(name_or_path="all-MiniLM-L6-v2")
    key = cache_key(args, tiny_vq, text_encoder)
    with torch.no_grad():
        next(tiny_vq.decoder.parameters()).add_(1.0)
    assert cache_key(args, tiny_vq, text_encoder) == key  # a decoder trained on: the same latents
    with torch.no_grad():
        tiny_vq.quantizer.codebook.add_(1.0)
    moved = cache_key(args, tiny_vq, text_encoder)
    assert moved != key
    with torch.no_grad():
        next(tiny_vq.encoder.parameters()).add_(1.0)
    assert cache_key(args, tiny_vq, text_encoder) != moved


def test_grow_depth_starts_from_the_same_function_and_trains_the_new_blocks(tmp_path, tiny_model_dir):
    """--grow-depth inserts zero-gated copies of blocks: the deeper DiT computes what the trained one did, each copy
    sits after its source, the copies are trained with the rest, a resumed run takes its checkpoint, and bad depths
    fail before any encoding."""
    first = tmp_path / "first"
    main(_args(first, tiny_model_dir, "--steps", "2"))
    trained = DiT.from_pretrained(first / "transformer")
    depth = trained.config.depth
    deeper = deepen(trained, depth + 1)
    assert deeper.config.depth == depth + 1 and insertion_points(6, 9) == [1, 3, 5]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, trained.config.in_channels, trained.config.sample_size, trained.config.sample_size, generator=g)
    text, t = torch.randn(2, 5, trained.config.text_dim, generator=g), torch.tensor([900, 100])
    with torch.no_grad():
        torch.testing.assert_close(deeper(x, t, text).sample, trained(x, t, text).sample)
        broken = deepen(trained, depth + 1)
        broken.blocks[-1].ada[-1].bias.data.fill_(0.5)  # a copy that is not the identity changes the output
        assert not torch.allclose(broken(x, t, text).sample, trained(x, t, text).sample)

    # Where the blocks land: each original in order, each copy after its source with the same attention and MLP
    doubled = deepen(trained, 2 * depth)
    layout = [entry for i in range(depth) for entry in ((i, False), (i, True))]
    for j, (i, copy) in enumerate(layout):
        new, old = doubled.blocks[j].state_dict(), trained.blocks[i].state_dict()
        for k in old:
            zeroed = copy and k.startswith(("ada.", "cross.out."))
            assert torch.equal(new[k], torch.zeros_like(old[k]) if zeroed else old[k]), (j, k)

    grown_dir = tmp_path / "grown"
    grow = ("--grow-depth", str(depth + 1))
    main(_args(grown_dir, tiny_model_dir, "--steps", "3", "--init-from", str(first), *grow))
    grown = DiT.from_pretrained(grown_dir / "transformer")
    assert grown.config.depth == depth + 1
    assert grown.blocks[-1].ada[-1].weight.abs().sum() > 0  # the new block (all zero at the start) learnt
    # resumed from its checkpoint, even once --init-from holds the deeper DiT (as a recipe publishes it)
    interrupt(grown_dir, "transformer")
    main(_args(grown_dir, tiny_model_dir, "--steps", "3", "--resume", "--init-from", str(grown_dir), *grow))
    assert DiT.from_pretrained(grown_dir / "transformer").config.depth == depth + 1

    for bad, message in ((depth, "already has"), (2 * depth + 1, "at most twice")):
        with pytest.raises(ValueError, match=message):
            main(
                _args(
                    tmp_path / "bad",
                    tiny_model_dir,
                    "--steps",
                    "1",
                    "--init-from",
                    str(first),
                    "--grow-depth",
                    str(bad),
                )
            )
    with pytest.raises(ValueError, match="--init-from"):
        main(_args(tmp_path / "bad", tiny_model_dir, "--steps", "1", "--grow-depth", "4"))
    assert not (tmp_path / "bad" / "train_log.jsonl").exists()


def test_distill_depth_starts_from_the_blocks_deepening_added_dropped_and_learns_the_teacher(
    tmp_path, tiny_model_dir, capsys
):
    """--distill-depth: the student is the --init-from DiT without the blocks --grow-depth inserts (so shrinking a
    deepened DiT gives back the one deepened, exactly), its target is the teacher's prediction (zero loss for a
    student that is its teacher), a resumed run reloads the teacher, and bad depths fail before any encoding."""
    first = tmp_path / "first"
    main(_args(first, tiny_model_dir, "--steps", "2"))
    trained = DiT.from_pretrained(first / "transformer")
    depth = trained.config.depth
    assert removal_points(9, 6) == [2, 5, 8] and removal_points(6, 3) == [1, 3, 5]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, trained.config.in_channels, trained.config.sample_size, trained.config.sample_size, generator=g)
    text, t = torch.randn(2, 5, trained.config.text_dim, generator=g), torch.tensor([900, 100])
    deeper = deepen(trained, 2 * depth)
    with torch.no_grad():
        deeper.blocks[1].ada[-1].bias.add_(0.5)  # an inserted block that learnt something: dropped again
        torch.testing.assert_close(shrink(deeper, depth)(x, t, text).sample, trained(x, t, text).sample)

    sched = training_scheduler()
    latents, noise = torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)
    masks = torch.ones(2, 5, dtype=torch.bool)
    same = diffusion_loss(trained, sched, latents, noise, t, text, masks, teacher=trained)
    assert same.item() == 0 and diffusion_loss(trained, sched, latents, noise, t, text, masks, teacher=deeper) > 0

    grown = tmp_path / "grown"
    main(_args(grown, tiny_model_dir, "--steps", "2", "--init-from", str(first), "--grow-depth", str(depth + 1)))
    student_dir = tmp_path / "student"
    distill = ("--init-from", str(grown), "--distill-depth", str(depth))
    main(_args(student_dir, tiny_model_dir, "--steps", "3", *distill))
    said = capsys.readouterr().out  # each stage says what it did to the depth (it was seen only in config.json)
    assert f"--grow-depth: {first}'s DiT, {depth} -> {depth + 1} blocks" in said
    dropped = ", ".join(map(str, removal_points(depth + 1, depth)))
    assert f"--distill-depth: {grown}'s DiT, {depth + 1} -> {depth} blocks (blocks {dropped} dropped)" in said
    student = DiT.from_pretrained(student_dir / "transformer")
    assert student.config.depth == depth
    start = shrink(DiT.from_pretrained(grown / "transformer"), depth)
    assert not torch.equal(student.blocks[0].ada[-1].weight, start.blocks[0].ada[-1].weight)  # it trained
    headers = [r for r in map(json.loads, (student_dir / "train_log.jsonl").read_text().splitlines()) if "args" in r]
    assert [h["args"].get("distill_depth") for h in headers] == [None, None, depth]  # the stages it continues
    interrupt(student_dir, "transformer")
    main(_args(student_dir, tiny_model_dir, "--steps", "3", "--resume", *distill))
    assert DiT.from_pretrained(student_dir / "transformer").config.depth == depth

    for extra, message in (
        (("--init-from", str(grown), "--distill-depth", str(depth + 1)), "ask for fewer"),
        (("--init-from", str(grown), "--distill-depth", "1"), "at least half"),
        (("--distill-depth", "1"), "--init-from"),
        (("--init-from", str(first), "--grow-depth", "3", "--distill-depth", "1"), "one or the other"),
    ):
        with pytest.raises(ValueError, match=message):
            main(_args(tmp_path / "bad", tiny_model_dir, "--steps", "1", *extra))
    assert not (tmp_path / "bad" / "train_log.jsonl").exists()


def test_a_vqvae_that_is_no_tokenizer_is_named(tmp_path, tiny_model_dir):
    """--vqvae naming a generator's run (no vqvae/ in it) is one line before anything else loads."""
    run = tmp_path / "gen-run"
    (run / "transformer").mkdir(parents=True)
    with pytest.raises(
        ValueError, match=r"^--vqvae .*gen-run: no mmgen tokenizer in .*gen-run: it has no vqvae/ folder$"
    ):
        main(_args(tmp_path / "out", str(run), "--steps", "1"))


def test_an_odd_sample_size_and_an_init_from_without_a_dit_are_named(tmp_path, tiny_model_dir):
    (tmp_path / "afile.txt").write_text("mine")
    with pytest.raises(ValueError, match="--out .*afile.txt is a file, not a folder"):  # before any loading
        main(_args(tmp_path / "afile.txt", tiny_model_dir, "--steps", "1"))
    with pytest.raises(ValueError, match="--sample-size must be a multiple of 2 .* got 7"):
        main(_args(tmp_path / "out", tiny_model_dir, "--steps", "1", "--sample-size", "7"))
    with pytest.raises(ValueError, match=r"--init-from .*vqvae: no DiT found in .*vqvae/transformer \(a generator"):
        main(_args(tmp_path / "out", tiny_model_dir, "--steps", "1", "--init-from", f"{tiny_model_dir}/vqvae"))


def test_a_folder_encodes_ten_crops_of_each_image_unless_told(tmp_path):
    """--num-samples left out: 60,000 crops of any folder (12 images took 14 min to encode); now 10 per image."""
    from mmgen.training.encoded_data import default_num_samples

    for i in range(3):
        Image.new("RGB", (16, 16), (80 * i, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "metadata.jsonl").write_text(
        "".join(f'{{"file_name": "{i}.png", "text": "c{i}"}}\n' for i in range(2))
    )
    assert default_num_samples(str(tmp_path)) == 20  # the captioned ones
    assert default_num_samples("shapes") == 60_000
    assert build_parser().parse_args(["train-generator"]).num_samples is None


def test_a_long_caption_trains_and_samples_cut_to_a_prompt(tmp_path):
    """A folder's captions are the sample prompts; one over the prompt limit used to fail validation and lose the
    run (validation came before that step's checkpoint)."""
    from PIL import Image

    from mmgen.settings import MAX_PROMPT_CHARS, check_prompt
    from mmgen.training.train_generator import validation_prompts

    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "a cat " * 1000}) + "\n")
    (prompt,) = validation_prompts(str(tmp_path))
    assert len(prompt) == MAX_PROMPT_CHARS and check_prompt(prompt)


def test_a_run_inside_its_data_folder_does_not_change_the_cache_key(tiny_vq, tmp_path, capsys, monkeypatch):
    """The key hashed every file under --data, a run's own log and checkpoints too: with --out inside the folder
    each resume and later stage encoded the whole set again into another cache file."""
    from types import SimpleNamespace

    from mmgen.training.encoded_data import cache_key
    from mmgen.training.run_options import note_shapes_folder

    (tmp_path / "a.png").write_bytes(b"x")
    args = SimpleNamespace(data=str(tmp_path), seed=0, data_seed=None, num_samples=16, sample_size=8)
    text_encoder = SimpleNamespace(name_or_path="all-MiniLM-L6-v2")
    key = cache_key(args, tiny_vq, text_encoder)
    run = tmp_path / "run"
    (run / "checkpoints" / "step-10").mkdir(parents=True)
    (run / "train_log.jsonl").write_text("{}\n")
    (run / "checkpoints" / "step-10" / "model.safetensors").write_bytes(b"y")
    assert cache_key(args, tiny_vq, text_encoder) == key
    (tmp_path / "b.png").write_bytes(b"z")
    assert cache_key(args, tiny_vq, text_encoder) != key  # a new image is a new training set
    # a folder named "shapes" where --data shapes is given: said, not silently passed over
    (tmp_path / "shapes").mkdir()
    monkeypatch.chdir(tmp_path)
    note_shapes_folder(SimpleNamespace(data="shapes"))
    assert "give ./shapes" in capsys.readouterr().out


def test_the_card_says_the_global_batch_and_the_precision_that_ran(tmp_path):
    """--batch-size is per process: stage 2, run by 4 processes of 16, trained batches of 64. Its option left mixed
    precision to accelerate (null); the header logs what ran. Stage 1's log, from before either was logged, reads
    as it always did."""
    from mmgen.model_card import _generator_training

    args = {"seed": 0, "num_samples": 10, "caption_dropout": 0.1, "batch_size": 16, "lr": 3e-4, "steps": 50}
    args |= {"ema_decay": 0.99, "loss_weighting": "min-snr-1", "vqvae": "assets/x"}
    done = {"done": True, "steps": 50, "train_time_s": 60.0}
    stage1 = {"command": "mmgen train-generator", "args": args | {"mixed_precision": "bf16"}}
    stage2 = {"command": "mmgen train-generator", "args": args | {"mixed_precision": None}}
    stage2 |= {"num_processes": 4, "mixed_precision": "bf16", "hardware": "4 processes, each on 1 NVIDIA H100"}
    lines = [stage1, done, stage2, done]
    (tmp_path / "generator_train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    card = _generator_training(tmp_path)
    assert "| 1 | 50 | 16 | 0.0003 |" in card and "| 2 | 50 | 64 (4 processes x 16) | 0.0003 |" in card
    assert "mixed precision bf16" in card
    # where each stage ran (it said "a 2-core CPU (no GPU)" whatever the machine; logs without it did run there)
    assert "on a 2-core CPU (no GPU) and 4 processes, each on 1 NVIDIA H100, plus" in card
