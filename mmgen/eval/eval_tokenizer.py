"""Evaluate a VQ-VAE tokenizer on data it never saw in training; print a table and write JSON.

    mmgen eval-tokenizer --model assets/mmgen-base --out eval/tokenizer.json

Held-out sets:
- shapes-v1 scenes from stream `--shapes-seed` (training reads stream 0, validation stream 1), drawn at the size
  the tokenizer turns into a 16x16 grid (64 px for f4, 128 for f8: the spec's Resolution): PSNR, SSIM, and whether
  the judge (`mmgen.eval.judge`) still reads every object's colour, size and cell (and shape, leniently and
  strictly) from the reconstruction;
- natural photos that are not from scikit-image (the training photos): the sample photos that scikit-learn
  and matplotlib ship, at 256x256, both as a user would upload them (shorter side resized to 256, centre
  crop) and as native-resolution 256x256 crops;
- on photos, *detail kept* (`mmgen.metrics.detail_kept`: the reconstruction's edge energy over the original's; 1
  is as sharp, a blurring tokenizer scores less). Not on shapes-v1: its flat fills make any faint ripple in a
  reconstruction count as new edges (the f4 VQ-VAE scores 3.6 there), so the judge's reading stands for sharpness;
  and *edges in place* (`mmgen.metrics.edges_in_place`: how much of the original's edges the reconstruction draws
  where they are), since detail kept counts invented texture too (a blur plus noise scores over 1);
- codebook usage (share of codes used at least once) and perplexity, per set and over both. Usage is also counted
  over each held-out photo whole at three sizes: an f16 tokenizer makes 256 tokens of a 256x256 view, so the 15
  views alone give under 2 per code of a 2,048-code book, where even a perfectly evenly used codebook would show
  only 85 %. `usage_even` is that share for the tokens counted: usage means something only where it is near 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from ..codebook import usage_stats
from ..data.shapes import shapes_sample
from ..images import ImageLoadError, load_image, pil_to_tensor, tensor_to_pil
from ..metrics import detail_kept, edges_in_place, psnr, ssim
from ..model_paths import model_path
from ..models.vqvae import VQVAE
from ..tokens import SHIPPED_DEFAULT, load_vqvae
from . import count, write_results
from .judge import read_scene, score_scene

HELDOUT_SHAPES_SEED = 2
PHOTO_SIZE = 256
GRID = 16  # the shapes set is drawn at the size the tokenizer turns into a 16x16 token grid


def heldout_photo_paths() -> list[Path]:
    """Photos shipped by scikit-learn and matplotlib (dev dependencies): never seen in training."""
    try:
        import matplotlib
        import sklearn
    except ImportError as e:
        hint = "held-out photos come from scikit-learn and matplotlib: pip install 'mmgen[dev]'"
        raise SystemExit(f"{hint} ({e})") from e
    sk = Path(sklearn.__file__).parent / "datasets" / "images"
    mpl = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"
    return [sk / "china.jpg", sk / "flower.jpg", mpl / "grace_hopper.jpg"]


def heldout_photos(size: int = PHOTO_SIZE) -> list[tuple[str, Image.Image]]:
    """(name, size x size image) pairs: one resized + centre-cropped view and four native crops per photo."""
    out = []
    for path in heldout_photo_paths():
        im = load_image(path)
        scale = size / min(im.size)
        small = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        left, top = (small.width - size) // 2, (small.height - size) // 2
        out.append((f"{path.stem}-resized", small.crop((left, top, left + size, top + size))))
        for i, (fx, fy) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
            x, y = fx * (im.width - size), fy * (im.height - size)
            out.append((f"{path.stem}-crop{i}", im.crop((x, y, x + size, y + size))))
    return out


WHOLE_PHOTO_SCALES = (1.0, 0.8, 0.64)


def heldout_photo_wholes(multiple: int) -> list[Image.Image]:
    """Each held-out photo whole at WHOLE_PHOTO_SCALES of its size, cropped to a multiple of `multiple` pixels
    (whole tokens): more distinct photo tokens for counting codebook use."""
    out = []
    for path in heldout_photo_paths():
        im = load_image(path)
        for s in WHOLE_PHOTO_SCALES:
            w, h = round(im.width * s), round(im.height * s)
            small = im.resize((w, h), Image.Resampling.LANCZOS)
            out.append(small.crop((0, 0, w // multiple * multiple, h // multiple * multiple)))
    return out


def even_usage(num_codes: int, tokens: int) -> float:
    """The share of codes an evenly used codebook shows over `tokens` tokens: 1 - (1 - 1/K)^n."""
    return float(1 - (1 - 1 / num_codes) ** tokens)


def codebook_stats(counts: np.ndarray) -> dict:
    """Usage, perplexity and unused codes of (K,) code counts, the tokens counted and `even_usage` for as many."""
    n = int(counts.sum())
    return {"num_codes": len(counts), **usage_stats(counts), "tokens": n, "usage_even": even_usage(len(counts), n)}


class Reconstruction(NamedTuple):
    images: list[Image.Image]  # the reconstructions, each the size of its input
    indices: np.ndarray  # (N, H/f, W/f) token ids in [0, K), f the tokenizer's downsample factor


@torch.inference_mode()
def reconstruct(vq: VQVAE, images: list[Image.Image], batch_size: int = 32) -> Reconstruction:
    """Encode PIL images of one size to their nearest codes and decode them back."""
    recons, ids = [], []
    for i in range(0, len(images), batch_size):
        x = torch.stack([pil_to_tensor(im) for im in images[i : i + batch_size]])  # (B, 3, H, W) in [-1, 1]
        enc = vq.encode(x)
        recons += [tensor_to_pil(r) for r in vq.decode(enc.latents)]
        ids.append(enc.indices.numpy())  # (B, H/f, W/f)
    return Reconstruction(recons, np.concatenate(ids))


@torch.inference_mode()
def code_counts(vq: VQVAE, images: list[Image.Image]) -> np.ndarray:
    """(K,) how often each code occurs over `images` (any sizes in whole tokens), encoded one at a time."""
    K = vq.config.num_codes
    return sum(np.bincount(vq.encode(pil_to_tensor(im)[None]).indices.numpy().ravel(), minlength=K) for im in images)


def evaluate(vq: VQVAE, n_shapes: int = 256, shapes_seed: int = HELDOUT_SHAPES_SEED, photos: bool = True) -> dict:
    """{"shapes": PSNR (dB), SSIM, the judge's reading of the reconstructions, codebook use; "photos": the same
    figures less the judge's (if `photos`); "codebook": use over both sets}."""
    vq.eval()
    K = vq.config.num_codes
    results = {}

    scale = shapes_scale(vq.downsample_factor)
    samples = [shapes_sample(shapes_seed, i, scale) for i in range(n_shapes)]
    recons, ids = reconstruct(vq, [s.image for s in samples])
    originals = [np.asarray(s.image) for s in samples]
    recon_arrs = [np.asarray(r) for r in recons]
    scores = [score_scene(read_scene(r), s.labels) for r, s in zip(recons, samples)]
    strict = [score_scene(read_scene(r, strict=True), s.labels) for r, s in zip(recons, samples)]
    objects = [o for sc in scores for o in sc["objects"]]
    counts_shapes = np.bincount(ids.ravel(), minlength=K)
    results["shapes"] = {
        "n_images": n_shapes,
        "seed": shapes_seed,
        "size": samples[0].image.width,
        "psnr": float(np.mean([psnr(a, b) for a, b in zip(originals, recon_arrs)])),
        "psnr_min": float(np.min([psnr(a, b) for a, b in zip(originals, recon_arrs)])),
        "ssim": float(np.mean([ssim(a, b) for a, b in zip(originals, recon_arrs)])),
        **{f"readable_{a}": float(np.mean([o[a] for o in objects])) for a in ("color", "size", "position", "shape")},
        "readable_shape_strict": float(np.mean([o["shape"] for sc in strict for o in sc["objects"]])),
        "readable_background": float(np.mean([sc["background"] for sc in scores])),
        "readable_all": float(np.mean([sc["all"] for sc in scores])),
        "readable_all_strict": float(np.mean([sc["all"] for sc in strict])),
        **usage_stats(counts_shapes),
    }
    counts = counts_shapes
    if photos:
        named = heldout_photos()
        recons, ids = reconstruct(vq, [im for _, im in named], batch_size=4)
        pairs = [(np.asarray(im), np.asarray(r)) for (_, im), r in zip(named, recons)]
        wholes = heldout_photo_wholes(vq.downsample_factor)
        counts_photos = np.bincount(ids.ravel(), minlength=K) + code_counts(vq, wholes)
        results["photos"] = {
            "n_images": len(named),
            "size": PHOTO_SIZE,
            "psnr": float(np.mean([psnr(a, b) for a, b in pairs])),
            "psnr_min": float(np.min([psnr(a, b) for a, b in pairs])),
            "ssim": float(np.mean([ssim(a, b) for a, b in pairs])),
            "detail_kept": float(np.mean([detail_kept(im, r) for (_, im), r in zip(named, recons)])),
            "edges_in_place": float(np.mean([edges_in_place(im, r) for (_, im), r in zip(named, recons)])),
            "per_image_psnr": {n: round(psnr(a, b), 2) for (n, _), (a, b) in zip(named, pairs)},
            **usage_stats(counts_photos),
        }
        counts = counts + counts_photos
    results["codebook"] = {"downsample_factor": vq.downsample_factor, **codebook_stats(counts)}
    return results


def shapes_scale(downsample_factor: int) -> int:
    """The shapes-v1 scale (1, 2, 4: 64, 128, 256 px) a tokenizer with this factor turns into a 16x16 grid."""
    return min(max(GRID * downsample_factor // 64, 1), 4)


READABLE = [("shapes", f"readable_{a}", 1.0) for a in ("color", "size", "position")]
TARGETS = {  # downsample factor -> [(set, metric, threshold)], higher is better, from the tokenizer issues
    4: [("codebook", "usage", 0.95), ("shapes", "psnr", 34.0), *READABLE, ("photos", "psnr", 24.0)],
    8: [("codebook", "usage", 0.95), *READABLE, ("photos", "psnr", 22.0), ("photos", "detail_kept", 0.9)],
    16: [("codebook", "usage", 0.95)],
}


def format_table(results: dict) -> str:
    K, f = results["codebook"]["num_codes"], results["codebook"].get("downsample_factor", 4)
    targets = {(s, m): t for s, m, t in TARGETS.get(f, [])}
    targets |= {("codebook", "perplexity"): K / 2} if f == 4 else {}
    targets = {} if "folder" in results else targets  # the targets are for the shipped shapes tokenizers
    lines = [f"{'set':<10}{'metric':<22}{'value':>12}{'target':>12}  ok", "-" * 62]
    for name, metrics in results.items():
        for metric, value in metrics.items():
            if isinstance(value, dict | str) or metric in (
                "n_images",
                "seed",
                "size",
                "num_codes",
                "downsample_factor",
            ):
                continue
            target = targets.get((name, metric))
            ok = "" if target is None else ("yes" if value >= target else "NO")
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            lines.append(f"{name:<10}{metric:<22}{shown:>12}{'' if target is None else f'>= {target:g}':>12}  {ok}")
    return "\n".join(lines)


FOLDER_SIDE = 256
SSIM_WINDOW = 7  # skimage's structural_similarity compares 7x7 windows: a smaller side cannot be scored


def evaluate_folder(vq: VQVAE, folder: str | Path) -> dict:
    """{"folder": PSNR, SSIM and codebook use over a folder of your own held-out images (each at most 256 px a
    side, centre-cropped to whole tokens), "codebook": the same use}."""
    from ..data.images import ImageFolder
    from ..images import fit_to_multiple

    vq.eval()
    images, skipped = [], {}  # skipped: file -> why (unreadable, or too thin for SSIM's 7x7 window once fitted)
    listing = ImageFolder(folder)
    if listing.skipped:
        print(f"{folder}: {listing.skip_summary()}")
    for path in listing.paths:
        try:
            im = fit_to_multiple(load_image(path), vq.downsample_factor, FOLDER_SIDE)
            if min(im.size) < SSIM_WINDOW:
                fitted = f"{im.width}x{im.height} px once fitted to whole tokens"
                raise ImageLoadError(f"{fitted}; SSIM needs {SSIM_WINDOW} a side")
            images.append(im)
        except ImageLoadError as e:
            skipped[Path(path).relative_to(folder).as_posix()] = e.reason
    if skipped:
        named = "; ".join(f"{name}: {why}" for name, why in list(skipped.items())[:3])
        print(f"{folder}: left out {len(skipped)} images ({named}{'; ...' if len(skipped) > 3 else ''})")
    if not images:
        raise ValueError(f"{folder}: no image could be evaluated")
    done = [reconstruct(vq, [im]) for im in images]  # one at a time: a folder's images may differ in size
    recons, ids = [d.images[0] for d in done], [d.indices for d in done]
    pairs = [(np.asarray(a), np.asarray(b)) for a, b in zip(images, recons)]
    counts = np.bincount(np.concatenate([i.ravel() for i in ids]), minlength=vq.config.num_codes)
    stats = {
        "n_images": len(images),
        "left_out": dict.fromkeys(listing.unreadable, "not an image Pillow can read") | skipped,
        "psnr": float(np.mean([psnr(a, b) for a, b in pairs])),
        "psnr_min": float(np.min([psnr(a, b) for a, b in pairs])),
        "ssim": float(np.mean([ssim(a, b) for a, b in pairs])),
        **usage_stats(counts),
    }
    return {
        "folder": {"path": str(folder), **stats},
        "codebook": codebook_stats(counts),
    }


def main(args: argparse.Namespace) -> dict:
    vq = load_vqvae(model_path(args.model), subfolder=args.subfolder)
    if args.folder:
        results = evaluate_folder(vq, args.folder)
    else:
        results = evaluate(vq, n_shapes=args.n_shapes, shapes_seed=args.shapes_seed, photos=not args.no_photos)
    results["model"] = {"path": str(args.model), "subfolder": args.subfolder}
    print(format_table({k: v for k, v in results.items() if k != "model"}))
    write_results(results, args.out)
    return results


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", default=SHIPPED_DEFAULT, help="model folder (or Hub id) holding vqvae/")
    p.add_argument("--subfolder", default="vqvae", help="the model folder's tokenizer subfolder")
    p.add_argument("--n-shapes", type=count(1), default=256, help="held-out shapes-v1 scenes to score")
    p.add_argument("--shapes-seed", type=count(0), default=HELDOUT_SHAPES_SEED, help="shapes-v1 stream of the scenes")
    p.add_argument("--no-photos", action="store_true", help="skip the natural-photo set")
    p.add_argument(
        "--folder", default=None, help="a folder of your own held-out images to score instead of shapes and photos"
    )
    p.add_argument("--out", default="eval/tokenizer.json", help="where to write the JSON results")
    return p


if __name__ == "__main__":
    main(add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args())
