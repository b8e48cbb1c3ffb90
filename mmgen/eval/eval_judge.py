"""`mmgen eval-judge`: the scene judge against answers known in advance, lenient and strict side by side.

    mmgen eval-judge --out assets/shape-verifier/eval_judge.json   # held-out streams and labels; `--tuning`: the
                                                                   # streams and labels settings came from

Right images must read right: held-out shapes-v1 renders, and the shipped tokenizer's reconstructions of them (a
person still names a shape whose tips the tokenizer softened). Wrong drawings (`mmgen.eval.deformed`) must not
read as the shape they break: the share that still does is the judge's leniency. Both at 64 px and, box-downsampled,
at 128 px. And generated images must read as a person reads them: the share of objects where the judge's shape
verdict agrees with a person's, and how often each names the shape: on `docs/judge-labels-check.json` (both shapes
models' images, labelled blind and used for nothing else), or with `--tuning` on the two sets the strict reading's
threshold was chosen on (`docs/judge-labels-tuning.json`, `docs/judge-labels-tuning-2.json`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.shapes import shapes_sample
from ..model_paths import ROOT, model_path
from . import count, write_results
from .deformed import DEFORMATIONS, deformed_sample
from .judge import coverage_of, fit_shape, read_scene, score_scene
from .verifier import load_verifier

CHECK_LABELS = ROOT / "docs" / "judge-labels-check.json"

STREAMS = {"tuning": {"renders": 7, "drawings": 0}, "held-out": {"renders": 2, "drawings": 1}}


def right_images(renders: list, images: list[Image.Image], strict: bool) -> float:
    """The share of images read right in every attribute (their labels: the renders')."""
    return float(np.mean([score_scene(read_scene(im, strict), s.labels)["all"] for im, s in zip(images, renders)]))


def named_broken(kind: str, stream: int, n: int, scale: int, strict: bool) -> float:
    """The share of `n` wrong drawings of `kind` read as the shape they break."""
    named = 0
    for i in range(n):
        sample = deformed_sample(kind, stream, i, scale)
        broken = sample.labels["objects"][0]["shape"]
        named += any(o["shape"] == broken for o in read_scene(sample.image, strict)["objects"])
    return named / n


def check_objects(labels_path: Path = CHECK_LABELS) -> list[dict]:
    """The check set's labelled objects, each with its coverage map (`alpha`), its images read from the grids
    its file names (images in order, row by row), an object matched by image, colour and rank by area."""
    labels = json.loads(labels_path.read_text())
    objects = []
    for name, grid in labels["grids"].items():
        sheet, side = Image.open(labels_path.parent / grid["file"]).convert("RGB"), grid["side"]
        per_row = sheet.width // side
        for r in (r for r in labels["objects"] if r["model"] == name and r["person"] != "not found"):
            i = r["image"]
            image = sheet.crop(
                ((i % per_row) * side, (i // per_row) * side, (i % per_row + 1) * side, (i // per_row + 1) * side)
            )
            alpha = coverage_of(image, r["color"], r["k"])
            if alpha is not None:
                lenient = fit_shape(alpha).shape
                objects.append(r | {"alpha": alpha, "lenient": lenient, "person_names_it": r["person"] == lenient})
    return objects


def person_agreement(objects: list[dict]) -> dict:
    """How often the lenient and the strict reading agree with a person on whether each object is the fitted
    shape, with the strict reading's two kinds of disagreement counted."""
    verifier = load_verifier()
    person = np.array([o["person_names_it"] for o in objects])
    kept = np.array([verifier.shape_prob(o["alpha"], o["lenient"]) >= verifier.config.threshold for o in objects])
    return {
        "objects": len(objects),
        "person_names": float(person.mean()),
        "lenient_agrees": float(person.mean()),  # the lenient reading always names the fitted shape
        "strict_names": float(kept.mean()),
        "strict_agrees": float((kept == person).mean()),
        "strict_refuses_named": int((~kept & person).sum()),
        "strict_names_refused": int((kept & ~person).sum()),
    }


def evaluate_people(split: str) -> dict:
    """`person_agreement` for each model, single- and two-object images apart: held out, on the check set; on
    the tuning split, on each set the threshold was calibrated on (named "tuning: ...", "tuning-2: ...")."""
    from .train_verifier import TUNING_LABELS, TUNING_LABELS_2

    files = {"tuning": TUNING_LABELS, "tuning-2": TUNING_LABELS_2} if split == "tuning" else {"": CHECK_LABELS}
    results = {}
    for name, path in files.items():
        objects = check_objects(path)
        for m, s in sorted({(o["model"], o["set"]) for o in objects}):
            group = [o for o in objects if (o["model"], o["set"]) == (m, s)]
            results[f"{name}: {m} {s}" if name else f"{m} {s}"] = person_agreement(group)
    return results


def evaluate(model: str, split: str = "held-out", n_renders: int = 200, n_drawings: int = 60) -> dict:
    """{"lenient"/"strict": {"renders", "reconstructions": share read right; "64px"/"128px": {kind: share
    read as the broken shape}}}."""
    from ..tokens import load_vqvae
    from .eval_tokenizer import reconstruct

    streams = STREAMS[split]
    renders = [shapes_sample(streams["renders"], i) for i in range(n_renders)]
    vq = load_vqvae(model_path(model))
    recons = reconstruct(vq, [s.image for s in renders]).images
    results = {"split": split, "streams": streams, "tokenizer": model}
    for name, strict in (("lenient", False), ("strict", True)):
        results[name] = {
            "renders": right_images(renders, [s.image for s in renders], strict),
            "reconstructions": right_images(renders, recons, strict),
            **{
                f"{64 * scale}px": {
                    k: named_broken(k, streams["drawings"], n_drawings, scale, strict) for k in DEFORMATIONS
                }
                for scale in (1, 2)
            },
        }
    results["people"] = evaluate_people(split)
    return results


def format_table(results: dict) -> str:
    lines = [f"{'':<34}{'lenient':>9}{'strict':>9}", "-" * 52]
    for what in ("renders", "reconstructions"):
        lines.append(
            f"{what + ' read right':<34}" + "".join(f"{results[j][what]:>9.1%}" for j in ("lenient", "strict"))
        )
    for px in ("64px", "128px"):
        for kind in DEFORMATIONS:
            row = f"{kind} ({px}) named"
            lines.append(f"{row:<34}" + "".join(f"{results[j][px][kind]:>9.1%}" for j in ("lenient", "strict")))
    head = (
        f"{'agrees with a person / names it':<34}{'lenient':>9}{'strict':>9}{'person':>9}{'strict':>9}{'objects':>9}"
    )
    lines += ["", head, "-" * len(head)]
    for group, r in results["people"].items():
        agrees = f"{r['lenient_agrees']:>9.1%}{r['strict_agrees']:>9.1%}"
        lines.append(f"{group:<34}{agrees}{r['person_names']:>9.1%}{r['strict_names']:>9.1%}{r['objects']:>9}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    results = evaluate(args.model, "tuning" if args.tuning else "held-out", args.n_renders, args.n_drawings)
    print(format_table(results))
    write_results(results, args.out)
    return results


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", default="assets/mmgen-base-64", help="model folder whose tokenizer reconstructs")
    p.add_argument("--tuning", action="store_true", help="the tuning streams the strict settings were chosen on")
    p.add_argument("--n-renders", type=count(1), default=200, help="right scenes, as shapes-v1 renders them")
    p.add_argument("--n-drawings", type=count(1), default=60, help="wrong drawings of each kind")
    p.add_argument("--out", default=None, help="results JSON (default: printed only)")
    return p
