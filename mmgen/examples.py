"""The app's example images: held-out shapes-v1 scenes and two scikit-image photos, written as PNGs.

    python -m mmgen.release --examples assets/examples

The scenes come from stream 2, which no training run draws from (the tokenizer trains on stream 0, the generator
on streams 0 and 1), so the Tokenizer tab shows reconstructions of images the model never saw. Each is written at
64 px (`shapes-N.png`) and at 128 (`shapes-N-128.png`): the app offers a model the scenes at the size it paints,
whose token grids its repaint takes.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

HELD_OUT_STREAM = 2
SCENES = (0, 3, 5)  # two single-object scenes and a two-object one
PHOTO_SIDE = 256
OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top", "center": "top left"}
REVERSED = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def write_examples(out: str | Path) -> list[Path]:
    """Write the example images to `out` and return their paths."""
    from PIL import Image

    from .data.images import skimage_photos
    from .data.shapes import shapes_sample
    from .images import load_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = {f"shapes-{i}": shapes_sample(HELD_OUT_STREAM, i).image for i in SCENES}
    images |= {f"shapes-{i}-128": shapes_sample(HELD_OUT_STREAM, i, scale=2).image for i in SCENES}
    photos = {p.stem: p for p in skimage_photos()}
    # coffee is 4:3: scale its height to PHOTO_SIDE, then crop the centre square around the cup
    coffee = load_image(photos["coffee"]).resize((341, PHOTO_SIDE), Image.Resampling.LANCZOS)
    images["coffee"] = coffee.crop((42, 0, 42 + PHOTO_SIDE, PHOTO_SIDE))
    images["astronaut"] = load_image(photos["astronaut"]).resize((PHOTO_SIDE, PHOTO_SIDE), Image.Resampling.LANCZOS)
    paths = []
    for name, image in images.items():
        image.save(out / f"{name}.png")
        paths.append(out / f"{name}.png")
    return paths


def scene_captions(file_name: str) -> list[str]:
    """Captions to rank for one of the example scenes ("shapes-3.png", "shapes-3-128.png"): its own, then the same
    with one thing wrong each (the first object's colour, its shape, its place or the relation), in shapes-v1's
    canonical words; [] for any other file. The Image → text tab's examples: the model should rank its own first."""
    from .data.shapes import shapes_sample

    if not (match := re.fullmatch(r"shapes-(\d+)(-128)?\.png", file_name)) or int(match[1]) not in SCENES:
        return []
    return captions_to_rank(shapes_sample(HELD_OUT_STREAM, int(match[1])).labels)


def captions_to_rank(labels: dict) -> list[str]:
    """A scene's own caption (shapes-v1 labels), then three each with one thing wrong (`scene_captions`)."""
    from .captioning import SceneCaption
    from .data.shapes import COLORS, SHAPES

    own = SceneCaption.from_labels(labels)
    first = own.objects[0]
    color = next(c for c in COLORS if c not in {o.color for o in own.objects})
    shape = next(s for s in SHAPES if s not in {o.shape for o in own.objects})
    if own.relation:
        place = dataclasses.replace(own, relation=REVERSED[own.relation])
    else:
        place = own.with_object(0, position=" ".join(OPPOSITE[w] for w in first.position.split()))
    return [c.text for c in (own, own.with_object(0, color=color), own.with_object(0, shape=shape), place)]
