"""The image datasets the trainers read: shapes-v1, natural-photo crops, a user's folder (images in and out, and
their checks: `mmgen.images`).

- `PhotoCrops`: random crops with flips and scale jitter from a set of photos (by default the sample photos
  that scikit-image ships), so the tokenizer also handles the photos users upload;
- `ImageFolder`: a user's folder of images, with an optional `metadata.jsonl` of captions (the Hugging Face
  imagefolder convention: one JSON object per line with `file_name` and `text`);
- `ShapesDataset`: the infinite shapes-v1 stream as a map-style dataset of a chosen length.

Every dataset yields dicts with `pixel_values` (3, S, S) in [-1, 1] and `text`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..images import IMAGE_EXTENSIONS, ImageLoadError, load_image, pil_to_tensor, readable_header
from ..settings import is_utf8
from .shapes import CANVAS, SCALES, shapes_sample

_NOTED: set[str] = set()  # notes about a folder already printed in this process


def random_crop(im: Image.Image, size: int, rng: np.random.Generator, scale_range=(0.25, 1.0)) -> Image.Image:
    """A random square crop, rescaled to size x size, flipped half the time.

    The crop side is size / scale with scale drawn log-uniformly: scale 1 keeps native pixels, scale 1/4 shows
    four times more of the photo, the way a large upload looks once it is shrunk to the model's resolution.
    """
    lo, hi = np.log(scale_range[0]), np.log(scale_range[1])
    side = int(round(size / np.exp(rng.uniform(lo, hi))))
    side = min(side, im.width, im.height)
    left, top = int(rng.integers(0, im.width - side + 1)), int(rng.integers(0, im.height - side + 1))
    crop = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def object_crop(image: Image.Image, labels: dict, size: int, scale: int, rng: np.random.Generator) -> Image.Image:
    """A size x size crop of a scene drawn at `scale` that holds one of its objects (picked at random) whole,
    anywhere inside the crop (placed at random among the positions that do), flipped half the time."""
    obj = labels["objects"][int(rng.integers(len(labels["objects"])))]
    half = obj["side"] * scale / 2

    def start(center: float) -> int:  # the crop's left (or top) edge
        c = center * scale
        lo, hi = max(0, int(np.ceil(c + half - size))), min(image.width - size, int(np.floor(c - half)))
        return int(rng.integers(lo, hi + 1)) if lo <= hi else int(np.clip(round(c - size / 2), 0, image.width - size))

    x, y = start(obj["center"][0]), start(obj["center"][1])
    crop = image.crop((x, y, x + size, y + size))
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def skimage_photos() -> list[Path]:
    """The sample photos that scikit-image ships (the default natural-image training set)."""
    import skimage

    data = Path(skimage.__file__).parent / "data"
    return sorted(p for p in data.iterdir() if p.suffix in (".png", ".jpg"))


def new_dataset_folder(out: str | Path, ours: re.Pattern, keys: set[str]) -> Path:
    """`out`, created and emptied, for a writer of a captioned folder whose image names match `ours` and whose
    metadata.jsonl records have `keys`: the images of an earlier run are removed (a rerun with fewer images, or
    another split, would leave them to be read as part of the new set, e.g. training emoji in a held-out folder).
    A ValueError when it holds other files, or images named like ours under someone else's metadata.jsonl (a
    folder of 000000.png ... would have been emptied by `mmgen shapes`)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: a file, not a folder")
    found = list(out.iterdir()) if out.is_dir() else []
    theirs = sorted(p.name for p in found if p.name != "metadata.jsonl" and not ours.fullmatch(p.name))
    if found and not theirs and not written_with(out / "metadata.jsonl", keys):
        theirs = ["metadata.jsonl, not written by this command"]
    if theirs:
        named = ", ".join(theirs[:3]) + (", ..." if len(theirs) > 3 else "")
        raise ValueError(f"{out} already holds other files ({named}): write into a new or empty folder")
    for earlier in found:
        earlier.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def written_with(metadata: Path, keys: set[str]) -> bool:
    """Whether `metadata` (a metadata.jsonl) exists and its first record has every one of `keys`."""
    try:
        with open(metadata, encoding="utf-8") as f:
            line = f.readline()
            first = json.loads(line) if line else dict.fromkeys(keys)  # empty: a run stopped before its first image
    except (OSError, ValueError):  # missing, unreadable, not JSON
        return False
    return isinstance(first, dict) and keys <= first.keys()


def list_images(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


class ShapesDataset(Dataset):
    """`length` samples of the shapes-v1 stream `seed` (the shipped models train on 0 and 1; 2 is held out), drawn
    at (64·scale)² pixels (the spec's Resolution; default: the scale `size` asks for, 128 or 256 px, else 64).

    A scene larger than `size` is cropped to size x size around one of its objects (`object_crop`; the caption
    then no longer applies): a tokenizer learns 128-pixel scenes from 64-pixel crops at a quarter of the cost per
    image, and no crop is empty background.
    """

    def __init__(self, length: int, seed: int = 0, size: int = CANVAS, scale: int | None = None):
        if scale is None:
            scale = size // CANVAS if size % CANVAS == 0 and size // CANVAS in SCALES else 1
        self.length, self.seed, self.size, self.scale = length, seed, size, scale

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        s = shapes_sample(self.seed, i, self.scale)
        image = s.image
        if image.width != self.size:
            rng = np.random.default_rng([self.seed, i, 2])
            image = (
                object_crop(image, s.labels, self.size, self.scale, rng)
                if self.size < image.width
                else image.resize((self.size, self.size), Image.Resampling.NEAREST)
            )
        return {"pixel_values": pil_to_tensor(image), "text": s.caption}


class PhotoCrops(Dataset):
    """`length` random crops of `size` pixels from photos; crop i is a pure function of (seed, i)."""

    def __init__(self, paths: list[Path], length: int, size: int = 64, seed: int = 0, min_side: int = 16):
        images = [load_image(p) for p in paths]
        self.images = [im for im in images if min(im.size) >= min_side]  # drops icons and 1-pixel strips
        if not self.images:
            raise ValueError(f"no usable photos: every image was missing or smaller than {min_side}x{min_side}")
        self.length, self.size, self.seed = length, size, seed

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        im = self.images[int(rng.integers(len(self.images)))]
        return {"pixel_values": pil_to_tensor(random_crop(im, self.size, rng)), "text": ""}


CAPTIONS_HINT = (
    '. Captions come from metadata.jsonl in the folder, one JSON object per line: {"file_name": "cat.png", "text": '
    '"a cat on a sofa"}, or from metadata.csv with columns file_name and text (docs/own-data.md)'
)


def check_not_split(root: Path) -> None:
    """ValueError for Hugging Face's imagefolder split layout (train/metadata.jsonl, test/metadata.jsonl, none at
    the root): read as one folder, its splits would be mixed, or every image be uncaptioned."""
    if any((root / f"metadata.{ext}").exists() for ext in ("jsonl", "csv")):
        return
    splits = sorted({m.parent.name for ext in ("jsonl", "csv") for m in root.glob(f"*/metadata.{ext}")})
    if splits:
        raise ValueError(
            f"{root}: no metadata file of its own, but {', '.join(s + '/' for s in splits)} each hold one (Hugging "
            f"Face's imagefolder splits): give the split to train on, e.g. --data {root / splits[0]}"
        )


class ImageFolder(Dataset):
    """A user's folder of images as training data; captions from `metadata.jsonl` when present ("text": a caption,
    or a list of captions of which each item draws one).

    Images are read when needed, so a large folder costs no memory up front (only each file's header is read, to
    leave out what Pillow cannot open); item i shows image i mod n, with crops and flips that vary from pass to
    pass. Bad data never stops a run: metadata lines that are not a JSON object with "file_name", files that are
    not readable images, and (with `captions_required`, as the generator needs) images without a caption are left
    out and counted in `skipped`; an image that fails to decode later is replaced by the next one and counted in
    `failed` (this process's count).
    """

    def __init__(
        self,
        root: str | Path,
        length: int | None = None,
        size: int = 64,
        seed: int = 0,
        captions_required: bool = False,
    ):
        self.root, paths = Path(root), list_images(root)
        self.skipped: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}  # a few of the names behind each count, to show
        runs = {log.parent for log in self.root.rglob("train_log.jsonl")}  # an --out inside the folder
        if self.root in runs:
            raise ValueError(
                f"{root}: a training run's folder (it holds train_log.jsonl), not an image folder: its images are "
                "the run's samples. Give the folder of your images; train into a folder of its own (--out)"
            )
        in_runs = {p for p in paths if runs.intersection(p.parents)}  # its sample grids are not data
        self._skip("images in a training run's folder", sorted(p.relative_to(self.root).as_posix() for p in in_runs))
        hidden = {p for p in paths if any(part.startswith(".") for part in p.relative_to(self.root).parts)}
        names = sorted(p.relative_to(self.root).as_posix() for p in hidden - in_runs)
        self._skip("hidden files (.ipynb_checkpoints/, macOS's ._ files)", names)
        paths = [p for p in paths if p not in in_runs | hidden]
        if not paths:
            raise ValueError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        self.failed: dict[str, str] = {}  # path -> reason, for images whose header read but whose data did not
        jsonl, csv_file = self.root / "metadata.jsonl", self.root / "metadata.csv"  # imagefolder's two forms
        check_not_split(self.root)
        meta = csv_file if csv_file.exists() and not jsonl.exists() else jsonl
        captions = self._read_captions(meta, captions_required)
        self.listed = list(captions)  # the captioned file names in the metadata's order
        names = {p: p.relative_to(self.root).as_posix() for p in paths}
        opens = {p: readable_header(p) for p in paths}
        readable = [p for p in paths if opens[p]]
        self.unreadable = [names[p] for p in paths if not opens[p]]  # every one (`skipped` counts, `examples` shows 3)
        self._skip("files Pillow cannot read", self.unreadable)
        self._skip(f"{meta.name} entries for no image in the folder", sorted(set(captions) - set(names.values())))
        texts = [captions.get(names[p], ()) for p in readable]
        keep = [bool(t) or not captions_required for t in texts]
        self._skip("images without a caption", [names[p] for p, k in zip(readable, keep) if not k])
        self.paths = [p for p, k in zip(readable, keep) if k]
        self.captions = [t for t, k in zip(texts, keep) if k]
        if not self.paths:
            hint = CAPTIONS_HINT if "images without a caption" in self.skipped else ""
            raise ValueError(f"{root}: no usable images; {self.skip_summary()}{hint}")
        self.length, self.size, self.seed = length or len(self.paths), size, seed

    def _skip(self, what: str, names: list[str]) -> None:
        """Count `names` as left out for the reason `what`, keeping the first few to show."""
        if names:
            self.skipped[what] = self.skipped.get(what, 0) + len(names)
            shown = [n.encode("utf-8", "backslashreplace").decode() for n in names[:3]]  # a name not in UTF-8
            self.examples.setdefault(what, []).extend(shown)

    def _read_captions(self, meta: Path, required: bool) -> dict[str, tuple[str, ...]]:
        """file_name -> its non-empty captions from metadata.jsonl ("text": a string, or a list to draw from) or
        metadata.csv (columns file_name and text); none when the file is missing, or not UTF-8 or not CSV where they
        are not `required`; bad lines are counted."""
        captions: dict[str, tuple[str, ...]] = {}
        if not meta.exists():
            return captions
        try:
            text = meta.read_bytes().decode("utf-8-sig")  # "-sig": Notepad's and Excel's BOM
            if meta.suffix == ".csv":
                reader = csv.DictReader(io.StringIO(text))
                rows = [(reader.line_num, row) for row in reader]
            else:
                rows = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        except (UnicodeDecodeError, csv.Error) as e:
            if isinstance(e, UnicodeDecodeError):
                line = meta.read_bytes()[: e.start].count(b"\n") + 1
                said = f"{meta}: line {line} is not UTF-8 text; save the file as UTF-8"
            else:
                said = f"{meta}: not a CSV file ({e})"
            if required:  # the generator: captions read with replacement characters would be trained on
                raise ValueError(said) from None
            if said not in _NOTED:  # once, where a run reads the folder twice (training and validation sets)
                print(f"{said} (its captions are not used here)")
                _NOTED.add(said)
            return captions
        bad = f"{meta.name} lines that are not a JSON object with 'file_name'"
        bad = f"{meta.name} rows without a file_name" if meta.suffix == ".csv" else bad
        for i, row in rows:
            try:
                record = row if isinstance(row, dict) else json.loads(row)
                texts = record.get("text", "")
                texts = [texts] if isinstance(texts, str) else texts if isinstance(texts, list) else []
                texts = tuple(t.strip() for t in texts if isinstance(t, str) and t.strip())
                if not all(is_utf8(t) for t in texts):  # "\ud800": half an emoji, cut by a script
                    self._skip("captions with a broken character (a lone surrogate)", [f"line {i}"])
                    texts = tuple(t for t in texts if is_utf8(t))
                if record["file_name"] in (None, ""):  # a CSV row short of the column, or with it empty
                    raise KeyError("file_name")
                name = PurePosixPath(str(record["file_name"])).as_posix()  # "./a.png" is "a.png"
                # a file on several lines (COCO's layout: one line per caption) has each line's captions
                captions[name] = tuple(dict.fromkeys(captions.get(name, ()) + texts))
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):  # ValueError: bad JSON too
                self._skip(bad, [f"line {i}"])
        return captions

    def in_metadata_order(self) -> list[tuple[str, tuple[str, ...], Path]]:
        """(name, captions, path) of each image kept, in the order its metadata lists them (`paths` is the folder's
        order): what an evaluation's halves and a vocabulary's ties are drawn by."""
        kept = {p.relative_to(self.root).as_posix(): (texts, p) for p, texts in zip(self.paths, self.captions)}
        return [(name, *kept[name]) for name in self.listed if name in kept]

    def skip_summary(self) -> str:
        """'left out 3 (files Pillow cannot read: 2, images without a caption: 1)', or '' when nothing was."""
        skipped = {**self.skipped, **({"images that failed to decode": len(self.failed)} if self.failed else {})}
        examples = self.examples | {"images that failed to decode": [Path(p).name for p in list(self.failed)[:3]]}
        if not skipped:
            return ""

        def counted(what: str, n: int) -> str:
            named = examples.get(what, [])
            return f"{what}: {n}" + (f", e.g. {', '.join(named[:3])}" if named else "")

        return f"left out {sum(skipped.values())} (" + "; ".join(counted(w, n) for w, n in skipped.items()) + ")"

    def _load(self, k: int) -> tuple[Image.Image, int]:
        """Image k, or the next one that decodes (a file truncated after its header); (image, its index)."""
        for j in [*range(k, len(self.paths)), *range(k)]:
            if str(self.paths[j]) in self.failed:
                continue
            try:
                return load_image(self.paths[j]), j
            except ImageLoadError as e:
                self.failed[str(self.paths[j])] = e.reason
        raise ValueError(f"{self.root}: no image in the folder decodes; {self.skip_summary()}")

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        im, k = self._load(i % len(self.paths))
        texts = self.captions[k]
        text = texts[int(rng.integers(len(texts)))] if len(texts) > 1 else "".join(texts)
        # An image smaller than the crop gives a square of its short side, scaled up (cut first: a strip costs nothing)
        crop = random_crop(im, self.size, rng, scale_range=(min(1.0, self.size / min(im.size)), 1.0))
        return {"pixel_values": pil_to_tensor(crop), "text": text}
