"""`mmgen eval-retrieval`: prompt fidelity of a generator trained on a real domain (e.g. `make emoji-data`), by
retrieval (`mmgen.eval.retrieval`), on captions worded unlike any training caption.

    mmgen eval-retrieval --model assets/mmgen-emoji --gallery data/emoji data/emoji-held-out \\
        --queries data/emoji-reworded data/emoji-held-out --out assets/mmgen-emoji/eval_retrieval.json

The gallery is every image of the domain (training and held-out). Each query folder is an image folder whose
`metadata.jsonl` captions describe its images; a query is one of an image's captions (drawn with `--seed`), and
its target is the gallery image of the same file name. Generated from the caption, the image should be nearer to
its target than to every other gallery image (top-1), or among the 5 nearest (top-5). Chance is 1/G and 5/G.

- Tuning and test: the even-numbered images of each query folder are tuning data (`--tune` sweeps the guidance
  scale on them and picks the best top-5), the odd-numbered ones the test set, reported once (the default).
- Checks of the evaluator itself, on the same queries: the targets' own images must score top-1 = 100 %, the
  generated images handed to the wrong queries (shifted by one) and blank images near chance.
- Variety: the first `--variety-prompts` test queries with `--variety-seeds` seeds each: how far apart one
  caption's images lie, relative to how far apart two different gallery images lie (0: always the same image).
- A picture beside the JSON (`.png`): captions, generated images and their three nearest gallery images.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from . import count, write_results
from .retrieval import FEATURES, Gallery, pairwise_distances, top_k

DEFAULT_N = 100  # test queries per query folder
TUNE_GUIDANCE = (2.0, 4.0, 7.0)


@dataclass
class QuerySet:
    name: str  # the query folder's name
    captions: list[str]
    targets: np.ndarray  # (N,) gallery index of each caption's image


def read_folder(folder: str | Path) -> list[tuple[str, list[str], Path]]:
    """(file name, captions, path) of each captioned image of an image folder, in its metadata's order, read as
    training reads it (`ImageFolder`: metadata.jsonl or metadata.csv; lines and files it leaves out, left out)."""
    from ..data.images import ImageFolder

    images = ImageFolder(folder)
    if not images.listed:
        raise ValueError(f"{folder}: no captions (metadata.jsonl or metadata.csv)")
    if images.skipped:
        print(f"{folder}: {images.skip_summary()}")
    return [(name, list(texts), path) for name, texts, path in images.in_metadata_order()]


@dataclass
class GalleryImages:
    names: list[str]  # each image's file name ("a.png"; "held-out/a.png" when another folder has its own a.png)
    images: list[Image.Image]  # RGB centre squares, read as training reads them (EXIF turned, transparency on white)
    by_file: dict[str, list[int]]  # file name -> the indices of the gallery images of that name
    digests: list[str]  # each image's pixels, hashed: which of two same-named images a query's image is


def pixel_digest(image: Image.Image) -> str:
    return hashlib.sha1(image.tobytes() + repr(image.size).encode()).hexdigest()


def load_gallery(folders: list[str]) -> GalleryImages:
    """Every image of the gallery folders, read as training reads them (`load_image`; one it cannot read is left
    out and named). A file name two folders share is one image only when their pixels are the same; two images of
    one name are both kept (training and held-out folders both numbering from 0000.png), each named by its folder."""
    from ..images import ImageLoadError, load_image

    gallery = GalleryImages([], [], {}, [])
    unreadable = []
    for folder in folders:
        for name, _, path in read_folder(folder):
            try:
                image = load_image(path)
            except ImageLoadError as e:
                unreadable.append(f"{path} ({e.reason})")
                continue
            image = ImageOps.fit(image, (min(image.size),) * 2)  # its centre square: the generator draws squares
            digest = pixel_digest(image)
            same = gallery.by_file.get(name, [])
            if any(gallery.digests[i] == digest for i in same):
                continue  # one image, in two folders
            gallery.names.append(name if not same else f"{Path(folder).name}/{name}")
            gallery.images.append(image)
            gallery.digests.append(digest)
            gallery.by_file.setdefault(name, []).append(len(gallery.images) - 1)
    if unreadable:
        print(f"gallery: left out {len(unreadable)} images that cannot be read, e.g. {unreadable[0]}")
    if not gallery.images:
        raise ValueError(f"{', '.join(folders)}: no readable image to retrieve from")
    return gallery


def target_of(gallery: GalleryImages, name: str, path: Path) -> int | None:
    """The gallery image a query folder's image `name` is: the one of that file name, or, where several share it,
    the one with its pixels; None when none is."""
    from ..images import ImageLoadError, load_image

    same = gallery.by_file.get(name, [])
    if len(same) <= 1:
        return same[0] if same else None
    try:
        digest = pixel_digest(load_image(path))
    except ImageLoadError:
        return None
    return next((i for i in same if gallery.digests[i] == digest), None)


def load_queries(folder: str, gallery: GalleryImages, half: str, n: int, seed: int) -> QuerySet:
    """Up to `n` queries from `half` ("tuning": even-numbered images, "test": odd-numbered) of a query folder,
    each a caption drawn at random from its image's list."""
    items = [it for i, it in enumerate(read_folder(folder)) if i % 2 == (0 if half == "tuning" else 1) and it[1]]
    if not items:
        which = "even-numbered (tuning)" if half == "tuning" else "odd-numbered (test)"
        raise ValueError(f"{folder}: no captioned {which} images to query with: a query folder needs at least 2")
    targets = [target_of(gallery, name, path) for name, _, path in items]
    missing = [name for (name, _, _), t in zip(items, targets) if t is None]
    if missing:
        raise ValueError(f"{folder}: {len(missing)} images are in no gallery folder (e.g. {missing[0]})")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(items), min(n, len(items)), replace=False))
    captions = [items[i][1][int(rng.integers(len(items[i][1])))] for i in chosen]
    return QuerySet(Path(folder).name, captions, np.array([targets[i] for i in chosen]))


def scores(galleries: dict[str, Gallery], images: list[Image.Image], targets: np.ndarray) -> dict:
    """{feature space: top-1, top-5, median rank} of `images` against their targets."""
    out = {}
    for space, gallery in galleries.items():
        ranks = gallery.ranks(images, targets)
        out[space] = {"top1": top_k(ranks, 1), "top5": top_k(ranks, 5), "median_rank": float(np.median(ranks))}
    return out


def evaluator_checks(galleries: dict[str, Gallery], gallery_images, generated, targets) -> dict:
    """The evaluator on inputs whose answers are known: the targets' own images (top-1 must be 1), the generated
    images handed to the wrong queries and blank images (near chance)."""
    blank = Image.new("RGB", gallery_images[0].size, gallery_images[0].getpixel((0, 0)))
    return {
        "own_images": scores(galleries, [gallery_images[t] for t in targets], targets),
        "shifted_by_one": scores(galleries, generated[1:] + generated[:1], targets),
        "blank": scores(galleries, [blank] * len(targets), targets),
    }


def variety(pipe, gallery: Gallery, queries: QuerySet, n_prompts: int, n_seeds: int, sampling) -> dict:
    """Images of one caption from several seeds: their mean pairwise distance over the mean distance between
    gallery images (pixel space), and how many distinct nearest gallery images they have."""
    from .accuracy import generate

    captions = queries.captions[:n_prompts]
    prompts = [c for c in captions for _ in range(n_seeds)]
    images = generate(pipe, prompts, [1000 + s for _ in captions for s in range(n_seeds)], sampling=sampling)
    feats = FEATURES[gallery.space](images).reshape(len(captions), n_seeds, -1)
    within = [np.linalg.norm(f[:, None] - f[None], axis=-1)[np.triu_indices(n_seeds, 1)].mean() for f in feats]
    between = pairwise_distances(gallery.features, gallery.features)[np.triu_indices(len(gallery.features), 1)].mean()
    nearest = gallery.nearest(images, 1).reshape(len(captions), n_seeds)
    ranks = gallery.ranks(images, np.repeat(queries.targets[:n_prompts], n_seeds))
    return {
        "prompts": len(captions),
        "seeds": n_seeds,
        "spread": float(np.mean(within) / between),  # 0: every seed the same image; 1: as apart as two emoji
        "distinct_nearest": float(np.mean([len(set(row)) for row in nearest])),  # out of `seeds`
        "top5_over_seeds": top_k(ranks, 5),
    }


def picture(captions, generated, nearest, gallery_images, targets, path: Path, rows: int = 12) -> None:
    """One row per query: its target, the generated image, its 3 nearest gallery images (the target's in green),
    and the caption."""
    side, width = 64, 64 * 5 + 8 * 5 + 360
    sheet = Image.new("RGB", (width, rows * (side + 8)), "white")
    draw = ImageDraw.Draw(sheet)
    for r in range(min(rows, len(captions))):
        y = r * (side + 8)
        tiles = [gallery_images[targets[r]], generated[r], *[gallery_images[k] for k in nearest[r][:3]]]
        for c, tile in enumerate(tiles):
            x = c * (side + 8)
            sheet.paste(tile.resize((side, side)), (x, y))
            if c >= 2 and nearest[r][c - 2] == targets[r]:
                draw.rectangle((x - 2, y - 2, x + side + 1, y + side + 1), outline=(0, 160, 0), width=2)
        draw.text((5 * (side + 8) + 4, y + side // 2 - 6), captions[r], fill="black")
    sheet.save(path)


def run_set(pipe, galleries, queries: QuerySet, sampling, seed: int):
    """Generate one image per query (seed + i) and score it: (scores, generated images)."""
    from .accuracy import generate

    images = generate(pipe, queries.captions, [seed + i for i in range(len(queries.captions))], sampling=sampling)
    return scores(galleries, images, queries.targets), images


def sampling_of(pipe, args, guidance: float | None):
    """The pipeline's defaults (its model's own) with this guidance scale and --steps, where given."""
    from .accuracy import Sampling

    changes = {"guidance_scale": guidance, "num_inference_steps": args.steps}
    return Sampling.defaults(pipe, **{k: v for k, v in changes.items() if v is not None})


def tune(pipe, galleries, gallery: GalleryImages, args) -> dict:
    """The guidance scale with the best pixel top-5 on the tuning half of the first query folder."""
    queries = load_queries(args.queries[0], gallery, "tuning", args.n, args.seed)
    sweep = {}
    for g in args.tune_guidance:
        sweep[g], _ = run_set(pipe, galleries, queries, sampling_of(pipe, args, guidance=g), args.seed)
        print(
            f"guidance {g:g}: "
            + ", ".join(f"{k} top-1 {v['top1']:.1%} top-5 {v['top5']:.1%}" for k, v in sweep[g].items())
        )
    best = max(sweep, key=lambda g: (sweep[g]["pixels"]["top5"], sweep[g]["pixels"]["top1"]))
    print(f"best guidance on tuning queries: {best:g}: read the test half once with --guidance {best:g}")
    return {
        "half": "tuning",
        "queries": queries.name,
        "n": len(queries.captions),
        "sweep": sweep,
        "best_guidance": best,
    }


def test(pipe, galleries, gallery: GalleryImages, args) -> dict:
    """Every query folder's test half, the evaluator's checks, variety over seeds and the picture."""
    sampling = sampling_of(pipe, args, guidance=args.guidance)
    names, gallery_images, size = gallery.names, gallery.images, len(gallery.names)
    results = {"half": "test", "gallery": size, "chance": {"top1": 1 / size, "top5": min(1, 5 / size)}}
    results["sampling"] = {k: v for k, v in sampling.call_kwargs().items()}
    for i, folder in enumerate(args.queries):
        queries = load_queries(folder, gallery, "test", args.n, args.seed)
        found, images = run_set(pipe, galleries, queries, sampling, args.seed)
        results[queries.name] = {"n": len(queries.captions), **found}
        print(
            f"{queries.name} (n={len(queries.captions)}): "
            + ", ".join(f"{k} top-1 {v['top1']:.1%} top-5 {v['top5']:.1%}" for k, v in found.items())
        )
        if i == 0:
            results["checks"] = evaluator_checks(galleries, gallery_images, images, queries.targets)
            found_own = results["checks"]["own_images"]["pixels"]["top1"] == 1  # else: which copies took their place
            lost = [] if found_own else lost_targets(galleries["pixels"], gallery, queries.targets)
            results["checks"]["own_images_lost"] = lost
            nearest = galleries["pixels"].nearest(images, 3)
            results["examples"] = [
                {"caption": c, "target": names[t], "nearest": [names[k] for k in near]}
                for c, t, near in zip(queries.captions[:20], queries.targets, nearest)
            ]
            if args.variety_seeds > 1:  # one seed a prompt: no variety to measure
                results["variety"] = variety(
                    pipe, galleries["pixels"], queries, args.variety_prompts, args.variety_seeds, sampling
                )
            if args.out:
                picture(
                    queries.captions,
                    images,
                    nearest,
                    gallery_images,
                    queries.targets,
                    Path(args.out).with_suffix(".png"),
                )
    checks = results["checks"]["own_images"]["pixels"], results["checks"]["shifted_by_one"]["pixels"]
    print(
        f"chance among {size} gallery images: top-1 {1 / size:.1%}, top-5 {min(1, 5 / size):.1%}"
        + (" (a gallery this small says little)" if size <= 20 else "")
        + f"; the evaluator's checks: the targets' own images top-1 {checks[0]['top1']:.0%} (must be 100%), "
        f"images handed to the wrong captions top-5 {checks[1]['top5']:.1%} (near chance)"
    )
    if lost := results["checks"]["own_images_lost"]:
        shown = ", ".join(f"{a} is nearest {b}" for a, b in lost[:3]) + (", ..." if len(lost) > 3 else "")
        print(
            f"warning: the evaluator's check failed: {len(lost)} target image(s) are not their own nearest gallery "
            f"image ({shown}): the gallery holds the same image twice, or nearly, and these scores cannot be "
            "trusted; leave the copies out and run it again",
            file=sys.stderr,
        )
    return results


def lost_targets(gallery: Gallery, images: GalleryImages, targets: np.ndarray) -> list[list[str]]:
    """[target's name, another gallery image as near to it] for each target that is not alone its own nearest
    image (`Gallery.ranks` counts a tie against it: a copy in the gallery), each pair once."""
    d = gallery.distances([images.images[t] for t in targets])  # (N, G)
    lost = []
    for row, t in zip(d, targets):
        others = row.copy()
        others[t] = np.inf
        if others.min() <= row[t]:
            lost.append((images.names[t], images.names[int(others.argmin())]))
    return [list(pair) for pair in dict.fromkeys(lost)]


def main(args: argparse.Namespace) -> dict:
    import torch

    from ..pipeline import MMGenPipeline

    torch.manual_seed(args.seed)
    pipe = MMGenPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    gallery = load_gallery(args.gallery)
    galleries = {space: Gallery.of(gallery.images, space) for space in FEATURES}
    results = tune(pipe, galleries, gallery, args) if args.tune else test(pipe, galleries, gallery, args)
    results["model"] = str(args.model)
    keys = ("gallery", "queries", "n", "seed", "guidance", "steps", "variety_prompts", "variety_seeds")
    results["args"] = {k: getattr(args, k) for k in keys}  # enough to run it again
    write_results(results, args.out)
    return results


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", required=True, help="model folder (or Hub id) of the generator")
    p.add_argument("--gallery", nargs="+", required=True, help="image folders holding every image of the domain")
    p.add_argument("--queries", nargs="+", required=True, help="image folders whose captions are the prompts")
    p.add_argument("--n", type=count(1), default=DEFAULT_N, help="queries per folder (each half)")
    p.add_argument("--tune", action="store_true", help="sweep --tune-guidance on the tuning half instead")
    p.add_argument("--tune-guidance", type=float, nargs="+", default=list(TUNE_GUIDANCE), help="scales --tune tries")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the pipeline's)")
    p.add_argument("--steps", type=count(1), default=None, help="sampling steps (default: the pipeline's)")
    p.add_argument("--variety-prompts", type=count(1), default=16, help="prompts drawn with several seeds")
    p.add_argument("--variety-seeds", type=count(1), default=4, help="seeds per variety prompt (1: no variety figure)")
    p.add_argument("--seed", type=count(0), default=0, help="seed of the images")
    p.add_argument("--out", default=None, help="results JSON, a picture written beside it (default: printed only)")
    return p
