"""One interface over image tokenizers: mmgen's own VQ-VAE and any diffusers `VQModel`.

The public VQ tokenizers that diffusers loads as `VQModel` (aMUSEd's VQGAN, VQ-Diffusion's, Kandinsky's MoVQ, the
LDM VQ-f4 autoencoders) keep their token ids inside `quantize(...)[2][2]` and decode through one of three paths
(quantise again, look the ids up with `lookup_from_codebook`, or a spatially-normalised decoder that also reads the
codes, MoVQ: Zheng et al., 2022, https://arxiv.org/abs/2209.09002). `Tokenizer` hides that: ids are one attribute
away, and every tokenizer encodes, decodes and exposes its codebook the same way as mmgen's `VQVAE`.

    tok = load_tokenizer("assets/mmgen-base")            # or a model folder, a pipeline folder, a Hub id
    enc = tok.encode(x)                                  # x: (B, 3, H, W) in [-1, 1], H and W multiples of f
    enc.indices, enc.latents                             # (B, h, w) long, (B, D, h, w) code vectors
    tok.decode_indices(enc.indices)                      # (B, 3, H, W) in [-1, 1]
    tok.codebook, tok.num_codes, tok.downsample_factor   # (K, D), K, f

Dimension letters: B batch, H x W pixels, h x w token grid (H/f x W/f), D code dim, K codebook size.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange

from .images import check_pixels
from .model_paths import ASSETS, HUB_ID, mistyped_path, shipped_folder

if TYPE_CHECKING:
    from diffusers import VQModel

    from .models.vqvae import VQVAE

# The tokenizers this repository ships: mmgen-base-64's f4 VQ-VAE (64 px -> 16x16 tokens) and the VQ-GAN f8
# (128 px -> 16x16 tokens, recipes/vqgan-f8.toml), whose tokens mmgen-base uses (with its decoder trained on shapes).
SHIPPED_TOKENIZERS = {name: str(ASSETS / name) for name in ("mmgen-base-64", "vqgan-f8")}
# Public VQ tokenizers on the Hugging Face Hub (need a network the first time): display name -> (repo id, folder).
HUB_TOKENIZERS = {
    "aMUSEd VQGAN (f16, 8,192 codes)": ("amused/amused-256", "vqvae"),
    "VQ-Diffusion ITHQ (f8, 4,096 codes)": ("microsoft/vq-diffusion-ithq", "vqvae"),
    "Kandinsky 2.2 MoVQ (f8, 16,384 codes)": ("kandinsky-community/kandinsky-2-2-decoder", "movq"),
    "LDM VQ-f4 (f4, 8,192 codes)": ("CompVis/ldm-super-resolution-4x-openimages", "vqvae"),
}
TOKENIZER_FOLDERS = ("vqvae", "movq")  # where pipelines keep their tokenizer, in the order they are looked for
FOLDERS_SAID = " or ".join(f"{f}/" for f in TOKENIZER_FOLDERS)  # "vqvae/ or movq/", as messages name them
# Tokenizer families: config `_class_name` -> the model class's module (imported on first load: diffusers takes
# seconds). A new family: a row here, its adapter in ADAPTERS (`Tokenizer`'s docstring: what an adapter defines).
TOKENIZER_CLASSES = {"VQVAE": "mmgen.models.vqvae", "VQModel": "diffusers"}


@dataclass
class TokenizerOutput:
    latents: torch.Tensor  # (B, D, h, w) the code vectors of the tokens (what the decoder reads)
    indices: torch.Tensor  # (B, h, w) long token ids
    unquantized: torch.Tensor  # (B, D, h, w) the vectors the quantiser rounded to their nearest codes


class Tokenizer:
    """The common interface; an adapter per model family (`ADAPTERS`: `MMGenTokenizer`,
    `DiffusersTokenizer`) defines `codebook` (K, D), `downsample_factor`, `kind`, `_encode` (images in [-1, 1]
    on the model's device and dtype -> `TokenizerOutput`, `unquantized` in the space the quantiser compares codes
    in) and `_decode` (code vectors -> images), and sets `metric`.

    Every method runs under `torch.inference_mode()` and returns tensors on the model's device. `metric` says how
    the quantiser picked each token's code from `unquantized`: "euclidean" (nearest codebook row) or "cosine"
    (largest dot product with the unit-normalised vector, mmgen's quantiser).
    """

    metric = "euclidean"
    default_name = "VQ tokenizer"  # a name for one wrapped without a name

    def __init__(self, model: torch.nn.Module, name: str):
        self.model = model.eval()
        self.name = name  # e.g. "vqgan-f8" or "amused/amused-256"

    # ---------------------------------------------------------------- facts
    @property
    def codebook(self) -> torch.Tensor:  # (K, D)
        raise NotImplementedError

    @property
    def downsample_factor(self) -> int:
        raise NotImplementedError

    @property
    def kind(self) -> str:
        """The model family in a few words, e.g. "diffusers VQModel, spatial norm"."""
        raise NotImplementedError

    @property
    def num_codes(self) -> int:
        return self.codebook.shape[0]

    @property
    def code_dim(self) -> int:
        return self.codebook.shape[1]

    @property
    def device(self) -> torch.device:
        return self.codebook.device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype, which the model computes in (images and codes are cast to it, results are float32)."""
        return next(self.model.parameters()).dtype

    @property
    def label(self) -> str:
        """A display name: the name, codebook size and downsampling factor."""
        return f"{self.name} ({self.num_codes:,} codes, f{self.downsample_factor})"

    def describe(self) -> dict:
        """JSON-friendly facts for tables and info panels."""
        params = sum(p.numel() for p in self.model.parameters())
        return {
            "name": self.name,
            "kind": self.kind,
            "num_codes": self.num_codes,
            "code_dim": self.code_dim,
            "downsample_factor": self.downsample_factor,
            "params_m": params / 1e6,
        }

    # ---------------------------------------------------------------- encode / decode
    def check_images(self, x: torch.Tensor) -> None:
        f = self.downsample_factor
        if not isinstance(x, torch.Tensor):
            raise ValueError(
                f"expected a (B, 3, H, W) tensor in [-1, 1], got {type(x).__name__} (from a PIL image: pil_to_tensor)"
            )
        if not x.is_floating_point():
            raise ValueError(f"expected float images in [-1, 1], got {x.dtype} (pixels 0..255: x / 127.5 - 1)")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(
                f"{self.name}: image height and width must be multiples of {f}, got {tuple(x.shape[-2:])}"
            )
        check_pixels(x)

    def check_indices(self, indices: torch.Tensor) -> None:
        if indices.ndim != 3 or indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise ValueError(f"expected (B, h, w) long token ids, got {tuple(indices.shape)} {indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_codes):
            raise ValueError(f"{self.name}: token ids must lie in 0..{self.num_codes - 1}")

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> TokenizerOutput:
        """Images (B, 3, H, W) in [-1, 1] -> code vectors, token ids and the unquantised vectors."""
        self.check_images(x)
        out = self._encode(x.to(self.device, self.dtype))
        return TokenizerOutput(out.latents.float(), out.indices, out.unquantized.float())

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, D, h, w) -> images (B, 3, h*f, w*f) clamped to [-1, 1]."""
        return self._decode(latents.to(self.device, self.dtype)).float().clamp(-1, 1)

    @torch.inference_mode()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Token ids (B, h, w) -> images (B, 3, h*f, w*f) in [-1, 1]."""
        self.check_indices(indices)
        return self.decode(self._lookup(indices.to(self.device).long()))

    @torch.inference_mode()
    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) long -> (B, D, h, w) code vectors."""
        self.check_indices(indices)
        return self._lookup(indices.to(self.device).long())

    def _lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return rearrange(F.embedding(indices, self.codebook), "b h w d -> b d h w")

    def _encode(self, x: torch.Tensor) -> TokenizerOutput:
        raise NotImplementedError

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MMGenTokenizer(Tokenizer):
    """mmgen's `VQVAE`: the code with the largest dot product with the l2-normalised encoder output."""

    model: VQVAE
    metric = "cosine"
    default_name = "mmgen VQVAE"

    @property
    def codebook(self) -> torch.Tensor:
        return self.model.quantizer.codebook

    @property
    def downsample_factor(self) -> int:
        return self.model.downsample_factor

    @property
    def kind(self) -> str:
        return "mmgen VQVAE, l2-normalised codes"

    def _encode(self, x):
        z = self.model.encoder(x)  # (B, D, h, w)
        q = self.model.quantizer(z)
        return TokenizerOutput(q.latents, q.indices, F.normalize(z, dim=1))

    def _decode(self, latents):
        return self.model.decode(latents)


class DiffusersTokenizer(Tokenizer):
    """A diffusers `VQModel`; encode and decode run the model's own modules in the order `VQModel.decode` does.
    aMUSEd's VQ-GAN (the family with `lookup_from_codebook`) reads and draws pixels in [0, 1], as its pipelines
    feed it (`do_normalize=False`): images are mapped there and back, so every tokenizer takes [-1, 1]."""

    default_name = "VQModel"
    model: VQModel

    @property
    def unit_pixels(self) -> bool:
        return bool(self.model.config.lookup_from_codebook)

    @property
    def codebook(self) -> torch.Tensor:
        return self.model.quantize.embedding.weight

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.model.config.block_out_channels) - 1)  # every block but the last halves the side

    @property
    def kind(self) -> str:
        c = self.model.config
        flags = ["spatial norm (MoVQ)"] * (c.norm_type == "spatial") + ["codebook lookup"] * c.lookup_from_codebook
        return ", ".join(["diffusers VQModel", *flags])

    def _encode(self, x):
        h = self.model.encode((x + 1) / 2 if self.unit_pixels else x).latents  # (B, D, h, w) before quantisation
        _, _, (_, _, ids) = self.model.quantize(h)  # ids: (B*h*w,)
        indices = ids.view(h.shape[0], h.shape[2], h.shape[3])
        return TokenizerOutput(self._lookup(indices), indices, h)

    def _lookup(self, indices):
        b, h, w = indices.shape
        return self.model.quantize.get_codebook_entry(indices.flatten(), (b, h, w, self.code_dim))

    def _decode(self, latents):
        spatial = self.model.config.norm_type == "spatial"  # MoVQ's decoder reads the codes in every norm layer
        images = self.model.decoder(self.model.post_quant_conv(latents), latents if spatial else None)
        return images * 2 - 1 if self.unit_pixels else images


ADAPTERS = {"VQVAE": MMGenTokenizer, "VQModel": DiffusersTokenizer}  # TOKENIZER_CLASSES' adapters


def _in_family(cls: type) -> bool:
    """Whether `cls` is a TOKENIZER_CLASSES class: its name from its module (taming-transformers' VQModel is not)."""
    module = TOKENIZER_CLASSES.get(cls.__name__)
    return module is not None and (cls.__module__ == module or cls.__module__.startswith(module + "."))


def as_tokenizer(model, name: str | None = None) -> Tokenizer:
    """Wrap a loaded model of a `TOKENIZER_CLASSES` family, a subclass's too (a `Tokenizer` passes through)."""
    if isinstance(model, Tokenizer):
        return model
    family = next((c.__name__ for c in type(model).__mro__ if _in_family(c)), None)
    if family is None:
        raise ValueError(f"not a VQ tokenizer: {type(model).__name__} (expected mmgen's VQVAE or a diffusers VQModel)")
    adapter = ADAPTERS[family]
    tok = adapter(model, name or adapter.default_name)
    if tok.num_codes < 2:  # every token the same code: 0 bits a token, no second-nearest code to compare with
        raise ValueError(f"{tok.name}: a codebook of {tok.num_codes} code holds no information (0 bits a token)")
    return tok


# -------------------------------------------------------------------- loading
def load_tokenizer(name_or_path: str, subfolder: str | None = None) -> Tokenizer:
    """A tokenizer from a shipped name ("vqgan-f8"), a local folder or a Hugging Face Hub repo id.

    A folder may hold the model itself (`config.json`) or a pipeline (`model_index.json`) whose tokenizer sits in
    `vqvae/` or `movq/` (or any component of class VQModel or VQVAE); `subfolder` picks one explicitly. Weights
    load in float32, in eval mode. Anything that is not a VQ tokenizer is a ValueError saying why.
    """
    if not name_or_path or not str(name_or_path).strip():
        raise ValueError(
            "no tokenizer given: pass a model folder, a Hub repo id or one of " + ", ".join(SHIPPED_TOKENIZERS)
        )
    name_or_path = str(name_or_path).strip()
    path = tokenizer_path(name_or_path)
    if os.path.isdir(path):
        subfolder = subfolder or find_tokenizer_folder(path)
        config = _read_config(Path(path) / (subfolder or "") / "config.json", name_or_path)
        name = name_or_path if name_or_path in SHIPPED_TOKENIZERS else Path(path).resolve().name
    elif os.path.exists(path) or not HUB_ID.match(path):
        raise ValueError(f"{path}: not a tokenizer folder (no such folder, and not a Hugging Face Hub repo id)")
    elif typo := mistyped_path(path):
        raise ValueError(typo)
    else:
        from .tokenizer_hub import hub_config

        subfolder, config = hub_config(path, subfolder)
        name = path
    if subfolder and subfolder not in TOKENIZER_FOLDERS:
        name = f"{name}/{subfolder}"
    return _load(path, subfolder, config, name)


def tokenizer_path(name_or_path: str) -> str:
    """Where a source is read from: a shipped tokenizer's or model's folder for its name ("vqgan-f8", "mmgen-emoji",
    from anywhere), else the text as given (a folder, or a Hub repo id)."""
    path = SHIPPED_TOKENIZERS.get(name_or_path, name_or_path)
    return path if os.path.isdir(path) else shipped_folder(path) or path


def find_tokenizer_folder(path: str | Path) -> str | None:
    """The subfolder of a local model folder that holds its tokenizer; None when the folder is the tokenizer."""
    path = Path(path)
    if (path / "config.json").is_file():
        return None
    index = path / "model_index.json"
    if index.is_file():
        components = {k: v for k, v in read_json(index).items() if isinstance(v, list) and len(v) == 2}
        for folder in TOKENIZER_FOLDERS + tuple(k for k, v in components.items() if v[1] in TOKENIZER_CLASSES):
            if folder in components and (path / folder / "config.json").is_file():
                return folder
        listed = [f for f in TOKENIZER_FOLDERS if f in components]
        if listed:  # a pipeline that names its tokenizer, whose folder lacks the config
            raise ValueError(
                f"{path}: its pipeline names a {listed[0]}/ tokenizer, but {listed[0]}/config.json is missing"
            )
        raise ValueError(
            f"{path}: this pipeline has no VQ tokenizer (no {FOLDERS_SAID} component); it holds "
            + ", ".join(components)
        )
    for folder in TOKENIZER_FOLDERS:
        if (path / folder / "config.json").is_file():
            return folder
    raise ValueError(f"{path}: no tokenizer here (expected config.json, or a pipeline with {FOLDERS_SAID})")


def _load(path: str, subfolder: str | None, config: dict, name: str) -> Tokenizer:
    cls = config.get("_class_name")
    if cls not in TOKENIZER_CLASSES:
        where = f"{name}/{subfolder}" if subfolder and not name.endswith(f"/{subfolder}") else name  # named once
        raise ValueError(
            f"{where} holds {cls or 'a model of unknown class'}, not a VQ tokenizer (VQModel or mmgen's VQVAE); "
            "continuous autoencoders such as AutoencoderKL have no codebook"
        )
    model_cls = getattr(importlib.import_module(TOKENIZER_CLASSES[cls]), cls)  # here: diffusers takes seconds
    weights = weights_to_load(Path(path) / (subfolder or ""), name) if os.path.isdir(path) else SAFE_WEIGHTS
    try:
        model = model_cls.from_pretrained(path, subfolder=subfolder, dtype=torch.float32, **weights)
    except OSError as e:
        absent = "safetensors" in str(e) and any(w in str(e) for w in ("no file named", "does not appear to have"))
        if absent and not os.path.isdir(path):  # a Hub repo of pickle weights (.bin) alone
            raise ValueError(f"{name}: no safetensors weights on the Hub (mmgen loads no pickle .bin files)") from None
        raise ValueError(f"could not load the tokenizer {name}: {e}") from e
    return as_tokenizer(model, name)


SAFE_WEIGHTS = {"use_safetensors": True}  # a .bin file is a pickle, which can run code: never loaded


def weights_to_load(folder: Path, name: str) -> dict:
    """`from_pretrained`'s keyword arguments for a local tokenizer folder's weights: safetensors only, and a
    variant's file (diffusion_pytorch_model.fp16.safetensors) where it is the only one. ValueError for a folder
    whose weights are pickles alone."""
    stem = "diffusion_pytorch_model"
    if (folder / f"{stem}.safetensors").is_file() or (folder / f"{stem}.safetensors.index.json").is_file():
        return SAFE_WEIGHTS
    variants = sorted(p.name.split(".")[1] for p in folder.glob(f"{stem}.*.safetensors") if p.name.count(".") == 2)
    if variants:
        return SAFE_WEIGHTS | {"variant": "fp16" if "fp16" in variants else variants[0]}
    if any(folder.glob("*.bin")):
        raise ValueError(
            f"{name}: its weights are pickle files (.bin), which can run code when loaded, so mmgen does not load "
            "them; save the model again with safetensors (model.save_pretrained(folder), diffusers' default)"
        )
    return SAFE_WEIGHTS


def weights_downloaded(files: dict[str, int]) -> int:
    """Bytes a load fetches of a Hub folder's safetensors files {name: bytes}: the plain file or its shards, else
    one variant (as `weights_to_load` chooses in a local folder), never every copy."""
    plain = [n for n in files if n.split(".")[0].split("-")[0] == "diffusion_pytorch_model" and n.count(".") == 1]
    return sum(files[n] for n in plain) if plain else max(files.values(), default=0)


def _read_config(path: Path, name: str) -> dict:
    if not path.is_file():
        raise ValueError(f"{name}: no {path.parent.name}/config.json; not a tokenizer folder")
    return read_json(path)


def read_json(path: Path) -> dict:
    """A JSON object from `path`; ValueError naming the file otherwise."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data
