"""Tokenizers side by side: what each keeps of one image, what its tokens cost, and which tokens nearly flipped.

    rows = compare_tokenizers(image, [load_tokenizer("mmgen-base-64"), load_tokenizer("some/vq-model")])
    print(format_table(rows))      # PSNR, SSIM, detail kept, edges in place, grid, bits, compression, time
    rows[0].reconstruction, error_map(rows[0].image, rows[0].reconstruction)

    enc = tok.encode(x)
    amb = quantization_ambiguity(enc.unquantized, tok.codebook, tok.metric)   # per token: distance, margin

Every image goes through every tokenizer at the same pixels: it is fitted once to a multiple of all their
downsampling factors. The metric functions are pure (images or arrays in, numbers or arrays out); only
`reconstruct` and `compare_tokenizers` run models. Dimension letters: B batch, h x w token grid, D code dim,
K codebook size, N = B*h*w tokens.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from .images import fit_to_multiple, pil_to_tensor, tensor_to_pil, to_rgb
from .metrics import detail_kept, edges_in_place, psnr, ssim
from .tokenizers import Tokenizer, as_tokenizer

MAX_SIDE = 256  # images are downscaled to this longer side before the comparison
PIXEL_BITS = 24  # an uncompressed RGB pixel


# -------------------------------------------------------------------- pure metrics
def bits_per_image(grid: tuple[int, int], num_codes: int) -> float:
    """Bits to store an h x w token grid with K codes: h * w * log2 K."""
    return grid[0] * grid[1] * math.log2(num_codes)


def compression_ratio(image_size: tuple[int, int], bits: float) -> float:
    """How many times fewer bits the tokens take than the image's 24-bit pixels."""
    return image_size[0] * image_size[1] * PIXEL_BITS / bits


def error_map(original: Image.Image, reconstruction: Image.Image) -> np.ndarray:
    """(H, W) float32 mean absolute error over R, G, B, in 0..255 (draw it with `mmgen.viz.heatmap`)."""
    a = np.asarray(original.convert("RGB"), dtype=np.float32)
    b = np.asarray(reconstruction.convert("RGB"), dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape[1::-1]} and {b.shape[1::-1]}")
    return np.abs(a - b).mean(axis=2)


@dataclass
class QuantizationAmbiguity:
    distance: torch.Tensor  # (B, h, w) distance of each token's vector to its code
    margin: torch.Tensor  # (B, h, w) distance to the second-nearest code minus `distance`: near 0, nearly flipped
    nearest: torch.Tensor  # (B, h, w) long: the chosen code (the tokenizer's indices)
    runner_up: torch.Tensor  # (B, h, w) long: the second-nearest code


@torch.inference_mode()
def quantization_ambiguity(
    unquantized: torch.Tensor, codebook: torch.Tensor, metric: str = "euclidean", chunk: int = 4096
) -> QuantizationAmbiguity:
    """Per token, how firmly it was quantised: the distance from its vector in `unquantized` (B, D, h, w) to the
    nearest and second-nearest rows of `codebook` (K, D), in the quantiser's `metric` (a tokenizer's `.metric`):
    "euclidean", or "cosine" (distance 1 - dot product, the vectors being unit). Tokens go `chunk` at a time, so
    K = 16,384 at 64x64 tokens stays within a few hundred MB."""
    b, d, h, w = unquantized.shape
    if codebook.ndim != 2 or codebook.shape[1] != d or codebook.shape[0] < 2:
        raise ValueError(f"codebook must be (K >= 2, {d}), got {tuple(codebook.shape)}")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', not {metric!r}")
    flat = rearrange(unquantized, "b d h w -> (b h w) d").float()  # (N, D)
    codes = codebook.float().to(flat.device)

    def two_nearest(part: torch.Tensor):  # (n, D) -> (n, 2) distances, ascending, and their code ids
        if metric == "euclidean":
            return torch.cdist(part, codes).topk(2, dim=1, largest=False)
        top = (part @ codes.T).topk(2, dim=1)  # as the quantiser scores: the dot product with each code
        return 1 - top.values, top.indices

    tops = [two_nearest(part) for part in flat.split(chunk)]
    dist = torch.cat([t[0] for t in tops])  # (N, 2)
    ids = torch.cat([t[1] for t in tops])  # (N, 2)
    return QuantizationAmbiguity(
        distance=dist[:, 0].view(b, h, w),
        margin=(dist[:, 1] - dist[:, 0]).view(b, h, w),
        nearest=ids[:, 0].view(b, h, w),
        runner_up=ids[:, 1].view(b, h, w),
    )


# -------------------------------------------------------------------- running tokenizers
@dataclass
class Reconstruction:
    """One image through one tokenizer, with the comparison's figures."""

    name: str  # the tokenizer's display label
    image: Image.Image  # the input as encoded
    reconstruction: Image.Image
    indices: torch.Tensor  # (h, w) long
    num_codes: int
    psnr: float  # dB
    ssim: float  # 1 = identical; NaN under 7x7 pixels
    detail_kept: float
    edges_in_place: float
    bits: float  # h * w * log2 K
    compression: float  # 24-bit pixels over `bits`
    seconds: float  # encode + decode

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.indices.shape)

    def row(self) -> dict:
        """The figures as a JSON-friendly dict (a table row)."""
        h, w = self.grid
        return {
            "tokenizer": self.name,
            "psnr_db": self.psnr,
            "ssim": self.ssim,
            "detail_kept": self.detail_kept,
            "edges_in_place": self.edges_in_place,
            "grid": f"{w}x{h}",  # columns x rows, as an image's size is width x height
            "codes": self.num_codes,
            "bits": self.bits,
            "compression": self.compression,
            "seconds": self.seconds,
        }


def reconstruct(tokenizer: Tokenizer, image: Image.Image) -> Reconstruction:
    """Encode and decode an image whose sides are multiples of the tokenizer's factor; measure the result."""
    t = time.perf_counter()
    enc = tokenizer.encode(pil_to_tensor(image)[None])
    recon = tensor_to_pil(tokenizer.decode(enc.latents)[0])
    seconds = time.perf_counter() - t
    indices = enc.indices[0].cpu()
    bits = bits_per_image(tuple(indices.shape), tokenizer.num_codes)
    return Reconstruction(
        name=tokenizer.label,
        image=image,
        reconstruction=recon,
        indices=indices,
        num_codes=tokenizer.num_codes,
        psnr=psnr(image, recon),
        ssim=ssim(image, recon),
        detail_kept=detail_kept(image, recon),
        edges_in_place=edges_in_place(image, recon),
        bits=bits,
        compression=compression_ratio(image.size, bits),
        seconds=seconds,
    )


def common_crop(image: Image.Image, tokenizers: list[Tokenizer], max_side: int = MAX_SIDE) -> Image.Image:
    """The image as every tokenizer will see it: downscaled to `max_side`, centre-cropped to a multiple of all
    their downsampling factors."""
    multiple = math.lcm(*(t.downsample_factor for t in tokenizers))
    return fit_to_multiple(to_rgb(image), multiple, max_side)  # EXIF rotation, alpha on white, 16-bit grey


def compare_tokenizers(
    image: Image.Image, tokenizers: list[Tokenizer], max_side: int = MAX_SIDE
) -> list[Reconstruction]:
    """One image through each tokenizer (a `Tokenizer`, or a loaded VQVAE / diffusers VQModel), at the same
    pixels."""
    if not tokenizers:
        raise ValueError("compare at least one tokenizer")
    tokenizers = [as_tokenizer(t) for t in tokenizers]  # pipe.vqvae, load_vqvae(...): no `.label` of their own
    fitted = common_crop(image, tokenizers, max_side)
    return [reconstruct(t, fitted) for t in tokenizers]


def format_table(rows: list[Reconstruction]) -> str:
    """A plain-text table of the comparison, one tokenizer per line."""
    head = f"{'tokenizer':<40}{'PSNR dB':>8}{'SSIM':>7}{'detail':>7}{'edges':>7}{'grid':>8}"
    head += f"{'bits':>9}{'ratio':>7}{'s':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        h, w = r.grid
        lines.append(
            f"{r.name[:39]:<40}{r.psnr:>8.2f}{r.ssim:>7.3f}{r.detail_kept:>7.2f}{r.edges_in_place:>7.2f}"
            f"{f'{w}x{h}':>8}"
            f"{r.bits:>9,.0f}{r.compression:>6.1f}x{r.seconds:>7.2f}"
        )
    return "\n".join(lines)


# -------------------------------------------------------------------- command line
ERROR_RANGE = 64.0  # error maps: mean |error| over R, G, B from 0 (dark) to this many levels of 255 (bright)


def add_arguments(p):
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument(
        "--tokenizer",
        action="append",
        required=True,
        help="a model folder, pipeline folder, Hub repo id, 'mmgen-base-64' or 'vqgan-f8'; repeat for each tokenizer",
    )
    p.add_argument("--out", default="compare.png", help="the side-by-side PNG")
    p.add_argument("--max-side", type=int, default=MAX_SIDE, help="downscale larger images to this longer side")
    return p


def main(args) -> None:
    """`mmgen compare-tokenizers`: a table per image on stdout, one PNG with every reconstruction and error map."""
    from .images import check_max_side, load_image
    from .tokenizers import load_tokenizer
    from .viz import colorbar, heatmap, side_by_side

    check_max_side(args.max_side)
    images = [load_image(p) for p in args.images]  # a bad file fails before the models load
    tokenizers = [load_tokenizer(name) for name in args.tokenizer]
    results = []
    for path, image in zip(args.images, images):
        results.append(compare_tokenizers(image, tokenizers, args.max_side))
        print(f"\n{path} ({results[-1][0].image.width}x{results[-1][0].image.height} as compared)")
        print(format_table(results[-1]))
    sheet_rows = []
    for rows in results:
        fitted = rows[0].image
        scale = max(1, -(-128 // fitted.width))  # room for the column labels; each image its own (one scale for
        # all, a tiny image's, would blow a photo beside it up to gigabytes)

        def big(im: Image.Image, scale=scale) -> Image.Image:
            return im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)

        errors = [heatmap(error_map(fitted, r.reconstruction), 0, ERROR_RANGE) for r in rows]
        legend = colorbar(0, ERROR_RANGE, "mean |error| (of 255)", width=min(fitted.width * scale, 256))
        sheet_rows += [[big(fitted)] + [big(r.reconstruction) for r in rows], [legend] + [big(e) for e in errors]]
    sheet = side_by_side(sheet_rows, ["original"] + [t.label for t in tokenizers])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"\nwrote {args.out}: per image, the reconstructions, then their error maps (0..{ERROR_RANGE:g} of 255)")
