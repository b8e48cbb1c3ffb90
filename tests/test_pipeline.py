import warnings

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from mmgen.callbacks import TrajectoryRecorder
from mmgen.pipeline import MMGenPipeline
from mmgen.settings import SCHEDULER_CLASSES


def _run(pipe, **kw):
    """One call of the pipeline on "a red circle", 2 steps, seed 0 unless told otherwise."""
    kw.setdefault("num_inference_steps", 2)
    kw.setdefault("generator", torch.Generator().manual_seed(0))
    return pipe("a red circle", **kw)


def _final_latents(pipe, num_inference_steps: int, **kw):
    """The last step's latents, before snapping to codes (which could hide small differences)."""
    seen = []
    _run(
        pipe,
        num_inference_steps=num_inference_steps,
        callback_on_step_end=lambda p, i, t, k: seen.append(k["latents"]),
        **kw,
    )
    return seen[-1]


def test_two_steps_give_an_image_and_its_exact_tokens(tiny_pipe):
    out = _run(tiny_pipe)
    assert out.images[0].size == (32, 32) and out.tokens.shape == (1, 8, 8)
    redecoded = tiny_pipe.decode_tokens(out.tokens)[0]
    assert list(redecoded.getdata()) == list(out.images[0].getdata())
    # the tokens are the final latents' nearest codes (cosine: unit latents against unit codes), found by hand
    unit = torch.nn.functional.normalize(_final_latents(tiny_pipe, 2) / tiny_pipe.scaling_factor, dim=1)
    nearest = torch.einsum("bchw,kc->bkhw", unit, tiny_pipe.vqvae.quantizer.codebook).argmax(1)
    assert torch.equal(nearest, out.tokens)


def test_prompt_lists_and_images_per_prompt(tiny_pipe):
    out = tiny_pipe(["a red circle", "a blue star"], num_inference_steps=2, num_images_per_prompt=2)
    assert len(out.images) == 4 and out.tokens.shape == (4, 8, 8)


def test_same_seed_same_image(tiny_pipe):
    a, b = _run(tiny_pipe), _run(tiny_pipe)
    assert torch.equal(a.tokens, b.tokens)
    c = _run(tiny_pipe, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a.tokens, c.tokens)


@pytest.mark.parametrize(
    "cls",
    [
        DDPMScheduler,
        DDIMScheduler,
        EulerDiscreteScheduler,
        EulerAncestralDiscreteScheduler,
        DPMSolverMultistepScheduler,
        UniPCMultistepScheduler,
    ],
)
def test_schedulers_swap_in(tiny_pipe, cls):
    tiny_pipe.scheduler = cls.from_config(tiny_pipe.scheduler.config)
    out = _run(tiny_pipe, num_inference_steps=4)
    assert out.tokens.shape == (1, 8, 8)


def test_callback_receives_and_can_modify_latents(tiny_pipe):
    seen = []

    def zero_latents(pipe, step, t, kwargs):
        seen.append((step, kwargs["latents"].shape))
        return {"latents": torch.zeros_like(kwargs["latents"])}

    out = _run(tiny_pipe, num_inference_steps=3, callback_on_step_end=zero_latents)
    assert [s for s, _ in seen] == [0, 1, 2]
    expected = tiny_pipe.latents_to_tokens(torch.zeros(1, 4, 8, 8))
    assert torch.equal(out.tokens, expected)


def test_trajectory_recorder(tiny_pipe):
    rec = TrajectoryRecorder()
    out = _run(
        tiny_pipe,
        num_inference_steps=4,
        callback_on_step_end=rec,
        callback_on_step_end_tensor_inputs=rec.tensor_inputs,
    )
    assert [s.step for s in rec.steps] == [0, 1, 2, 3]
    assert rec.steps[0].changed.all()
    assert rec.steps[-1].images[0].size == (32, 32)
    assert torch.equal(tiny_pipe.latents_to_tokens(rec.steps[-1].latents), out.tokens)
    plain = TrajectoryRecorder()  # without naming its inputs (it raised KeyError: 'pred_x0')
    _run(tiny_pipe, num_inference_steps=4, callback_on_step_end=plain)
    assert all(torch.equal(a.pred_x0, b.pred_x0) for a, b in zip(plain.steps, rec.steps, strict=True))


def test_replay_from_a_step_reproduces_the_run(tiny_pipe):
    tiny_pipe.scheduler = DDIMScheduler.from_config(tiny_pipe.scheduler.config)
    rec = TrajectoryRecorder(decode=False)
    full = _run(
        tiny_pipe,
        num_inference_steps=4,
        callback_on_step_end=rec,
        callback_on_step_end_tensor_inputs=rec.tensor_inputs,
    )
    replay = _run(tiny_pipe, num_inference_steps=4, latents=rec.steps[1].latents, start_step=2)
    assert torch.equal(replay.tokens, full.tokens)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prompt=""), "Type a prompt"),
        (dict(prompt="x" * 3000), "too long"),
        (dict(num_inference_steps=0), "1..1000"),
        (dict(guidance_scale=-1.0), ">= 0"),
        (dict(start_step=1), "needs the `latents`"),
        (dict(callback_on_step_end_tensor_inputs=["bogus"]), "not in"),
        (dict(output_type="gif"), "output_type"),
        (dict(guidance_interval=(600, 200)), "low <= high"),
        (dict(guidance_interval=(-5, 200)), "low <= high"),
        (dict(codebook_snap=1.5), "Codebook snap"),
        (dict(codebook_snap=-0.1), "Codebook snap"),
    ],
)
def test_bad_inputs_are_clear_errors(tiny_pipe, kwargs, message):
    kwargs = {"prompt": "a red circle", "num_inference_steps": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        tiny_pipe(**kwargs)


def test_save_load_round_trip(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "p")
    loaded = MMGenPipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(_run(tiny_pipe).tokens, _run(loaded).tokens)


def test_a_model_samples_at_its_own_defaults_where_it_sets_them(tiny_pipe, tmp_path):
    import json

    own = MMGenPipeline(**tiny_pipe.components, sampling_defaults={"num_inference_steps": 3, "guidance_scale": 6})
    own.save_pretrained(tmp_path / "p")
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["sampling_defaults"] == {"guidance_scale": 6, "num_inference_steps": 3}
    loaded = MMGenPipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    for pipe in (loaded, loaded.with_scheduler("ddim")):  # a pipeline with another sampler keeps them
        assert pipe.sampling_defaults == tiny_pipe.sampling_defaults | {"num_inference_steps": 3, "guidance_scale": 6}

    def steps_run(pipe, **kw) -> int:
        seen = []
        pipe("a red circle", num_candidates=1, callback_on_step_end=lambda p, i, t, k: seen.append(i) or {}, **kw)
        return len(seen)

    assert steps_run(loaded) == 3 and loaded.guidance_scale == 6.0  # left out: the model's own
    assert steps_run(loaded, num_inference_steps=2, guidance_scale=1.5) == 2 and loaded.guidance_scale == 1.5
    run = loaded.stepwise("a red circle", num_candidates=1)
    assert run.num_steps == 3
    assert steps_run(tiny_pipe) == tiny_pipe.sampling_defaults["num_inference_steps"]  # none set: the library's

    index["sampling_defaults"] = {"num_inference_steps": 0}  # a hand-edited folder: refused when it loads
    (tmp_path / "p" / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"sampling_defaults \(model_index.json\) are not usable: Steps"):
        MMGenPipeline.from_pretrained(tmp_path / "p")


def test_loading_takes_a_dtype_without_deprecation_warnings(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "p")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # diffusers 0.42 deprecates torch_dtype
        default = MMGenPipeline.from_pretrained(tmp_path / "p")
        half = MMGenPipeline.from_pretrained(tmp_path / "p", dtype=torch.bfloat16)
    assert default.transformer.dtype == torch.float32 and half.transformer.dtype == torch.bfloat16
    assert half.vqvae.dtype == torch.bfloat16


def test_with_scheduler_shares_models_but_not_scheduler_state(tiny_pipe):
    other = tiny_pipe.with_scheduler("euler")
    assert isinstance(other.scheduler, EulerDiscreteScheduler) and other.transformer is tiny_pipe.transformer
    assert isinstance(tiny_pipe.scheduler, DPMSolverMultistepScheduler)  # the original keeps its own
    same = tiny_pipe.with_scheduler()
    assert type(same.scheduler) is type(tiny_pipe.scheduler) and same.scheduler is not tiny_pipe.scheduler
    assert torch.equal(_run(same).tokens, _run(tiny_pipe).tokens)
    with pytest.raises(ValueError, match="unknown scheduler"):
        tiny_pipe.with_scheduler("bogus")


def test_hub_ids_are_fetched_as_a_whole_folder(tiny_pipe, tmp_path, monkeypatch):
    """A repo id goes through snapshot_download (faked here: tests never touch the network)."""
    import mmgen.model_paths

    tiny_pipe.save_pretrained(tmp_path / "snapshot")
    asked = []
    monkeypatch.setattr(
        mmgen.model_paths, "snapshot_download", lambda repo, **kw: asked.append(repo) or str(tmp_path / "snapshot")
    )
    loaded = MMGenPipeline.from_pretrained("someone/mmgen-model")
    assert asked == ["someone/mmgen-model"]
    theirs, ours = loaded.transformer.state_dict(), tiny_pipe.transformer.state_dict()
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)


def test_recorder_renders_every_step(tiny_pipe):
    rec = TrajectoryRecorder(decode=False)
    _run(
        tiny_pipe,
        num_inference_steps=3,
        callback_on_step_end=rec,
        callback_on_step_end_tensor_inputs=rec.tensor_inputs,
    )
    frames = rec.render(tiny_pipe, cell=4)
    assert len(frames) == 3 and frames[0]["n_changed"] == 64
    assert frames[0]["x_t"].size == (8, 8) and frames[0]["x0"].size == (32, 32)
    assert frames[0]["tokens"].size == frames[0]["changed"].size == (32, 32)
    assert all(0 <= f["n_changed"] <= 64 for f in frames)


def test_the_recorder_draws_x_t_as_the_dit_read_it(tiny_pipe):
    """Its x_t was the latents after the step (the next step's, off by one) and, for the Euler family, unscaled:
    x0 + sigma * noise, sigma ~14 at the first step, drawn clipped to a few saturated colours."""
    pipe = tiny_pipe.with_scheduler("euler-ancestral")
    rec = TrajectoryRecorder(decode=False)
    _run(pipe, num_inference_steps=4, callback_on_step_end=rec, callback_on_step_end_tensor_inputs=rec.tensor_inputs)
    sigmas = pipe.scheduler.sigmas
    for k in (1, 2, 3):  # step k read the latents step k - 1 left, scaled to its noise level
        torch.testing.assert_close(rec.steps[k].model_input, rec.steps[k - 1].latents / (sigmas[k] ** 2 + 1).sqrt())
    assert 0.7 < float(rec.steps[0].model_input.std()) < 1.5  # unit noise, as the DiT was trained on
    rec.steps[0].model_input = None
    with pytest.raises(ValueError, match="model_input"):
        rec.render_step(pipe, 0)


def test_guidance_interval_guides_only_the_steps_inside_it(tiny_pipe):
    """Inside the interval a step runs the guidance batch (2 rows per image) and combines it; outside, only the
    conditional row runs. An interval holding every step is plain guidance; one holding none is no guidance."""
    batches = []
    hook = tiny_pipe.transformer.register_forward_hook(lambda mod, args, out: batches.append(args[0].shape[0]))
    try:
        tiny_pipe.scheduler.set_timesteps(4)
        timesteps = [int(t) for t in tiny_pipe.scheduler.timesteps]
        interval = (0, (timesteps[1] + timesteps[2]) / 2)  # the last two of four steps
        # one run's calls (best-of-N adds its own; tests/test_candidates.py)
        part = _run(tiny_pipe, num_inference_steps=4, guidance_scale=3.0, guidance_interval=interval, num_candidates=1)
        assert batches == [1, 1, 2, 2]
        batches.clear()
        stepwise = tiny_pipe.stepwise(
            "a red circle",
            4,
            3.0,
            generator=torch.Generator().manual_seed(0),
            guidance_interval=interval,
            num_candidates=1,
        )
        while not stepwise.done:
            stepwise.step()
        assert batches == [1, 1, 2, 2] and torch.equal(stepwise.result().tokens, part.tokens)
    finally:
        hook.remove()
    for p in tiny_pipe.transformer.parameters():  # undo adaLN-Zero so that the text, hence guidance, matters
        if not p.any():
            torch.nn.init.normal_(p, std=0.2)

    def final_latents(**kw):
        return _final_latents(tiny_pipe, 4, **kw)

    everywhere = final_latents(guidance_scale=3.0, guidance_interval=(0, 999))
    assert torch.equal(everywhere, final_latents(guidance_scale=3.0))
    nowhere = final_latents(guidance_scale=3.0, guidance_interval=(timesteps[1] + 1, timesteps[0] - 1))  # between
    unguided = final_latents(guidance_scale=1.0)
    assert torch.allclose(nowhere, unguided, atol=1e-5)
    with pytest.raises(ValueError, match="starts past the last timestep .999., so no step would be guided"):
        final_latents(guidance_scale=3.0, guidance_interval=(2000, 3000))  # guidance off, unsaid
    assert not torch.allclose(everywhere, unguided, atol=1e-2)  # guidance does change this model's output


@pytest.mark.parametrize("name", SCHEDULER_CLASSES)  # every sampler offered by name, a new one too
def test_stepwise_run_equals_the_full_call(tiny_pipe, name):
    """Step mode and live previews advance a DenoisingRun; it must land on exactly what __call__ gives. The run
    goes first, on a scheduler never set up for 4 steps, with the trained (leading-spacing) schedule: a run
    that scaled its first latents by another scheduler's initial sigma would drift (the app's bug)."""
    from mmgen.pipeline import SCHEDULERS
    from mmgen.training.train_generator import training_scheduler

    pipe = tiny_pipe.with_scheduler()
    pipe.scheduler = SCHEDULERS[name].from_config(training_scheduler().config)
    run = pipe.stepwise(
        "a red circle", num_inference_steps=4, guidance_scale=3.0, generator=torch.Generator().manual_seed(0)
    )
    steps = []
    while not run.done:
        steps.append(run.step())
    full = _run(pipe, num_inference_steps=4, guidance_scale=3.0)
    assert [s["step"] for s in steps] == [0, 1, 2, 3]
    assert torch.equal(run.result().tokens, full.tokens)
    with pytest.raises(ValueError, match="finished"):
        run.step()


@pytest.mark.parametrize("name", SCHEDULER_CLASSES)
def test_inpainting_keeps_every_token_outside_the_mask(tiny_pipe, name):
    from mmgen.callbacks import LatentInpainter

    pipe = tiny_pipe.with_scheduler(name)
    tokens = torch.randint(0, pipe.vqvae.config.num_codes, (1, 8, 8), generator=torch.Generator().manual_seed(1))
    known = pipe.vqvae.quantizer.indices_to_codes(tokens) * pipe.scaling_factor
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 3:7] = True
    inpaint = LatentInpainter(known, mask, generator=torch.Generator().manual_seed(0))
    out = _run(
        pipe,
        num_inference_steps=4,
        callback_on_step_end=inpaint,
        callback_on_step_end_tensor_inputs=inpaint.tensor_inputs,
    )
    assert torch.equal(out.tokens[0][~mask], tokens[0][~mask])
    assert not torch.equal(out.tokens[0][mask], tokens[0][mask])  # the region was repainted


def test_inpaint_method_repaints_only_the_mask(tiny_pipe):
    tokens = torch.randint(0, tiny_pipe.vqvae.config.num_codes, (8, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 3:7] = True
    out = tiny_pipe.inpaint(
        "a red circle", tokens, mask, generator=torch.Generator().manual_seed(0), num_inference_steps=3
    )
    assert torch.equal(out.tokens[0][~mask], tokens[~mask])
    assert not torch.equal(out.tokens[0][mask], tokens[mask])
    with pytest.raises(ValueError, match="paints 8×8 token grids"):
        tiny_pipe.inpaint("a red circle", tokens[:4], mask[:4])


def test_inpaint_draws_one_starting_noise(tiny_pipe, monkeypatch):
    """Best-of-N would choose the noise by a run that keeps none of the cells: inpainting never runs it."""
    import mmgen.pipeline

    def no_candidates(*args, **kwargs):
        raise AssertionError("best-of-N ran for an inpainting")

    monkeypatch.setattr(mmgen.pipeline, "best_generators", no_candidates)
    tokens = torch.zeros(8, 8, dtype=torch.long)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:2] = True
    tiny_pipe.inpaint("a red circle", tokens, mask, num_inference_steps=2)  # the model's own candidates: 4
    with pytest.raises(ValueError, match="one starting noise"):
        tiny_pipe.inpaint("a red circle", tokens, mask, num_inference_steps=2, num_candidates=4)


def test_stepwise_run_takes_step_callbacks_like_the_call(tiny_pipe):
    """One step function serves both: a callback sees the same steps and tensors, and its replacement latents
    steer a stepwise run exactly as they steer __call__."""
    seen = {"call": [], "run": []}

    def callback(key):
        def fn(pipe, i, t, kw):
            seen[key].append((i, kw["pred_x0"].clone()))
            return {"latents": kw["latents"] * 0.5}

        return fn

    kw = dict(num_inference_steps=3, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    full = tiny_pipe(
        "a red circle",
        **kw,
        callback_on_step_end=callback("call"),
        callback_on_step_end_tensor_inputs=["latents", "pred_x0"],
    )
    kw["generator"] = torch.Generator().manual_seed(0)
    run = tiny_pipe.stepwise(
        "a red circle",
        **kw,
        callback_on_step_end=callback("run"),
        callback_on_step_end_tensor_inputs=["latents", "pred_x0"],
    )
    while not run.done:
        out = run.step()
    assert [i for i, _ in seen["run"]] == [0, 1, 2] == [i for i, _ in seen["call"]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(seen["run"], seen["call"]))
    assert torch.equal(out.latents, run.latents) and torch.equal(run.result().tokens, full.tokens)


def test_prompts_are_encoded_once_and_alone(tiny_pipe, monkeypatch):
    import mmgen.models.text_encoder as text_encoder

    calls = []
    real = text_encoder.encode_text
    monkeypatch.setattr(
        text_encoder, "encode_text", lambda tok, enc, texts: calls.append(texts) or real(tok, enc, texts)
    )
    first = _run(tiny_pipe, guidance_scale=3.0)
    again = _run(tiny_pipe, guidance_scale=3.0)
    assert torch.equal(first.tokens, again.tokens)
    assert calls == [["a red circle"], [""]]  # the second run hit the cache for both the prompt and the null prompt
    batch, _ = text_encoder.encode_text_cached(
        tiny_pipe.tokenizer, tiny_pipe.text_encoder, ["a blue star", "a red circle"]
    )
    alone, _ = text_encoder.encode_text_cached(tiny_pipe.tokenizer, tiny_pipe.text_encoder, ["a red circle"])
    assert torch.equal(batch[1], alone[0])  # a prompt's states do not depend on its batch


def test_bf16_autocast_stays_close_to_float32(tiny_pipe):
    """The optional bf16 path: same shapes, predictions within bf16's precision of the float32 ones."""
    run32 = tiny_pipe.stepwise("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    fast = tiny_pipe.with_scheduler()
    fast.set_autocast(torch.bfloat16)
    run16 = fast.stepwise("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    a, b = run32.step()["noise_pred"], run16.step()["noise_pred"]
    assert b.dtype == torch.float32 and not torch.equal(a, b)
    assert (a - b).abs().max() < 0.05 * a.abs().max()
    for bad in ("bf16", torch.float32, torch.int8):  # "bf16" failed only at the next call, with a TypeError
        with pytest.raises(ValueError, match="set_autocast takes torch.bfloat16, torch.float16 or None"):
            fast.set_autocast(bad)


def test_native_bf16_reads_the_cpu_flags():
    from mmgen.app.compute import native_bf16

    assert native_bf16("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    assert native_bf16("flags\t: fpu amx_bf16 amx_tile\n")
    assert not native_bf16("flags\t: fpu sse avx2 avx512f\n")
    assert not native_bf16("")


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("name", ["ddpm", "ddim", "euler", "euler-ancestral"])
def test_predict_x0_matches_the_schedulers_own_estimate(name, prediction_type):
    """The trajectory's x0 (pred_x0) is the scheduler's own clean estimate, for both targets; the schedulers
    that expose it (pred_original_sample) check it, in the alpha and in the sigma parametrisation."""
    from mmgen.denoising import predict_x0
    from mmgen.pipeline import SCHEDULERS
    from mmgen.training.train_generator import training_scheduler

    scheduler = SCHEDULERS[name].from_config(training_scheduler(prediction_type).config)
    scheduler.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 8, 4, 4, generator=g) * scheduler.init_noise_sigma
    t = scheduler.timesteps[0]
    model_output = torch.randn(latents.shape, generator=g)
    expected = scheduler.step(model_output, t, latents, generator=g).pred_original_sample
    torch.testing.assert_close(predict_x0(scheduler, latents, model_output, t), expected)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("name", SCHEDULER_CLASSES)
def test_model_output_for_x0_inverts_predict_x0(name, prediction_type):
    from mmgen.denoising import model_output_for_x0, predict_x0
    from mmgen.pipeline import SCHEDULERS
    from mmgen.training.train_generator import training_scheduler

    scheduler = SCHEDULERS[name].from_config(training_scheduler(prediction_type).config)
    scheduler.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 8, 4, 4, generator=g) * scheduler.init_noise_sigma
    for t in scheduler.timesteps[[0, 5, -1]]:
        x0 = torch.randn(latents.shape, generator=g)
        torch.testing.assert_close(
            predict_x0(scheduler, latents, model_output_for_x0(scheduler, latents, x0, t), t), x0, atol=1e-4, rtol=1e-4
        )


@pytest.mark.parametrize("name", ["euler-ancestral", "dpm++"])
def test_codebook_snap_moves_each_x0_estimate_to_its_codes(tiny_pipe, name):
    """With codebook_snap=1 every step's clean estimate lies exactly on codes; with 0.5 it lies halfway between
    the model's estimate and those codes; 0 is the plain sampler. Leaving it out means the default."""
    from mmgen.settings import DEFAULT_CODEBOOK_SNAP

    pipe = tiny_pipe.with_scheduler(name)

    def x0_per_step(**kw):
        seen = []
        _run(
            pipe,
            num_inference_steps=3,
            guidance_scale=2.0,
            callback_on_step_end_tensor_inputs=["pred_x0"],
            callback_on_step_end=lambda p, i, t, k: seen.append(k["pred_x0"]),
            **kw,
        )
        return seen

    for x0 in x0_per_step(codebook_snap=1.0):
        torch.testing.assert_close(x0, pipe.snap_latents(x0), atol=1e-4, rtol=1e-4)
    plain = x0_per_step(codebook_snap=0.0)
    default = x0_per_step(codebook_snap=DEFAULT_CODEBOOK_SNAP)
    assert all(torch.equal(a, b) for a, b in zip(default, x0_per_step()))
    assert not torch.allclose(plain[0], pipe.snap_latents(plain[0]), atol=1e-2)  # the test is not vacuous
    first_half = x0_per_step(codebook_snap=0.5)[0]  # step 0 starts from the same noise, so compare it alone
    torch.testing.assert_close(
        first_half, torch.lerp(plain[0], pipe.snap_latents(plain[0]), 0.5), atol=1e-4, rtol=1e-4
    )


def test_stepwise_run_snaps_like_the_full_call(tiny_pipe):
    run = tiny_pipe.stepwise(
        "a red circle",
        num_inference_steps=3,
        guidance_scale=2.0,
        codebook_snap=0.7,
        generator=torch.Generator().manual_seed(0),
    )
    while not run.done:
        run.step()
    full = _run(tiny_pipe, num_inference_steps=3, guidance_scale=2.0, codebook_snap=0.7)
    assert torch.equal(run.result().tokens, full.tokens)
    # one noise, with and without the snap (best-of-N could pick other noises for each)
    one = _run(tiny_pipe, num_inference_steps=3, guidance_scale=2.0, codebook_snap=0.7, num_candidates=1)
    assert not torch.equal(
        one.tokens, _run(tiny_pipe, num_inference_steps=3, guidance_scale=2.0, num_candidates=1).tokens
    )


@pytest.mark.parametrize("snap", [0.3, 0.9])
def test_a_snapped_step_returns_its_x0_tokens(tiny_pipe, snap):
    """A step that snaps x0 toward its nearest codes returns those codes (the Trajectory records them without a
    second lookup): they are the nearest codes of the step's pred_x0 too. Without the snap, none."""
    kwargs = dict(num_inference_steps=4, guidance_scale=2.0, generator=torch.Generator().manual_seed(1))
    run = tiny_pipe.stepwise("a red circle", codebook_snap=snap, **kwargs)
    while not run.done:
        out = run.step()
        assert out.tokens.shape == out.pred_x0.shape[:1] + out.pred_x0.shape[2:]
        assert torch.equal(out.tokens, tiny_pipe.latents_to_tokens(out.pred_x0))
    plain = tiny_pipe.stepwise("a red circle", codebook_snap=0.0, **kwargs).step()
    assert plain.tokens is None
