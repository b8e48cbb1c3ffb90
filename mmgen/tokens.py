"""Images <-> token grids for users: encode a picture, save its tokens as JSON, decode them back.

vq = load_vqvae("assets/mmgen-base")
result = encode_image(vq, load_image("cat.jpg"))   # result.tokens: (h, w) long, result.psnr in dB
save_tokens(result.tokens, "tokens.json", model_id="assets/mmgen-base", num_codes=vq.config.num_codes,
            downsample_factor=vq.downsample_factor)
image = decode_tokens(vq, read_tokens("tokens.json", num_codes=vq.config.num_codes))
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from .images import fit_to_multiple, pil_to_tensor, tensor_to_pil, to_rgb
from .metrics import psnr, ssim
from .model_paths import ROOT, shipped_folder

if TYPE_CHECKING:
    from .models.vqvae import VQVAE

TOKENS_FORMAT = "mmgen-tokens-v1"
SHIPPED_DEFAULT = "assets/mmgen-base"  # the default model as the commands name it (found from any folder)
DEFAULT_MODEL = str(ROOT / SHIPPED_DEFAULT)
MAX_SIDE = 512  # larger uploads are downscaled first: a 512x512 image is 16k tokens and ~0.4 s on 2 CPU cores


def default_model() -> str:
    """The model folder or Hub id to use: $MMGEN_MODEL, else (unset or empty, as the app reads it) the model
    shipped in this repository."""
    return os.environ.get("MMGEN_MODEL", "").strip() or DEFAULT_MODEL


def load_vqvae(model: str | None = None, subfolder: str | None = "vqvae") -> VQVAE:
    """Load mmgen's tokenizer from a local model folder or a Hugging Face Hub repo id, in float32, in eval mode.
    ValueError, saying what is there instead, when `model/subfolder` is no mmgen VQVAE (diffusers would read a
    folder without `subfolder` as the model itself, and fail later on its weights)."""
    from .models.vqvae import VQVAE

    model = model or default_model()
    if not Path(model).is_dir():  # a shipped model's name ("vqgan-f8", "assets/mmgen-base"), from any folder
        model = shipped_folder(str(model)) or model
    where = f"{model}/{subfolder}" if subfolder else str(model)
    if subfolder and Path(model).is_dir() and not any(Path(model, f).exists() for f in (subfolder, "config.json")):
        raise ValueError(f"no mmgen tokenizer in {model}: it has no {subfolder}/ folder")  # (a config: said below)
    if not Path(model).exists() and (Path(model).is_absolute() or str(model).startswith(".")):
        raise ValueError(f"{model}: no such folder")
    try:
        cls = VQVAE.load_config(model, subfolder=subfolder).get("_class_name")
    except (OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"no mmgen tokenizer in {where} ({reason})") from None
    if cls != "VQVAE":
        held = cls or "model of unknown class"
        raise ValueError(f"no mmgen tokenizer in {where}: it holds a {held}, not a VQVAE")
    return VQVAE.from_pretrained(model, subfolder=subfolder, dtype=torch.float32, use_safetensors=True).eval()


@dataclass
class EncodedImage:
    image: Image.Image  # the input as encoded: downscaled to MAX_SIDE and cropped to a multiple of f
    tokens: torch.Tensor  # (h, w) long
    reconstruction: Image.Image
    psnr: float  # of the reconstruction against `image`, in dB
    ssim: float  # structural similarity of the reconstruction against `image` (1 = identical)


@torch.inference_mode()
def encode_image(vq: VQVAE, image: Image.Image, max_side: int = MAX_SIDE) -> EncodedImage:
    """Tokenize one RGB image (any size: downscaled to max_side, centre-cropped to a multiple of f)."""
    image = fit_to_multiple(to_rgb(image), vq.downsample_factor, max_side)  # EXIF, alpha, 16-bit grey
    enc = vq.encode(pil_to_tensor(image)[None])
    recon = tensor_to_pil(vq.decode(enc.latents)[0])
    return EncodedImage(image, enc.indices[0], recon, psnr(image, recon), ssim(image, recon))


@torch.inference_mode()
def decode_tokens(vq: VQVAE, tokens: torch.Tensor) -> Image.Image:
    """(h, w) token ids -> RGB image of (h*f, w*f) pixels."""
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(
            f"decode_tokens takes one (h, w) grid of token ids, got {shape}: a batch is vq.decode_indices"
        )
    return tensor_to_pil(vq.decode_indices(tokens[None])[0])


def tokens_to_dict(tokens: torch.Tensor, model_id: str, num_codes: int, downsample_factor: int) -> dict:
    h, w = tokens.shape
    return {
        "format": TOKENS_FORMAT,
        "model": model_id,
        "num_codes": num_codes,
        "shape": [h, w],
        "image_size": [h * downsample_factor, w * downsample_factor],
        "tokens": tokens.tolist(),
    }


def save_tokens(tokens: torch.Tensor, path: str | Path, **meta) -> Path:
    Path(path).write_text(json.dumps(tokens_to_dict(tokens, **meta)))
    return Path(path)


MAX_GRID_SIDE = 256  # tokens a side `decode` accepts: 2048 px at f8 (a bigger grid takes minutes and GBs)


def tokens_from_dict(data: dict, num_codes: int) -> torch.Tensor:
    """Validate a tokens document and return its (h, w) grid; ValueError says what is wrong."""
    if not isinstance(data, dict) or "tokens" not in data:
        raise ValueError("not an mmgen tokens file: expected a JSON object with a 'tokens' grid")
    grid = data["tokens"]
    if not isinstance(grid, list) or not grid or not all(isinstance(r, list) and r for r in grid):
        raise ValueError("'tokens' must be a non-empty list of non-empty rows")
    if len({len(r) for r in grid}) != 1:
        raise ValueError("'tokens' rows have different lengths; the grid must be rectangular")
    if max(len(grid), len(grid[0])) > MAX_GRID_SIDE:
        raise ValueError(f"a {len(grid[0])}x{len(grid)} grid: at most {MAX_GRID_SIDE} tokens a side are decoded")
    if not all(isinstance(v, int) and not isinstance(v, bool) for r in grid for v in r):
        raise ValueError("'tokens' must hold integer code ids")
    if data.get("num_codes") not in (None, num_codes):
        given = data["num_codes"]
        raise ValueError(
            f"these tokens come from a codebook of {given!r} codes; this model has {num_codes}: decode them with the "
            "tokenizer that made them (--model FOLDER or Hub id)"
        )
    low, high = min(min(r) for r in grid), max(max(r) for r in grid)
    if low < 0 or high >= num_codes:
        raise ValueError(f"code ids must lie in 0..{num_codes - 1}; found {low}..{high}")
    tokens = torch.tensor(grid, dtype=torch.long)
    if "shape" in data and data["shape"] != list(tokens.shape):
        raise ValueError(f"'shape' says {data['shape']!r} but the grid is {list(tokens.shape)}")
    return tokens


def load_tokens_file(path: str | Path):
    """A tokens file's JSON, unchecked (`tokens_from_dict` checks it); ValueError when it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def read_tokens(path: str | Path, num_codes: int) -> torch.Tensor:
    return tokens_from_dict(load_tokens_file(path), num_codes)
