"""mmgen benchmark suite: every speed and memory figure, measured side by side in one run on this machine.

    python benchmarks/bench.py                      # all sections, table on stdout, JSON in benchmarks/results.json
    python benchmarks/bench.py --only t2i,tokenizer --repeats 5

Sections (medians over `--repeats` timed runs after warm-up, same process, same threads):
- t2i: text-to-image with the pipeline's default settings; latency of one image, images/s at batch 8; one image at
  20 steps when the default is another count; 8, 4 and 1 candidate noises (best-of-N, mmgen/candidates.py).
- sizes: text-to-image at the library's default settings (batch 1) with every shipped model, timed in turn: the
  128-px model (f8 tokenizer) against the 64-px ones (f4), 16x16 latent grids; ratio over the first 64-px one;
  then each at its own settings (a recipe's [sampling]: what a user of that model waits), and each at the same
  settings with the first-block cache (`first_block_cache=`, mmgen/step_cache.py).
- tokenizer: encode + decode (batch 1) with the pipeline's tokenizer and every other shipped one, timed in turn, at
  the size each turns into 16x16 tokens (64 px for f4, 128 for f8) and at 256x256.
- dit: one DiT forward at the sampler's batch (2: guidance's two halves), its FLOPs (counted by
  torch.utils.flop_counter), achieved GFLOP/s over this machine's fp32 matmul peak measured in the same run;
  the same sampling loop with diffusers' PixArtTransformer2DModel at the same width, depth, heads and tokens.
- train: one training step of the shipped DiT (batch 64, bf16 autocast, eager; the recipes also
  compile it) with attention in float32 (`mmgen.models.dit.attention`, the shipped code) and with PyTorch's bf16
  CPU kernel (what autocast picks by itself), timed in turn.
- cold: a fresh process from `import` through model load to the first image, and its peak resident memory.
- caption: image -> text (`mmgen.captioning`) on a held-out shapes-v1 scene: `rank_captions` of the true caption
  and 7 one-attribute distractors, and `caption()`, the grammar search (median of 3 after one warm-up).
- atlas: the codebook atlas of a K = 16,384 tokenizer (Kandinsky's MoVQ structure at a small width, random
  weights), in a fresh process: build time (encoding the reference set), resident memory, the first page of 256
  tiles decoded from scratch (the 2 s target), the same page again (cached) and a later page; medians and bests
  of 5.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmgen.pipeline import MMGenPipeline  # noqa: E402
from mmgen.settings import DEFAULT_CODEBOOK_SNAP, DEFAULT_GUIDANCE_INTERVAL, model_sampling_defaults  # noqa: E402
from mmgen.tokens import default_model  # noqa: E402

PROMPT = "a large red circle in the top left on a white background"
FIRST_BLOCK_CACHE = 0.2  # mmgen/step_cache.py: the threshold measured at mmgen-base's accuracy (docs/speed.md)


def median_s(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleaved_medians(fns, repeats: int, warmup: int = 2) -> list[float]:
    """Median seconds of each function, timed in turn within every repeat (a side-by-side comparison)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Achieved fp32 GFLOP/s of a large square matmul: the practical peak of this machine and thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / median_s(lambda: a @ b, repeats) / 1e9


def paired_t2i(pipe, repeats: int, arg: str, values, label: str, ratio: str) -> list[dict]:
    """One image with `arg` at each of `values` (the pipeline's other defaults), timed in turn within every repeat
    so that load drifts hit all alike; `ratio` holds each time over the last value's."""
    calls = [lambda v=v: pipe([PROMPT], generator=torch.Generator().manual_seed(0), **{arg: v}) for v in values]
    with torch.inference_mode():
        times = interleaved_medians(calls, repeats)
    return [
        {
            "section": "t2i",
            "name": f"{label.format(v)}, float32, batch 1 (paired)",
            "seconds": s,
            "per_image_s": s,
            "images_per_s": 1 / s,
            ratio: s / times[-1],
        }
        for v, s in zip(values, times)
    ]


def bench_t2i(pipe, repeats: int) -> list[dict]:
    rows, steps = [], pipe.sampling_defaults["num_inference_steps"]
    for variant, dtype in (("float32", None), ("bf16 autocast", torch.bfloat16)):
        run = pipe.with_scheduler()
        run.set_autocast(dtype)
        for batch in (1, 8):
            prompts = [PROMPT] * batch
            with torch.inference_mode():
                s = median_s(lambda p=prompts, r=run: r(p, generator=torch.Generator().manual_seed(0)), repeats)
            rows.append(
                {
                    "section": "t2i",
                    "name": f"defaults ({steps} steps), {variant}, batch {batch}",
                    "seconds": s,
                    "per_image_s": s / batch,
                    "images_per_s": batch / s,
                }
            )
    if steps != 20:  # the reference figure, 20 steps, against the default count
        rows += paired_t2i(pipe, repeats, "num_inference_steps", (steps, 20), "{} steps", "vs_20_steps")
    # What best-of-N starting noise costs: the call with 8, 4 and 1 candidate noises.
    rows += paired_t2i(pipe, repeats, "num_candidates", (8, 4, 1), "num_candidates={}", "vs_one_candidate")
    # What the guidance interval saves: the default call, whose last steps run the conditional half alone, and
    # the same call guided at every step.
    if DEFAULT_GUIDANCE_INTERVAL is not None:
        rows += paired_t2i(
            pipe,
            repeats,
            "guidance_interval",
            (DEFAULT_GUIDANCE_INTERVAL, None),
            "guidance_interval={}",
            "vs_every_step",
        )
    # What the codebook snap costs: the call with and without it.
    rows += paired_t2i(
        pipe, repeats, "codebook_snap", (DEFAULT_CODEBOOK_SNAP, 0.0), "codebook_snap={:g}", "vs_no_snap"
    )
    return rows


def bench_sizes(repeats: int) -> list[dict]:
    """Text-to-image with each shipped model (assets/*/model_index.json) at the same settings (the library's
    defaults), timed in turn within every repeat: only the decoder's cost should differ between 64 and 128 px."""
    folders = sorted(p.parent for p in (ROOT / "assets").glob("*/model_index.json"))
    pipes = [MMGenPipeline.from_pretrained(f) for f in folders]
    for p in pipes:
        p.set_progress_bar_config(disable=True)
    same = model_sampling_defaults()  # the library's settings for all: a model's own (fewer steps) is not its cost
    cached = same | {"first_block_cache": FIRST_BLOCK_CACHE}  # the same settings with the first-block cache
    calls = [
        lambda p=p, kw=kw: p([PROMPT], generator=torch.Generator().manual_seed(0), **kw)
        for kw in (same, cached)
        for p in pipes
    ]
    own = [lambda p=p: p([PROMPT], generator=torch.Generator().manual_seed(0)) for p in pipes]  # what a user waits
    with torch.inference_mode():
        times = interleaved_medians(calls, repeats)
        times, cached_times = times[: len(pipes)], times[len(pipes) :]
        own_times = interleaved_medians(own, repeats)
    sides = [p.transformer.config.sample_size * p.vqvae.downsample_factor for p in pipes]  # each model's image side
    base = next((t for t, side in zip(times, sides) if side == 64), times[0])
    base_own = next((t for t, side in zip(own_times, sides) if side == 64), own_times[0])
    return [
        {
            "section": "sizes",
            "name": f"{f.name}: {side}x{side} image, {same['num_inference_steps']} steps, batch 1 (paired)",
            "seconds": t,
            "vs_64px": t / base,
            "own_settings_s": o,
            "own_vs_64px": o / base_own,  # each at its own settings against the first 64-px model at its own
            "own_steps": p.sampling_defaults["num_inference_steps"],
            "own_first_block_cache": p.sampling_defaults["first_block_cache"],
            "cached_s": c,
            "cached_vs_64px": c / base,
        }
        for f, p, side, t, o, c in zip(folders, pipes, sides, times, own_times, cached_times)
    ]


def bench_tokenizer(vq, model: str, repeats: int) -> list[dict]:
    """The pipeline's tokenizer and every other shipped one, timed in turn: encode + decode of one image at the
    size each turns into 16x16 tokens (64 px for f4, 128 for f8), and at 256x256."""
    from mmgen.models.vqvae import VQVAE
    from mmgen.tokenizers import SHIPPED_TOKENIZERS

    named = {"the pipeline's": vq}
    for name, folder in SHIPPED_TOKENIZERS.items():
        if Path(folder, "vqvae", "config.json").is_file() and Path(folder).resolve() != Path(model).resolve():
            named[name] = VQVAE.from_pretrained(folder, subfolder="vqvae").eval()
    rows = []
    for sized in ("grid", 256):
        fns, names = [], []
        for name, model in named.items():
            side = 16 * model.downsample_factor if sized == "grid" else sized
            x = torch.rand(1, 3, side, side) * 2 - 1

            def run(model=model, x=x):
                with torch.inference_mode():
                    model.decode(model.encode(x).latents)

            fns.append(run)
            names.append(f"{name} f{model.downsample_factor}: encode + decode {side}x{side}")
        for name, s in zip(names, interleaved_medians(fns, repeats * 4)):
            rows.append({"section": "tokenizer", "name": name, "seconds": s})
    return rows


def _text(pipe, batch: int):
    embeds, mask, neg, neg_mask = pipe.encode_prompt([PROMPT] * batch, "cpu")
    return torch.cat([neg, embeds]), torch.cat([neg_mask, mask])


def pixart_like(dit) -> torch.nn.Module:
    """diffusers' PixArt transformer at our DiT's width, depth, heads, patch size and token count."""
    from diffusers import PixArtTransformer2DModel

    c = dit.config
    return PixArtTransformer2DModel(
        num_attention_heads=c.num_heads,
        attention_head_dim=c.hidden_size // c.num_heads,
        in_channels=c.in_channels,
        out_channels=c.in_channels,
        num_layers=c.depth,
        cross_attention_dim=c.hidden_size,
        sample_size=c.sample_size,
        patch_size=c.patch_size,
        caption_channels=c.text_dim,
        norm_type="ada_norm_single",
        use_additional_conditions=False,
    ).eval()


def sampling_loop(forward, pipe, text, mask, steps: int, guidance: float, batch: int) -> torch.Tensor:
    """The pipeline's denoising loop with a pluggable model call: guidance halves batched, same scheduler."""
    sched = pipe.with_scheduler().scheduler
    sched.set_timesteps(steps)
    c = pipe.transformer.config
    shape = (batch, c.in_channels, c.sample_size, c.sample_size)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    for t in sched.timesteps:
        model_in = sched.scale_model_input(torch.cat([latents] * 2), t)
        uncond, cond = forward(model_in, t.expand(2 * batch), text, mask).chunk(2)
        latents = sched.step(uncond + guidance * (cond - uncond), t, latents).prev_sample
    return latents


def bench_dit(pipe, repeats: int, peak: float) -> list[dict]:
    """One DiT forward and the whole sampling loop at the default steps, for: our DiT as first written (text
    keys/values recomputed every step), as optimised (text prepared once per prompt), optimised under bf16
    autocast, and diffusers' PixArt transformer at the same size."""
    from torch.utils.flop_counter import FlopCounterMode

    own = pipe.sampling_defaults
    steps, guidance = own["num_inference_steps"], own["guidance_scale"]
    dit = pipe.transformer.eval()
    ref = pixart_like(dit)
    text, mask = _text(pipe, 1)
    c = dit.config
    x = torch.randn(2, c.in_channels, c.sample_size, c.sample_size)
    t = torch.tensor([500, 500])
    with torch.inference_mode():
        context = dit.prepare_text(text, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            context16 = dit.prepare_text(text, mask)

    def eager(x, t, text, mask):  # the first version: text projected and keys/values computed at every step
        return dit(x, t, text, mask).sample

    def ours(x, t, text, mask):
        return dit(x, t, text_context=context).sample

    def ours_bf16(x, t, text, mask):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return dit(x, t, text_context=context16).sample.float()

    def pixart(x, t, text, mask):
        return ref(
            x,
            encoder_hidden_states=text,
            timestep=t,
            encoder_attention_mask=mask,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        ).sample

    variants = [
        ("mmgen DiT, eager baseline", eager, dit),
        ("mmgen DiT, optimised", ours, dit),
        ("mmgen DiT, optimised, bf16", ours_bf16, dit),
        ("diffusers PixArt, same size", pixart, ref),
    ]
    rows = []
    for name, fn, model in variants:
        with torch.inference_mode():
            with FlopCounterMode(display=False) as counter:
                fn(x, t, text, mask)
            flops = counter.get_total_flops()  # the work this variant does per step
            s = median_s(lambda fn=fn: fn(x, t, text, mask), repeats * 10)
            loop = median_s(lambda fn=fn: sampling_loop(fn, pipe, text, mask, steps, guidance, 1), repeats)
        params = sum(p.numel() for p in model.parameters())
        rows.append(
            {
                "section": "dit",
                "name": f"{name}, batch 2",
                "seconds": s,
                "gflop": flops / 1e9,
                "params_m": params / 1e6,
                "gflops_per_s": flops / s / 1e9,
                "mfu": flops / s / 1e9 / peak,
                "loop_seconds": loop,
                "loop_steps": steps,
            }
        )
    base = rows[0]["loop_seconds"]
    for r in rows:
        r["loop_speedup_vs_eager"] = base / r["loop_seconds"]
    return rows


@contextlib.contextmanager
def bf16_attention_kernel(on: bool):
    """With `on`, the DiT's attention runs where autocast sends it (PyTorch's bf16 CPU kernel) instead of in
    float32 as `mmgen.models.dit.attention` keeps it: the comparison for the "train" section."""
    from mmgen.models import dit as dit_module

    shipped = dit_module.attention
    if on:
        dit_module.attention = lambda q, k, v, mask=None: torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask
        )
    try:
        yield
    finally:
        dit_module.attention = shipped


def bench_train(pipe, repeats: int, batch: int = 64) -> list[dict]:
    """A training step (forward, backward, AdamW) with attention in float32 and in bf16."""
    from mmgen.models.dit import DiT
    from mmgen.models.text_encoder import MAX_TOKENS
    from mmgen.training.train_generator import diffusion_loss, training_scheduler

    torch.manual_seed(0)
    model = DiT.from_config(pipe.transformer.config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    noise_scheduler = training_scheduler()
    c = model.config
    latents = torch.randn(batch, c.in_channels, c.sample_size, c.sample_size)
    noise, t = torch.randn_like(latents), torch.randint(0, 1000, (batch,))
    states = torch.randn(batch, MAX_TOKENS, c.text_dim)
    masks = torch.arange(MAX_TOKENS)[None] < torch.randint(8, 20, (batch, 1))  # caption lengths in shapes-v1

    def train_step(bf16_attention: bool):
        with bf16_attention_kernel(bf16_attention), torch.autocast("cpu", dtype=torch.bfloat16):
            loss = diffusion_loss(model, noise_scheduler, latents, noise, t, states, masks)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    fp32, bf16 = interleaved_medians([lambda: train_step(False), lambda: train_step(True)], repeats * 2)
    return [
        {
            "section": "train",
            "name": f"training step, batch {batch}, bf16, {kernel} attention",
            "seconds": s,
            "vs_float32_attention": s / fp32,
        }
        for kernel, s in (("float32", fp32), ("bf16", bf16))
    ]


COLD = """
import time, resource, torch
t0 = time.perf_counter()
from mmgen.pipeline import MMGenPipeline
pipe = MMGenPipeline.from_pretrained({model!r})
pipe.set_progress_bar_config(disable=True)
t_load = time.perf_counter() - t0
pipe({prompt!r}, generator=torch.Generator().manual_seed(0))
t_first = time.perf_counter() - t0
print(t_load, t_first, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_cold(model: str) -> list[dict]:
    """A fresh interpreter: wall time from process start to the first image, and peak RSS."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", COLD.format(model=model, prompt=PROMPT)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    total = time.perf_counter() - t0
    t_load, t_first, rss_kb = out.stdout.split()[-3:]
    return [
        {
            "section": "cold",
            "name": "process start -> first image",
            "seconds": total,
            "import_and_load_s": float(t_load),
            "first_image_s": float(t_first),
            "peak_rss_mb": int(rss_kb) / 1024,
        }
    ]


ATLAS = """
import json, resource, time, torch
from diffusers import VQModel
from mmgen.codebook import CodebookAtlas, reference_images
from mmgen.images import load_image
from mmgen.tokenizers import as_tokenizer

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

torch.manual_seed(0)
down = ("DownEncoderBlock2D",) * 3 + ("AttnDownEncoderBlock2D",)
up = ("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 3
vq = VQModel(block_out_channels=(32, 32, 64, 64), down_block_types=down, up_block_types=up, layers_per_block=1,
             latent_channels=4, vq_embed_dim=4, num_vq_embeddings=16384, norm_type="spatial").eval()
with torch.no_grad():  # codes drawn from encoder outputs, so that tokens differ as in a trained model
    h = vq.encode(torch.rand(8, 3, 64, 64) * 2 - 1).latents.permute(0, 2, 3, 1).reshape(-1, 4)
    vq.quantize.embedding.weight.copy_(h[torch.randint(0, len(h), (16384,))] + 0.05 * torch.randn(16384, 4))
tok = as_tokenizer(vq, "movq-16k")
photos = [load_image(p) for p in {photos!r}]
images = reference_images(photos=photos)
def median_s(fn, repeats=5):  # (median, best): on a shared machine the best shows the work, the median the wait
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], min(times)

before = rss_mb()
build = median_s(lambda: CodebookAtlas.build(tok, images))
atlas = CodebookAtlas.build(tok, images)
after = rss_mb()
first = median_s(lambda: (atlas.tiles.clear(), atlas.page(0)))  # cold: every tile of the page decoded
again = median_s(lambda: atlas.page(0))
later = median_s(lambda: (atlas.tiles.clear(), atlas.page(40)))
print(json.dumps(dict(build=build, first=first, again=again, later=later, images=len(images),
    tokens=int(atlas.counts.sum()), used=int((atlas.counts > 0).sum()), rss_before=before, rss_built=after,
    rss_paged=rss_mb(), peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    params=sum(p.numel() for p in vq.parameters()))))
"""


def bench_atlas() -> list[dict]:
    """The K = 16,384 codebook atlas in a fresh interpreter (clean memory figures)."""
    photos = [str(p) for p in sorted((ROOT / "assets" / "examples").glob("*.png")) if "shapes" not in p.name]
    run = subprocess.run(
        [sys.executable, "-c", ATLAS.format(photos=photos)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    r = json.loads(run.stdout.splitlines()[-1])
    what = f"K=16384 MoVQ-like ({r['params'] / 1e6:.1f}M params), {r['images']} images, {r['tokens']} tokens"

    def times(median_best):
        return {"seconds": median_best[0], "best_s": median_best[1]}

    common = {"section": "atlas", "what": what, "rss_before_mb": r["rss_before"], "peak_rss_mb": r["peak"]}
    return [
        {**common, "name": "build (encode the reference set)", "rss_mb": r["rss_built"], **times(r["build"])},
        {**common, "name": "first page, 256 tiles (target 2 s)", "rss_mb": r["rss_paged"], **times(r["first"])},
        {**common, "name": "the same page again (cached)", "rss_mb": r["rss_paged"], **times(r["again"])},
        {**common, "name": "page 41 of 64", "rss_mb": r["rss_paged"], **times(r["later"])},
    ]


def bench_caption(pipe, repeats: int) -> list[dict]:
    """Seconds per image for ranking 8 captions and for the caption search, on one held-out scene."""
    from mmgen.captioning import SceneCaption, search_stages
    from mmgen.eval.eval_caption import CAPTION_SEED, distractors, drawn, scenes

    labels = scenes(CAPTION_SEED, 1, 0)["single"][0][1]
    image, truth = drawn(pipe, labels), SceneCaption.from_labels(labels)  # at the size the model paints
    captions = [truth.text] + [c.text for _, c in distractors(truth, labels, np.random.default_rng(0))]
    with torch.inference_mode():
        rank = median_s(lambda: pipe.rank_captions(image, captions), repeats, warmup=1)
        search = median_s(lambda: search_stages(pipe, image), 3, warmup=1)
    scored = search_stages(pipe, image)["captions_scored"]
    return [
        {"section": "caption", "name": "rank_captions, 8 captions", "seconds": rank, "captions": len(captions)},
        {"section": "caption", "name": "caption(): the grammar search", "seconds": search, "captions": scored},
    ]


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'section':<10}{'what':<44}{'seconds':>9}  notes", "-" * 100]
    for r in rows:
        notes = []
        if "images_per_s" in r:
            notes.append(f"{r['per_image_s']:.3f} s/image, {r['images_per_s']:.2f} images/s")
        if "vs_20_steps" in r:
            notes.append(f"{r['vs_20_steps']:.2f}x the time of 20 steps")
        if "vs_one_candidate" in r:
            notes.append(f"{r['vs_one_candidate']:.2f}x the time of one candidate")
        if "vs_every_step" in r:
            notes.append(f"{r['vs_every_step']:.2f}x the time guided at every step")
        if "vs_64px" in r:
            notes.append(f"{r['vs_64px']:.2f}x the time of the 64-px model")
            own = f"{r['own_steps']} steps" + (f", cache {c:g}" if (c := r["own_first_block_cache"]) else "")
            notes.append(f"at its own settings ({own}) {r['own_settings_s']:.3f} s = {r['own_vs_64px']:.2f}x")
            cache = f"with the first-block cache ({FIRST_BLOCK_CACHE:g}) {r['cached_s']:.3f} s"
            notes.append(f"{cache} = {r['cached_vs_64px']:.2f}x the 64-px model's time without it")
        if "vs_no_snap" in r:
            notes.append(f"{r['vs_no_snap']:.2f}x the time without the snap")
        if "mfu" in r:
            notes.append(
                f"{r['gflop']:.2f} GFLOP, {r['gflops_per_s']:.0f} GFLOP/s = {r['mfu']:.1%} of peak; "
                f"{r['loop_steps']} steps {r['loop_seconds']:.3f} s = "
                f"{r['loop_speedup_vs_eager']:.2f}x eager"
            )
        if "vs_float32_attention" in r:
            notes.append(f"{r['vs_float32_attention']:.2f}x the time with float32 attention")
        if r["section"] == "atlas":
            notes.append(f"best {r['best_s']:.3f} s; RSS {r['rss_mb']:.0f} MB (before {r['rss_before_mb']:.0f} MB)")
            if r["name"].startswith("build"):
                notes.append(r["what"])
        elif "peak_rss_mb" in r:
            notes.append(f"import+load {r['import_and_load_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
        if r["section"] == "caption":
            notes.append(f"{r['captions']} captions scored, {r['seconds'] / r['captions']:.3f} s each")
        if "gflops_peak" in r:
            notes.append(f"{r['gflops_peak']:.0f} GFLOP/s")
        lines.append(f"{r['section']:<10}{r['name']:<44}{r['seconds']:>9.4f}  {'; '.join(notes)}")
    return "\n".join(lines)


SECTIONS = ("t2i", "sizes", "tokenizer", "dit", "train", "cold", "atlas", "caption")


def main(args):
    sections = {s.strip() for s in args.only.split(",") if s.strip()} if args.only else set(SECTIONS)
    if unknown := sections - set(SECTIONS):
        raise SystemExit(
            f"error: --only {args.only}: no section {', '.join(sorted(unknown))} (of {', '.join(SECTIONS)})"
        )
    # a part of the run goes to a file of its own: results.json stays the whole run's
    out = args.out or ROOT / "benchmarks" / (
        "results.json" if not args.only else f"results-{'-'.join(sorted(sections))}.json"
    )
    pipe = MMGenPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    rows = []
    peak = matmul_peak_gflops()
    rows.append(
        {
            "section": "machine",
            "name": "fp32 matmul 2048^3 (the peak)",
            "seconds": 2 * 2048**3 / peak / 1e9,
            "gflops_peak": peak,
        }
    )
    if "t2i" in sections:
        rows += bench_t2i(pipe, args.repeats)
    if "sizes" in sections:
        rows += bench_sizes(args.repeats)
    if "tokenizer" in sections:
        rows += bench_tokenizer(pipe.vqvae, args.model, args.repeats)
    if "dit" in sections:
        rows += bench_dit(pipe, args.repeats, peak)
    if "train" in sections:
        rows += bench_train(pipe, args.repeats)
    if "cold" in sections:
        rows += bench_cold(args.model)
    if "atlas" in sections:
        rows += bench_atlas()
    if "caption" in sections:
        rows += bench_caption(pipe, args.repeats)
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}, {os.cpu_count()} CPUs")
    print(format_rows(rows))
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "model": str(args.model),
    }
    Path(out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=default_model(), help="the model timed (default: %(default)s)")
    p.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)} (default: all)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per figure, after warm-up (their median)")
    p.add_argument(
        "--out", help="the JSON to write (default: benchmarks/results.json, results-SECTION.json for --only SECTION)"
    )
    main(p.parse_args())
