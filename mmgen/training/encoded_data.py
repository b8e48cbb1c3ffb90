"""The generator's training set, encoded once: token ids from the frozen tokenizer, MiniLM states per caption.

Encoding 60,000 scenes takes minutes on a CPU, so the result is cached on disk (`--cache-dir`) under a hash of
everything it depends on: a resumed run, a second stage or another run on the same data reads it back in a second.
Files are written atomically (a killed run leaves no half file), and any change of data, tokenizer or text
encoder gives another key, so a stale cache is never read.

Dimension letters: N images, h x w token grid, V distinct captions, L text tokens, E text-encoder width.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..data.images import ImageFolder
from ..data.shapes import VERSION, shapes_sample
from ..images import pil_to_tensor
from ..models.text_encoder import MAX_TOKENS, encode_text
from ..models.vqvae import VQVAE
from .processes import print_once

ENCODE_BATCH = 256  # images decoded and encoded at a time: memory stays flat however large the set
SHAPES_SAMPLES = 60_000  # --num-samples for shapes-v1: every shipped recipe's first stage
CROPS_PER_IMAGE = 10  # --num-samples for a folder, per captioned image (the emoji model's recipe: 12,330 of 1,233)


@torch.no_grad()
def encode_dataset(
    vq: VQVAE, tokenizer, text_encoder, items: Callable[[int], tuple[torch.Tensor, str]], n: int
) -> dict:
    """Token ids (N, h, w) of the N = `n` images `items(i)` -> (image (3, H, W), caption) gives, read and encoded
    ENCODE_BATCH at a time (never all decoded at once), and MiniLM states (V, L, E) of every distinct caption
    (plus the empty one, index 0); `caption_index` (N,) points each image at its caption; `captions_cut` (V,)
    marks the captions whose end the text encoder never reads (over MAX_TOKENS word pieces)."""
    ids, captions = [], []
    for start in range(0, n, ENCODE_BATCH):
        images, texts = zip(*(items(i) for i in range(start, min(n, start + ENCODE_BATCH))))
        ids.append(vq.encode(torch.stack(images)).indices.to(torch.int16))
        captions += texts
    vocab = [""] + sorted(set(captions) - {""}, key=lambda c: (len(c), c))  # similar lengths batch together
    index = {c: k for k, c in enumerate(vocab)}
    states, masks = [], []
    for i in range(0, len(vocab), ENCODE_BATCH):  # float16 chunk by chunk (float32 for all: 0.45 GB per 10,000)
        state, mask = encode_text(tokenizer, text_encoder, vocab[i : i + ENCODE_BATCH])
        states.append(state.half())
        masks.append(mask.bool())
    pieces = tokenizer(vocab, truncation=False, verbose=False)["input_ids"]  # [CLS] and [SEP] included
    return {
        "ids": torch.cat(ids),
        "caption_index": torch.tensor([index[c] for c in captions]),
        "text_states": torch.cat(states),
        "text_masks": torch.cat(masks),
        "captions_cut": torch.tensor([len(p) > MAX_TOKENS for p in pieces]),  # (V,) longer than the encoder reads
    }


def shapes_item(seed: int, scale: int = 1) -> Callable[[int], tuple[torch.Tensor, str]]:
    """Scene i of shapes-v1 stream `seed`, drawn at (64·scale)² pixels, as (image, caption), for `encode_dataset`."""

    def item(i: int) -> tuple[torch.Tensor, str]:
        sample = shapes_sample(seed, i, scale)
        return pil_to_tensor(sample.image), sample.caption

    return item


def data_seed(args) -> int:
    """The shapes-v1 stream (or a folder's crops): `--data-seed`, else `--seed` (as before the option existed)."""
    return args.seed if args.data_seed is None else args.data_seed


def default_num_samples(data: str) -> int:
    """`--num-samples` left out: SHAPES_SAMPLES scenes, or CROPS_PER_IMAGE crops of each captioned image of a
    folder, at most SHAPES_SAMPLES (a folder of 12 images took 14 min to encode as 60,000 crops)."""
    if data == "shapes":
        return SHAPES_SAMPLES
    return min(SHAPES_SAMPLES, CROPS_PER_IMAGE * len(ImageFolder(data, captions_required=True).paths))


def load_training_set(args, vq: VQVAE, tokenizer, text_encoder) -> dict:
    """`--num-samples` shapes-v1 scenes of stream `data_seed` (drawn at the size the latent grid decodes to: 64 px
    for 16x16 f4 latents, 128 for f8), or crops of the `--data` folder, encoded."""
    size = args.sample_size * vq.downsample_factor
    if args.data == "shapes":
        if size not in (64, 128, 256):
            raise ValueError(
                f"shapes-v1 is drawn at 64, 128 or 256 px, but a {args.sample_size}x{args.sample_size} latent grid of "
                f"an f{vq.downsample_factor} tokenizer decodes to {size} px: change --sample-size"
            )
        item = shapes_item(data_seed(args), size // 64)
        return encode_dataset(vq, tokenizer, text_encoder, item, args.num_samples)
    folder = ImageFolder(args.data, args.num_samples, size, data_seed(args), captions_required=True)

    def item(i: int) -> tuple[torch.Tensor, str]:
        it = folder[i]
        return it["pixel_values"], it["text"]

    data = encode_dataset(vq, tokenizer, text_encoder, item, len(folder))
    n = len(folder.paths)
    if folder.skip_summary():
        used = min(n, args.num_samples) - len(folder.failed)
        print_once(f"{args.data}: {used} captioned images used, {folder.skip_summary()}")
    if args.num_samples < n:
        print_once(
            f"{args.data}: --num-samples {args.num_samples} encodes the first {args.num_samples} of its {n} images"
        )
    return data


CAPTIONS_READ = 2  # how a folder's metadata is read: 2 keeps every line's captions of a file (1: its last line's)


def cache_key(args, vq: VQVAE, text_encoder) -> str:
    """What the encoded training set depends on: the data (shapes-v1's seed and count, or the folder's files), the
    image size, the tokenizer's encoder and codebook (not its decoder, which no latent goes through: a decoder trained
    on, as mmgen-base's, keeps the cache) and the text encoder. Any change to those gives another key, so a stale
    cache is never read."""
    h = hashlib.sha256()
    for name, tensor in sorted(vq.state_dict().items()):
        if name.startswith("decoder."):
            continue
        h.update(name.encode() + tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    if args.data == "shapes":
        data = [VERSION]
    else:  # the folder's files (not a training run's inside it: its checkpoints change); the seed picks the crops
        runs = {log.parent for log in Path(args.data).rglob("train_log.jsonl")}
        files = sorted(p for p in Path(args.data).rglob("*") if p.is_file() and not runs.intersection(p.parents))
        data = [str(Path(args.data).resolve()), [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]]
        data.append(CAPTIONS_READ)
    image_size = args.sample_size * vq.downsample_factor
    key = [data, data_seed(args), args.num_samples, image_size, text_encoder.name_or_path, MAX_TOKENS]
    h.update(json.dumps(key).encode())
    return h.hexdigest()[:16]


def cached_training_set(args, vq: VQVAE, tokenizer, text_encoder) -> dict:
    """`load_training_set`, read from `--cache-dir` when this exact set was encoded before, else encoded and
    written there ('' encodes every time)."""
    if not args.cache_dir:
        return load_training_set(args, vq, tokenizer, text_encoder)
    path = Path(args.cache_dir).expanduser() / f"encoded-{cache_key(args, vq, text_encoder)}.safetensors"
    if path.exists():
        try:
            data = load_file(path)
            data.pop("num_objects", None)  # caches written before the two-object share was removed hold it
            states = data.pop("text_states")  # stored up to the longest caption; padded back to MAX_TOKENS
            data["text_states"] = F.pad(states, (0, 0, 0, MAX_TOKENS - states.shape[1]))
            data["text_masks"] = F.pad(data["text_masks"], (0, MAX_TOKENS - states.shape[1]))
            print(f"read the encoded training set from {path}")
            return data
        except (SafetensorError, OSError, KeyError) as e:  # cut short, say by a full disk: it is only a cache
            print(f"the cached training set {path} is unreadable ({e}): encoding it again")
    data = load_training_set(args, vq, tokenizer, text_encoder)
    longest = int(data["text_masks"].sum(1).max())
    tensors = {k: v.contiguous() for k, v in data.items()}
    tensors["text_states"] = data["text_states"][:, :longest].contiguous()
    tensors["text_masks"] = data["text_masks"][:, :longest].contiguous()
    partial = path.with_suffix(f".{os.getpid()}.tmp")  # a run killed while writing leaves no half file behind
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, partial)
        partial.replace(path)
    except (SafetensorError, OSError) as e:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        print(f"could not cache the encoded training set in {path.parent} ({e}): training goes on without it")
        return data
    print(f"cached the encoded training set in {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    return data


def latent_scaling_factor(vq: VQVAE, ids: torch.Tensor) -> float:
    """1 / std of the code vectors over the training set, so the diffused latents have unit variance."""
    return float(1.0 / vq.quantizer.indices_to_codes(ids[:4096].long()).std())


class Batch(NamedTuple):
    """A training batch (B images)."""

    latents: torch.Tensor  # (B, C, h, w), scaled to unit variance
    ids: torch.Tensor  # (B, h, w) their token ids
    text_states: torch.Tensor  # (B, L, E) float32
    text_masks: torch.Tensor  # (B, L)


def draw_batch(
    data: dict, codebook: torch.Tensor, scaling: float, batch_size: int, caption_dropout: float, gen
) -> Batch:
    """A training batch drawn uniformly from `gen`, each caption replaced by the empty prompt with probability
    `caption_dropout` (which teaches the null condition that classifier-free guidance uses)."""
    pick = torch.randint(0, len(data["ids"]), (batch_size,), generator=gen)
    caption = data["caption_index"][pick].clone()
    caption[torch.rand(batch_size, generator=gen) < caption_dropout] = 0  # 0 = the empty prompt
    ids = data["ids"][pick].long()
    latents = F.embedding(ids, codebook).permute(0, 3, 1, 2) * scaling  # (B, C, h, w)
    return Batch(latents, ids, data["text_states"][caption].float(), data["text_masks"][caption])
