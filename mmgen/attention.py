"""Per-word attention maps: where in the image the DiT reads each word of the prompt, step by step.

What DAAM (Tang et al., 2023, https://arxiv.org/abs/2210.04885) and attention-map-diffusers do for Stable
Diffusion's U-Net, for this DiT: every block's cross-attention gives each image patch a distribution over the
prompt's tokens; averaged over blocks, heads and steps and upsampled to the image, the share of a word is a map of
where the model put it. Nothing changes in the sampling loop or the DiT: the recorder hooks the blocks'
cross-attention modules (`register_forward_hook(..., with_kwargs=True)`) for as long as its `with` block lasts, and
recomputes softmax(q k^T / sqrt(d)) from the hooked inputs (the DiT's fused attention kernel never forms it).

    with AttentionRecorder(pipe, prompt) as rec:
        out = pipe(prompt, generator=torch.Generator().manual_seed(0))
    maps = rec.word_maps()        # {"a": (64, 64) float array, "large": ..., "red": ..., ...}, prompt order
    maps = rec.word_maps(step=5)  # one step
    words, grids = replay_word_grids(pipe, prompt, inputs, timesteps)  # after a run, from the DiT's inputs

Words are the text encoder's words: WordPiece pieces ("cy", "##an") are summed into their word ("cyan"), [CLS],
[SEP] and padding are left out, and a word that appears twice keys as "a", "a (2)". A map holds the share of
attention the word received at each pixel (0..1; all words and the special tokens together sum to 1). With
guidance, only the conditional half of the batch is read. The recorder follows one sampling run: the last one that
ran in the `with` block, or `run` (a `DenoisingRun`) when given, so the runs that choose among candidate noises, or
other users' runs through a shared model, are not mixed in.

Dimension letters: R rows of a DiT batch, B images, nh heads, T image patches (h' x w'), L text tokens.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from .models.text_encoder import MAX_TOKENS


@dataclass
class _Forward:
    """What one DiT forward pass left: its run, timestep, and the images' attention summed over blocks."""

    run: int  # index into the recorder's runs (one per text context)
    timestep: float
    mask: torch.Tensor  # (B, L) bool: the images' real tokens
    attention: torch.Tensor  # (B, T, L) summed over blocks, averaged over heads
    blocks: int = 0


@torch.no_grad()
def cross_attention_probs(module, x: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, nh, T, L) the attention probabilities of a cross-attention module (`mmgen.models.dit.Attention`) for its
    input x (B, T, D) over text keys k (B, nh, L, D/nh), padding (`mask` False) at zero: softmax(q k^T / sqrt(d)),
    in float32 whatever the autocast."""
    with torch.autocast(x.device.type, enabled=False):
        q = rearrange(module.q(x.float()), "b t (h d) -> b h t d", h=module.num_heads)  # (B, nh, T, D/nh)
        scores = q @ k.float().transpose(-1, -2) / q.shape[-1] ** 0.5  # (B, nh, T, L)
        if mask is not None:
            scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
        return scores.softmax(dim=-1)


def prompt_words(tokenizer, prompt: str) -> list[tuple[str, list[int]]]:
    """[(word, its token positions)] in prompt order, special tokens left out; repeated words get " (2)", ..."""
    enc = tokenizer(prompt, truncation=True, max_length=MAX_TOKENS, return_offsets_mapping=True)
    spans: dict[int, list] = {}  # word id -> [start, end, positions]
    for pos, (word, (start, end)) in enumerate(zip(enc.word_ids(), enc["offset_mapping"])):
        if word is None:
            continue
        span = spans.setdefault(word, [start, end, []])
        span[1] = end
        span[2].append(pos)
    words, seen = [], {}
    for start, end, positions in spans.values():
        text = prompt[start:end]
        seen[text] = seen.get(text, 0) + 1
        words.append((text if seen[text] == 1 else f"{text} ({seen[text]})", positions))
    return words


class AttentionRecorder:
    """Context manager recording the DiT's cross-attention during a sampling run of `prompt` (a text, or the list
    passed to the pipeline, with `num_images_per_prompt`); `word_maps` reads it back per word. `run`: record only
    that `DenoisingRun` (e.g. one driven step by step while other runs share the model)."""

    def __init__(self, pipe, prompt: str | list[str], num_images_per_prompt: int = 1, run=None):
        self.pipe = pipe
        self.prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not self.prompts:
            raise ValueError("`prompt` must be a text or a non-empty list of texts")
        self.num_images = len(self.prompts) * num_images_per_prompt
        self.num_images_per_prompt = num_images_per_prompt
        self._only = None if run is None else run.text_context.kv[0][0]
        self._runs: list[torch.Tensor] = []  # one text-context key tensor per run seen (held, so never reused)
        self._forwards: list[_Forward] = []
        self._local = threading.local()  # the forward in progress, per thread: a shared model may run several
        self._handles = []

    # ---------------------------------------------------------------- hooks
    def __enter__(self) -> AttentionRecorder:
        dit = self.pipe.transformer
        self._handles = [dit.register_forward_pre_hook(self._on_forward, with_kwargs=True)]
        self._handles += [b.cross.register_forward_hook(self._on_cross, with_kwargs=True) for b in dit.blocks]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _run_of(self, key: torch.Tensor) -> int | None:
        """Which run a forward belongs to: runs are told apart by the storage of their text keys (a run's steps
        pass its text context, or its conditional rows, which are views of the same storage)."""
        ptr = key.untyped_storage().data_ptr()
        if self._only is not None and ptr != self._only.untyped_storage().data_ptr():
            return None
        for i, seen in enumerate(self._runs):
            if seen.untyped_storage().data_ptr() == ptr:
                return i
        self._runs.append(key)
        return len(self._runs) - 1

    def _on_forward(self, module, args, kwargs) -> None:
        context, sample = kwargs.get("text_context"), args[0] if args else kwargs.get("sample")
        timestep = args[1] if len(args) > 1 else kwargs.get("timestep")
        self._local.current = None
        if context is None or context.mask is None or sample.shape[0] < self.num_images:
            return  # not a sampling run's call (the pipeline always passes a prepared text context)
        run = self._run_of(context.kv[0][0])
        if run is None:
            return
        B, L = self.num_images, context.mask.shape[1]
        T = sample.shape[2] * sample.shape[3] // module.config.patch_size**2
        # the conditional rows are the batch's last B: [uncond, cond] with guidance, [cond] without
        self._local.current = _Forward(
            run, float(torch.as_tensor(timestep).reshape(-1)[0]), context.mask[-B:].cpu(), torch.zeros(B, T, L)
        )
        self._forwards.append(self._local.current)

    def _on_cross(self, module, args, kwargs, output) -> None:
        current = getattr(self._local, "current", None)
        if current is None:
            return
        B, mask = self.num_images, kwargs.get("mask")
        probs = cross_attention_probs(module, args[0][-B:], kwargs["kv"][0][-B:], None if mask is None else mask[-B:])
        current.attention += probs.mean(dim=1).cpu()  # (B, T, L): heads averaged, blocks summed
        current.blocks += 1

    # ---------------------------------------------------------------- reading back
    @property
    def steps(self) -> list[_Forward]:
        """The recorded run's DiT passes, one per sampling step, in order."""
        if not self._runs:
            return []
        last = self._forwards[-1].run
        return [f for f in self._forwards if f.run == last and f.blocks]

    @property
    def timesteps(self) -> list[float]:
        return [f.timestep for f in self.steps]

    def token_attention(self, step: int | None = None, index: int = 0) -> torch.Tensor:
        """(h', w', L) image image `index`'s attention per patch over its text tokens, averaged over blocks, heads
        and the recorded steps (or at `step`, an index into `steps`)."""
        steps = self.steps
        if not steps:
            raise ValueError("nothing recorded: run the pipeline inside the recorder's `with` block")
        if not 0 <= index < self.num_images:
            raise ValueError(f"`index` must be in 0..{self.num_images - 1}, got {index}")
        if step is not None and not -len(steps) <= step < len(steps):
            raise ValueError(f"`step` must be in 0..{len(steps) - 1}, got {step}")
        chosen = steps if step is None else [steps[step]]
        attention = torch.stack([f.attention[index] / f.blocks for f in chosen]).mean(0)  # (T, L)
        side = self.pipe.transformer.config.sample_size // self.pipe.transformer.config.patch_size
        return rearrange(attention, "(h w) l -> h w l", h=side)

    def word_grids(self, step: int | None = None, index: int = 0) -> dict[str, torch.Tensor]:
        """{word: (h', w') float32 map on the patch grid} for image `index`, in prompt order: each word's share of
        the attention (its pieces summed), averaged over blocks, heads and steps, or at `step` alone."""
        attention = self.token_attention(step, index)  # (h', w', L)
        prompt = self.prompts[index // self.num_images_per_prompt]
        words = prompt_words(self.pipe.tokenizer, prompt)
        real = int(self.steps[-1].mask[index].sum())
        if real != 2 + sum(len(p) for _, p in words):  # [CLS] + pieces + [SEP]
            raise ValueError(f"the recorded run has {real} text tokens where {prompt!r} has another count")
        return {word: attention[..., positions].sum(-1) for word, positions in words}

    def word_maps(self, step: int | None = None, index: int = 0) -> dict[str, np.ndarray]:
        """`word_grids` upsampled (bilinear) to image resolution: {word: (H, W) float32 array}."""
        grids = self.word_grids(step, index)
        side = self.pipe.image_size
        per_word = torch.stack(list(grids.values()))  # (words, h', w')
        up = F.interpolate(per_word[None], size=(side, side), mode="bilinear", align_corners=False)[0]
        return {word: m.numpy().astype(np.float32) for word, m in zip(grids, up)}


@torch.no_grad()
def replay_word_grids(
    pipe, prompt: str, inputs: torch.Tensor, timesteps: torch.Tensor, batch_size: int = 32
) -> tuple[list[str], torch.Tensor]:
    """Each word's attention at steps already taken, from what the DiT read at them: `inputs` (N, C, h, w), the
    conditional rows of the DiT's input at N steps (`DenoisingRun.model_input`), at `timesteps` (N,). The DiT runs
    again on the conditional text alone, batch_size steps at a time; a row's attention does not depend on the
    rest of its batch, so this is the run's own attention (`word_grids` at each step), computed when someone
    looks. Returns (the words, (N, words, h', w') float32)."""
    device = pipe._execution_device
    _, context = pipe.prepare_text_context(prompt, device, min(batch_size, len(inputs)), guidance_scale=1.0)
    grids = []
    for start in range(0, len(inputs), batch_size):
        x = inputs[start : start + batch_size].to(device, pipe.transformer.dtype)
        t = timesteps[start : start + batch_size].to(device)
        with AttentionRecorder(pipe, prompt, num_images_per_prompt=len(x)) as recorder, pipe.autocast(device):
            pipe.transformer(x, t, text_context=context.rows(slice(0, len(x))))
        per_row = [recorder.word_grids(step=-1, index=i) for i in range(len(x))]
        grids += [torch.stack(list(g.values())) for g in per_row]
    return list(per_row[0]), torch.stack(grids)


def peak(word_map: np.ndarray) -> tuple[int, int]:
    """(x, y) of a map's maximum, in pixels."""
    y, x = np.unravel_index(int(np.argmax(word_map)), word_map.shape)
    return int(x), int(y)
