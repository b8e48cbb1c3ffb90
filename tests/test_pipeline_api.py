"""The pipeline used as a diffusers user would: half precision, negative prompts, generator lists, numpy numbers,
and wrong values that must be one clear ValueError rather than an error from deep inside torch."""

import numpy as np
import pytest
import torch
from conftest import make_tiny_pipe

from mmgen.models.text_encoder import encode_text
from mmgen.pipeline import MMGenPipeline
from mmgen.settings import OTHER_SCHEDULERS, SCHEDULER_CLASSES

PROMPT = "a large red circle in the top left on a white background"
FAST = {"num_inference_steps": 2, "num_candidates": 1, "output_type": "latent"}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_shipped_model_loads_and_draws_in_half_precision(dtype):
    """The bundled MiniLM stays float32 and the DiT's position table is not saved with its weights: both met the
    half-precision DiT in a matmul of mixed dtypes."""
    pipe = MMGenPipeline.from_pretrained("assets/mmgen-base", torch_dtype=dtype)
    out = pipe(PROMPT, generator=seeded(0), num_inference_steps=4, num_candidates=1)  # the fewest its schedule takes
    assert out.images[0].size == (128, 128) and out.tokens.shape == (1, 16, 16)
    # Every code's own vector reads back as that code (in bfloat16 the codes are no longer unit vectors and 34 of
    # mmgen-base's 1,024 read as a near twin; inpainting's "every other cell keeps its code" rests on this).
    codes = torch.arange(pipe.vqvae.quantizer.num_codes).view(1, -1, 1)
    assert torch.equal(pipe.latents_to_tokens(pipe.tokens_to_latents(codes)), codes)


def test_changing_precision_after_a_call_keeps_working():
    """The prompt cache keeps float32 states; they are cast to the DiT's dtype when used."""
    pipe = make_tiny_pipe()
    pipe(PROMPT, generator=seeded(0), **FAST)
    pipe.to(torch.bfloat16)
    assert pipe("a blue square at the bottom", generator=seeded(0), **FAST).images.dtype == torch.bfloat16
    pipe.to(torch.float32)
    pipe(PROMPT, generator=seeded(0), **FAST)


def test_negative_prompts_as_in_diffusers():
    """None is the null condition (the empty prompt), a list gives one negative per prompt."""
    pipe = make_tiny_pipe()

    def negatives(negative):
        return pipe.encode_prompt([PROMPT, PROMPT], "cpu", 1, True, negative)[2]

    empty, blue = negatives(""), negatives("blue")
    assert torch.equal(negatives(None), empty)
    each = negatives(["", "blue"])
    assert torch.equal(each[0], empty[0]) and torch.equal(each[1], blue[1]) and not torch.equal(each[0], each[1])
    pipe([PROMPT, PROMPT], negative_prompt=None, generator=[seeded(0), seeded(1)], **FAST)
    chosen = FAST | {"num_candidates": 2}  # the candidates' runs take one negative per prompt too
    pipe([PROMPT, PROMPT], negative_prompt=["", "blue"], num_images_per_prompt=2, **chosen)
    with pytest.raises(ValueError, match=r"`negative_prompt` must be a text or a list of 2 texts"):
        pipe([PROMPT, PROMPT], negative_prompt=["blue"], **FAST)
    with pytest.raises(ValueError, match="The negative prompt has 5000 characters: too long"):
        pipe(PROMPT, negative_prompt="x" * 5000, **FAST)


def test_counts_and_generators_are_checked_and_numpy_numbers_accepted():
    pipe = make_tiny_pipe()
    with pytest.raises(ValueError, match="got 3 generators for a batch of 2 images"):
        pipe([PROMPT, PROMPT], generator=[seeded(0), seeded(1), seeded(2)], **FAST)
    with pytest.raises(ValueError, match="got 2 generators for a batch of 4 images"):
        pipe([PROMPT, PROMPT], num_images_per_prompt=2, generator=[seeded(0), seeded(1)], **FAST)
    for bad in (0, -1, 2.5):
        for candidates in (1, 2):  # checked before the candidates' runs too
            with pytest.raises(ValueError, match="`num_images_per_prompt` must be a whole number"):
                pipe(PROMPT, num_images_per_prompt=bad, **FAST | {"num_candidates": candidates})
    assert len(pipe(PROMPT, num_images_per_prompt=2.0, **FAST).images) == 2
    with pytest.raises(ValueError, match=r"`start_step` must be a whole number in 0..1, got 1.0"):
        pipe(PROMPT, start_step=1.0, latents=torch.zeros(1, 4, 8, 8), **FAST)
    same = {"generator": seeded(0), "output_type": "latent"}
    a = pipe(PROMPT, num_inference_steps=np.int64(2), guidance_scale=np.float32(4), num_candidates=2.0, **same)
    b = pipe(
        PROMPT, num_inference_steps=2, guidance_scale=4.0, num_candidates=2, generator=seeded(0), output_type="latent"
    )
    assert torch.equal(a.images, b.images)  # checked values are the ones used (2.0 candidates reached randint)
    with pytest.raises(ValueError, match="guidance interval must be"):
        pipe(PROMPT, guidance_interval=("low", "999"), **FAST)
    for generator in (0, [seeded(0), 7]):  # a seed where diffusers takes a torch.Generator: AttributeError before
        with pytest.raises(ValueError, match=r"`generator` must be a torch.Generator .* got int: for a seed, torch"):
            pipe([PROMPT] * (1 + isinstance(generator, list)), generator=generator, **FAST)
    with pytest.raises(ValueError, match=r"`latents` must be a torch.Tensor of shape \(1, 4, 8, 8\), got ndarray"):
        pipe(PROMPT, latents=np.zeros((1, 4, 8, 8)), **FAST)


def test_token_ids_out_of_range_are_named():
    pipe = make_tiny_pipe()
    grid = torch.zeros(1, 8, 8, dtype=torch.long)
    pipe.decode_tokens(grid)
    for bad in (grid + 5000, grid - 1):
        with pytest.raises(ValueError, match=r"token ids must lie in 0\.\.\d+, got"):
            pipe.decode_tokens(bad)
    with pytest.raises(ValueError, match=r"token ids must be a \(B, H, W\) batch of grids, got shape \(8, 8\)"):
        pipe.tokens_to_latents(grid[0])


def test_inpaint_takes_grids_as_users_hold_them():
    """A batch of one, numpy masks and soft masks (at 0.5, as diffusers) are read; a wrong grid is named."""
    pipe = make_tiny_pipe()
    tokens = torch.randint(0, pipe.vqvae.config.num_codes, (8, 8), generator=seeded(1))
    mask = np.zeros((8, 8), dtype=np.float32)
    mask[2:5, 3:7] = 0.9
    mask[0, 0] = 0.3  # under 0.5: kept
    run = {"generator": seeded(0), "num_inference_steps": 2, "num_candidates": 1}
    out = pipe.inpaint(PROMPT, tokens[None], mask, **run)
    kept = torch.as_tensor(mask) <= 0.5
    assert torch.equal(out.tokens[0][kept], tokens[kept])
    with pytest.raises(ValueError, match=r"paints 8×8 token grids \(32×32 px images\); the mask is 16×16"):
        pipe.inpaint(PROMPT, tokens, np.zeros((16, 16)), **run)
    with pytest.raises(ValueError, match="the token grid is 4×8"):
        pipe.inpaint(PROMPT, tokens[:4], mask, **run)
    for bad in (tokens + 0.7, torch.full((8, 8), float("inf"))):  # 3.7 was read as token 3
        with pytest.raises(ValueError, match="not token ids"):
            pipe.inpaint(PROMPT, bad, mask, **run)
    with pytest.raises(ValueError, match="The mask holds NaN"):  # a NaN mask kept every cell, unsaid
        pipe.inpaint(PROMPT, tokens, np.full((8, 8), np.nan), **run)
    again = {**run, "generator": seeded(0)}
    assert torch.equal(pipe.inpaint(PROMPT, tokens.float(), mask, **again).tokens, out.tokens)  # whole floats: ids
    with pytest.raises(ValueError, match="inpaint takes one torch.Generator"):
        pipe.inpaint(PROMPT, tokens, mask, generator=[seeded(0)], num_inference_steps=2)
    pipe.inpaint(PROMPT, tokens, mask, callback_on_step_end=None, **run)  # forwarded keyword arguments
    # A callback of the caller's runs after the inpainter's, on its latents (at the last step the kept cells are
    # their codes exactly); an exception it raises stops the run, as an app's time limit does.
    got = {}

    def record(p, i, t, kwargs):
        got[i] = kwargs["latents"].clone()
        if i == 2:
            raise TimeoutError("past the limit")
        return {}

    pipe.inpaint(PROMPT, tokens, mask, callback_on_step_end=record, **run)
    known = pipe.tokens_to_latents(tokens[None])
    assert sorted(got) == [0, 1] and torch.equal(got[1][:, :, kept], known[:, :, kept])
    with pytest.raises(TimeoutError):
        pipe.inpaint(PROMPT, tokens, mask, callback_on_step_end=record, **{**run, "num_inference_steps": 4})


def test_tokenizers_refuse_images_they_cannot_read():
    """A PIL image or 0..255 integers go wrong deep inside a convolution, or worse, silently: one line instead."""
    from PIL import Image

    from mmgen.tokenizers import as_tokenizer

    pipe = make_tiny_pipe()
    for encode in (pipe.vqvae.encode, as_tokenizer(pipe.vqvae).encode):
        with pytest.raises(ValueError, match=r"got Image \(from a PIL image: pil_to_tensor\)"):
            encode(Image.new("RGB", (32, 32)))
        with pytest.raises(ValueError, match="torch.uint8"):
            encode(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_non_finite_latents_are_not_read_as_code_zero():
    pipe = make_tiny_pipe()
    bad = torch.full((1, 4, 8, 8), float("nan"))
    with pytest.raises(ValueError, match="the latents hold NaN or infinite values"):
        pipe(PROMPT, latents=bad, **FAST)
    run = pipe.stepwise(PROMPT, num_inference_steps=2, num_candidates=1)
    with pytest.raises(ValueError, match="`output_type` must be pil, np, pt or latent, got 'foo'"):
        run.result("foo")


def test_a_saved_pipeline_keeps_its_vocabulary(tmp_path):
    """save_pretrained writes transformer/vocabulary.json beside the weights: unknown-word notes and caption() work on
    the copy as on the original (diffusers' save alone dropped it)."""
    from mmgen.vocabulary import Vocabulary

    pipe = MMGenPipeline.from_pretrained("assets/mmgen-base-64")
    pipe.save_pretrained(tmp_path / "copy")
    words = Vocabulary.for_pipeline(MMGenPipeline.from_pretrained(tmp_path / "copy")).words
    assert words == Vocabulary.for_pipeline(pipe).words and "circle" in words


def test_given_noise_is_scaled_as_in_diffusers():
    """`latents` for step 0 are unit noise, scaled by the scheduler's init_noise_sigma as diffusers' pipelines scale
    them: the generator's own draw, passed in, gives the generator's image (here Euler: a sigma of about 14)."""
    pipe = make_tiny_pipe()
    pipe.use_scheduler("euler")
    noise = torch.randn(1, 4, 8, 8, generator=seeded(3))
    given = pipe(PROMPT, latents=noise, **FAST)
    seeded_run = pipe(PROMPT, generator=seeded(3), **FAST)
    assert pipe.scheduler.init_noise_sigma > 2
    torch.testing.assert_close(given.images, seeded_run.images)


def test_diffusers_cfg_cutoff_callback_turns_guidance_off():
    """diffusers' SDCFGCutoffCallback sets `pipe._guidance_scale` and hands back the conditional text states: from
    the cut-off on the run is the unguided one, as if guidance applied to the first step only."""
    from diffusers.callbacks import SDCFGCutoffCallback

    pipe = make_tiny_pipe()
    for block in pipe.transformer.blocks:  # wake the zero-initialised layers, so that the text matters
        for layer in (block.ada[-1], block.cross.out):
            torch.nn.init.normal_(layer.weight, std=0.2)

    def final_latents(**kwargs) -> torch.Tensor:
        run = pipe.stepwise(PROMPT, num_inference_steps=4, guidance_scale=5.0, num_candidates=1, **kwargs)
        while not run.done:
            run.step()
        return run.latents

    cut = final_latents(generator=seeded(0), callback_on_step_end=SDCFGCutoffCallback(cutoff_step_ratio=0.0))
    pipe.scheduler.set_timesteps(4)
    first = float(pipe.scheduler.timesteps[0])
    torch.testing.assert_close(cut, final_latents(generator=seeded(0), guidance_interval=(first, first)))
    assert not torch.allclose(cut, final_latents(generator=seeded(0), guidance_interval=None), atol=1e-3)


def test_step_callbacks_read_the_run_and_may_change_only_what_it_uses():
    """Under `stepwise` too, a callback reads `pipe.num_timesteps` and `pipe.guidance_scale`; a key the run would
    silently ignore is a clear ValueError, and so is guidance turned on where the run has no unconditional half."""
    pipe = make_tiny_pipe()
    seen = []

    def read(p, i, t, kwargs):
        seen.append((p.num_timesteps, p.guidance_scale))
        return {}

    run = pipe.stepwise(PROMPT, num_inference_steps=3, guidance_scale=4.0, num_candidates=1, callback_on_step_end=read)
    run.step()
    assert seen == [(3, 4.0)]
    with pytest.raises(ValueError, match="may return latents and prompt_embeds"):
        pipe(PROMPT, callback_on_step_end=lambda p, i, t, k: {"noise_pred": k["latents"]}, **FAST)
    # diffusers' callbacks end `return callback_kwargs`: read-only tensors handed back unchanged are no change
    everything = ["latents", "pred_x0", "noise_pred", "prompt_embeds"]
    same = pipe(PROMPT, generator=seeded(0), callback_on_step_end=lambda p, i, t, k: k, **FAST)
    handed = pipe(
        PROMPT,
        generator=seeded(0),
        callback_on_step_end=lambda p, i, t, k: k,
        **FAST,
        callback_on_step_end_tensor_inputs=everything,
    )
    assert torch.equal(same.images, handed.images)

    def guide(p, i, t, kwargs):
        p._guidance_scale = 5.0
        return {}

    with pytest.raises(ValueError, match="cannot turn guidance on"):
        pipe(PROMPT, guidance_scale=1.0, callback_on_step_end=guide, **FAST)
    with pytest.raises(NotImplementedError, match="pipe.to"):
        pipe.enable_model_cpu_offload()


def test_stepwise_takes_the_arguments_of_call_in_the_same_order():
    """A call moved from `pipe(...)` to `pipe.stepwise(...)` must mean the same: the fourth argument of stepwise
    was the negative prompt, where `__call__`'s is the guidance interval."""
    import inspect

    from mmgen.pipeline import MMGenPipeline

    call = list(inspect.signature(MMGenPipeline.__call__).parameters)
    stepwise = list(inspect.signature(MMGenPipeline.stepwise).parameters)
    assert stepwise == [name for name in call if name not in ("num_images_per_prompt", "output_type", "return_dict")]


@pytest.mark.parametrize("name", [*SCHEDULER_CLASSES.values(), *OTHER_SCHEDULERS])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_every_allowed_scheduler_has_its_clean_estimate_read_as_its_own(name, prediction_type):
    """`predict_x0` (what the trajectory shows, what snap and candidates move) against each scheduler's own x0:
    its step's `pred_original_sample`, or the data prediction its multistep solver converts the output to."""
    import inspect

    import diffusers

    from mmgen.denoising import predict_x0

    shipped = diffusers.DDPMScheduler.from_pretrained("assets/mmgen-base-64/scheduler").config
    scheduler = getattr(diffusers, name).from_config({**shipped, "prediction_type": prediction_type})
    scheduler.set_timesteps(10)
    gen = seeded(0)
    for i in (0, 2, 5):
        t, sample = scheduler.timesteps[i], torch.randn(1, 4, 4, 4, generator=gen)
        output = torch.randn(1, 4, 4, 4, generator=gen)
        ours = predict_x0(scheduler, sample, output, t)
        if hasattr(scheduler, "convert_model_output"):  # multistep solvers: x0, or (DEIS) the eps of their x0
            scheduler._step_index = i
            converted = scheduler.convert_model_output(output, sample=sample)
            alpha_t, sigma_t = scheduler._sigma_to_alpha_sigma_t(scheduler.sigmas[i])
            own = (sample - sigma_t * converted) / alpha_t if name == "DEISMultistepScheduler" else converted
        elif name == "PNDMScheduler":  # no x0 of its own: the forward process it steps through
            a = scheduler.alphas_cumprod[int(t)]
            eps = output if prediction_type == "epsilon" else a.sqrt() * output + (1 - a).sqrt() * sample
            own = (sample - (1 - a).sqrt() * eps) / a.sqrt()
        else:
            scheduler._step_index = None
            noisy = "generator" in inspect.signature(scheduler.step).parameters  # the ancestral ones
            step = scheduler.step(output, t, sample, **({"generator": seeded(1)} if noisy else {}))
            own = step.pred_original_sample
        torch.testing.assert_close(ours, own, rtol=1e-4, atol=1e-4, msg=f"{name} at step {i}")


def test_a_second_order_sampler_is_not_started_from_a_later_step():
    """Heun calls the model twice a step: `start_step` counts steps, the run counted calls (the middle of a step)."""
    from diffusers import HeunDiscreteScheduler

    pipe = make_tiny_pipe()
    pipe.scheduler = HeunDiscreteScheduler.from_config(pipe.scheduler.config)
    assert pipe(PROMPT, **FAST).images.shape[0] == 1  # from the start, as any sampler
    with pytest.raises(ValueError, match="HeunDiscreteScheduler calls the model 2 times a step"):
        pipe(PROMPT, latents=torch.zeros(1, 4, 8, 8), start_step=1, **FAST)


def test_a_subclass_of_an_allowed_scheduler_samples():
    from diffusers import EulerAncestralDiscreteScheduler

    class Mine(EulerAncestralDiscreteScheduler):
        pass

    pipe = make_tiny_pipe()
    pipe.scheduler = Mine.from_config(pipe.scheduler.config)
    assert pipe(PROMPT, **FAST).images.shape[0] == 1


def test_step_counts_that_start_far_from_noise_are_refused_with_one_that_does_not():
    """The shipped schedule's "leading" spacing starts 1 step at t = 0 and 2 at 500 (a pure-noise image), and
    DPM-Solver++ puts all 1,000 steps at t = 0 (an IndexError deep in diffusers); schedulers whose x0 mmgen does
    not read (interpolated sigmas, flow matching) would draw wrong images."""
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler, KDPM2DiscreteScheduler

    shipped = DDPMScheduler.from_pretrained("assets/mmgen-base-64/scheduler").config
    pipe = make_tiny_pipe()
    pipe.scheduler = DDPMScheduler.from_config(shipped)
    euler = pipe.with_scheduler("euler-ancestral")
    with pytest.raises(ValueError, match="1 step of EulerAncestralDiscrete.* starts at timestep 0 .*try 4 steps"):
        euler(PROMPT, num_inference_steps=1, num_candidates=1)
    with pytest.raises(ValueError, match="600 steps .* at timestep 599 of 999.*try 500 steps"):
        euler.stepwise(PROMPT, num_inference_steps=600)
    with pytest.raises(ValueError, match="1000 steps of DPMSolverMultistepScheduler start at timestep 0"):
        pipe.with_scheduler("dpm++")(PROMPT, num_inference_steps=1000, num_candidates=1)
    euler(PROMPT, generator=seeded(0), num_inference_steps=4, num_candidates=1, output_type="latent")
    for cls in (KDPM2DiscreteScheduler, FlowMatchEulerDiscreteScheduler):
        pipe.scheduler = cls()
        with pytest.raises(ValueError, match="not a scheduler mmgen can sample with"):
            pipe(PROMPT, **FAST)
    karras = type(pipe.with_scheduler("dpm++").scheduler)  # ran 49 of 50 steps, then an IndexError in diffusers
    pipe.scheduler = karras.from_config(shipped, use_karras_sigmas=True)
    with pytest.raises(ValueError, match="with use_karras_sigmas=True steps between the trained noise levels"):
        pipe(PROMPT, **FAST)


def test_tensors_out_are_in_zero_to_one_as_in_diffusers():
    """`output_type="pt"` is what "np" is, channels first: diffusers' pipelines return both in [0, 1] (it was
    [-1, 1], which code written for diffusers clips to a dark image)."""
    pipe = make_tiny_pipe()
    fast = {**FAST, "output_type": None}
    pt = pipe(PROMPT, generator=seeded(0), **{**fast, "output_type": "pt"}).images
    np_images = pipe(PROMPT, generator=seeded(0), **{**fast, "output_type": "np"}).images
    assert pt.shape == (1, 3, 32, 32) and 0 <= float(pt.min()) and float(pt.max()) <= 1
    assert np.abs(pt.permute(0, 2, 3, 1).numpy() - np_images).max() <= 0.5 / 255 + 1e-6


def test_a_callback_stops_a_run_as_in_diffusers():
    """`pipe._interrupt = True` in a step callback ends the call after that step (diffusers' convention), with the
    image the latents are then; the next call runs whole."""
    pipe = make_tiny_pipe()
    seen = []

    def stop_after_two(p, i, t, kwargs):
        seen.append(i)
        p._interrupt = i == 1
        return {}

    out = pipe(PROMPT, generator=seeded(0), callback_on_step_end=stop_after_two, **{**FAST, "num_inference_steps": 5})
    assert seen == [0, 1] and pipe.interrupt and out.tokens.shape == (1, 8, 8)
    seen.clear()
    pipe(PROMPT, generator=seeded(0), callback_on_step_end=lambda p, i, t, k: seen.append(i) or {}, **FAST)
    assert seen == [0, 1] and not pipe.interrupt


def test_height_and_width_are_the_models_own_or_refused_with_it():
    pipe = make_tiny_pipe()
    assert pipe.image_size == 32
    pipe(PROMPT, generator=seeded(0), height=32, width=32, **FAST)
    for size in ({"height": 128}, {"width": 64}, {"height": True}):
        with pytest.raises(ValueError, match="draws 32x32 images"):
            pipe(PROMPT, **size, **FAST)
        with pytest.raises(ValueError, match="draws 32x32 images"):
            pipe.stepwise(PROMPT, **size)


def test_latents_a_callback_returns_are_checked():
    """A wrong shape, type or dtype from a callback is one clear message (a wrong shape drew a smaller image
    unseen, others failed deep in torch); float64 of the right shape is taken in the run's dtype."""
    pipe = make_tiny_pipe()
    for bad in (lambda k: k["latents"][:, :, :4], lambda k: k["latents"].numpy(), lambda k: k["latents"].long()):
        with pytest.raises(ValueError, match=r"latents must be a float tensor of shape \(1, 4, 8, 8\)"):
            pipe(PROMPT, callback_on_step_end=lambda p, i, t, k, bad=bad: {"latents": bad(k)}, **FAST)
    out = pipe(
        PROMPT, generator=seeded(0), callback_on_step_end=lambda p, i, t, k: {"latents": k["latents"].double()}, **FAST
    )
    assert out.images.dtype == torch.float32


def test_a_prompt_list_names_the_item_that_is_not_text():
    pipe = make_tiny_pipe()
    with pytest.raises(ValueError, match="Prompt 2 of 2: A prompt must be text, got int"):
        pipe([PROMPT, 5], **FAST)
    with pytest.raises(ValueError, match="Prompt 1 of 2: Type a prompt first"):
        pipe(["  ", PROMPT], **FAST)


def test_the_prompt_cache_follows_the_text_encoders_weights():
    """Cached prompt states are dropped when the encoder's weights change in place (a fine-tune, a loaded state
    dict) or move to another dtype: a prompt seen before is encoded again, as a fresh pipeline encodes it."""
    pipe = make_tiny_pipe()
    before, *_ = pipe.encode_prompt(PROMPT, "cpu")
    with torch.no_grad():
        for weight in pipe.text_encoder.parameters():
            weight.mul_(0.5)
    after, *_ = pipe.encode_prompt(PROMPT, "cpu")
    assert not torch.allclose(before, after)
    fresh, _ = encode_text(pipe.tokenizer, pipe.text_encoder, [PROMPT])
    assert torch.allclose(after, fresh)


def test_a_tokenizer_folder_is_not_taken_for_a_model(tmp_path, tiny_pipe):
    """A folder holding vqvae/ alone gave diffusers' "no file named model_index.json"."""
    tiny_pipe.vqvae.save_pretrained(tmp_path / "vqvae")
    with pytest.raises(ValueError, match="holds a tokenizer alone .*mmgen encode --model"):
        MMGenPipeline.from_pretrained(tmp_path)
