"""Images in and out: any file Pillow reads as RGB, checked, and conversions between PIL images and tensors.

`load_image` opens any file Pillow reads (RGBA, palette, grayscale, 16-bit, CMYK, EXIF-rotated) as RGB, with clear
errors for empty, non-image or too large files; the size is read from the file's header and checked before any pixel
is decoded, and a JPEG wanted smaller (`max_side`) is decoded at 1/2 to 1/8 scale. The datasets the trainers read
are `mmgen.data.images`.
"""

from __future__ import annotations

import math
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 64_000_000  # Pillow's decompression-bomb guard, stated explicitly (about 8000 x 8000)
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageLoadError(ValueError):
    """A file that cannot be used as an image. `reason` says why without the file's path (for people: an app
    must not show its server's folders); the message is `path: reason`."""

    def __init__(self, reason: str, path: str | Path | None = None):
        self.reason, self.path = reason, path
        super().__init__(reason if path is None else f"{path}: {reason}")


def load_image(path: str | Path, max_pixels: int | None = None, max_side: int | None = None) -> Image.Image:
    """Open an image file as RGB, applying its EXIF orientation; raise ImageLoadError with a clear reason.

    The image's size comes from its header: over `max_pixels` (default and most: `MAX_PIXELS`) it is refused
    before anything is decoded. With `max_side` (the caller shrinks it to that longer side next), a JPEG is
    decoded at the smallest of 1/2, 1/4 or 1/8 scale that still covers it, so a 50-megapixel photo costs what a
    1-megapixel one does; `max_pixels` then applies to the decoded size."""
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError("no such file", path)
    if path.stat().st_size == 0:
        raise ImageLoadError("the file is empty", path)
    try:
        with warnings.catch_warnings():  # Pillow's "decompression bomb" warning: `check_size` says it in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # reads the header only
                if max_side and im.format == "JPEG":
                    im.draft("RGB", (max_side, max_side))
                check_size(im.size, max_pixels)
                return to_rgb(im)
    except ImageLoadError as e:
        raise ImageLoadError(e.reason, path) from None
    except Image.DecompressionBombError as e:  # Pillow's own guard, at twice MAX_PIXELS
        raise ImageLoadError(f"image too large (over {MAX_PIXELS:,} pixels)", path) from e
    except UnidentifiedImageError as e:
        raise ImageLoadError("not an image file Pillow can read", path) from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as e:  # truncated or corrupt data
        reason = str(e).replace(str(path), path.name)
        raise ImageLoadError(f"could not decode the image ({reason})", path) from e


def check_size(size: tuple[int, int], max_pixels: int | None = None) -> None:
    """ImageLoadError when an image of `size` (width, height) is over `max_pixels` (default `MAX_PIXELS`)."""
    w, h = size
    max_pixels = min(max_pixels or MAX_PIXELS, MAX_PIXELS)
    if w * h > max_pixels:
        raise ImageLoadError(f"image too large: {w}x{h} is over {max_pixels:,} pixels")


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow image -> RGB: EXIF rotation applied, transparency composited on white."""
    check_size(im.size)
    try:
        im = ImageOps.exif_transpose(im)
    except (SyntaxError, ValueError, EOFError, IndexError, struct.error):  # an EXIF block Pillow cannot parse: the
        pass  # pixels are fine, the orientation is unknown
    if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit grey: Pillow's own convert clips it at 255
        im = wide_grey_to_l(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(canvas, im)
    return im.convert("RGB")


def wide_grey_to_l(im: Image.Image) -> Image.Image:
    """A 16-bit or 32-bit integer image (0..65535, as 16-bit PNGs and TIFFs hold) or a float one (0..1 when its
    values say so, else 0..255) as 8-bit grey."""
    a = np.asarray(im, dtype=np.float64)
    if im.mode == "F":
        a = a * 255 if np.nanmax(a, initial=0) <= 1 else a
    else:
        a = a / 257
    return Image.fromarray(np.nan_to_num(a).clip(0, 255).round().astype(np.uint8), "L")


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float tensor in [-1, 1]."""
    arr = np.asarray(im.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """(3, H, W) tensor in [-1, 1] -> RGB PIL image."""
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


MIN_SIDE = 16  # px: a smaller image, scaled up to a generator's size, is a few blurred blocks
PIXEL_SLACK = 1.0  # bicubic resampling overshoots [-1, 1] by up to 0.9; pixels 0..255 as floats do not fit


def check_pixels(x: torch.Tensor) -> None:
    """ValueError for images a tokenizer would turn into wrong tokens without a word: values that are not finite,
    or far outside [-1, 1] (pixels 0..255 as floats). Images in [0, 1] cannot be told from pale ones."""
    if not x.numel():
        return
    low, high = torch.stack(torch.aminmax(x.detach())).float().tolist()  # one device sync
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("the images hold NaN or infinite values")
    if low < -1 - PIXEL_SLACK or high > 1 + PIXEL_SLACK:
        raise ValueError(
            f"expected images in [-1, 1], got values {low:.4g}..{high:.4g} (pixels 0..255: x / 127.5 - 1; "
            "0..1: x * 2 - 1)"
        )


def check_side(image: Image.Image) -> None:
    """ValueError for an image too small for a generator to read (under MIN_SIDE px a side)."""
    if min(image.size) < MIN_SIDE:
        raise ValueError(
            f"the image is {image.width}×{image.height}: too small to read (at least {MIN_SIDE} px a side)"
        )


def fit_square(image: Image.Image, side: int) -> tuple[Image.Image, str]:
    """The image as a generator that paints side x side reads it: centre-cropped to a square and resized, and what
    was done to it, e.g. "The image (96×32) was cut to its middle 32×32 square and resized to 64×64." ("" when
    nothing); ValueError when it is too small to read (MIN_SIDE)."""
    check_side(image)
    w, h = image.size
    if (w, h) == (side, side):
        return image, ""
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    square = image.crop((left, top, left + s, top + s))
    done = [f"cut to its middle {s}×{s} square"] if w != h else []
    done += [f"resized to {side}×{side}"] if s != side else []
    fitted = square if s == side else square.resize((side, side), Image.Resampling.LANCZOS)
    return fitted, f"The image ({w}×{h}) was {' and '.join(done)}."


def check_max_side(max_side: int) -> int:
    """A `--max-side` as typed: 0 means no limit."""
    if max_side < 0:
        raise ValueError(f"--max-side must be 0 (no limit) or a side in pixels, got {max_side}")
    return max_side


def fit_to_multiple(im: Image.Image, multiple: int, max_side: int | None = None) -> Image.Image:
    """Downscale so the longer side is at most max_side, then centre-crop to sides divisible by `multiple`."""
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize(
            (max(multiple, round(im.width * scale)), max(multiple, round(im.height * scale))), Image.Resampling.LANCZOS
        )
    w, h = (im.width // multiple) * multiple, (im.height // multiple) * multiple
    if w == 0 or h == 0:
        raise ImageLoadError(f"image too small: {im.width}x{im.height}; it needs at least {multiple}x{multiple}")
    left, top = (im.width - w) // 2, (im.height - h) // 2
    return im.crop((left, top, left + w, top + h))


def readable_header(path: Path) -> bool:
    """Whether Pillow can open `path` and its size is allowed (the header only: no pixel is decoded)."""
    if not path.is_file():  # a named pipe would block the read; a broken link is no image
        return False
    try:
        with Image.open(path) as im:
            check_size(im.size)
        return True
    except (OSError, ValueError, Image.DecompressionBombError, ImageLoadError):
        return False
