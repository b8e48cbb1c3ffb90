"""A run's trajectory kept small, and its frames drawn when someone looks at them.

A session keeps its last run for the Trajectory tab. Drawn frames (x_t, x0, tokens, changes: four images a step)
took about 290 kB a step, 8.6 MB a default run, and lived as long as the session. A `Trajectory` keeps what
the frames are drawn from: per step, the latents after it in float32 (where a branch starts), the sampler's
noise generator state (5 kB on a CPU: a branch continues the run's noise), the x0 estimate's tokens in int16 and
the DiT's input in float16 (x_t; each word's attention is found from it when shown), about 18 kB a step for a
16x16 grid of 8 channels. `FrameDrawer` draws a step when it is shown; the only model call,
decoding x0's tokens, runs on the model thread and its image is kept in one cache for the whole app, bounded,
so scrubbing back and forth decodes each step once.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import PIL.Image
import torch

from ..charts import step_bars
from ..viz import LABEL_ROOM, change_map, latent_rgb, principal_axes, token_map, upscale_nearest
from .compute import ModelThread

if TYPE_CHECKING:  # the page is served before diffusers is imported (app.py)
    from ..denoising import StepOutput

_run_ids = itertools.count()


class StepView(NamedTuple):
    """One step of a run, in the order of the Trajectory tab's step views (`TrajectoryTab.views`)."""

    x_t: PIL.Image.Image  # what the DiT read at the step, on the codebook's top 3 principal axes
    x0: PIL.Image.Image  # the step's clean-image estimate, decoded from its tokens
    tokens: PIL.Image.Image  # the estimate's token map
    changed: PIL.Image.Image  # the tokens changed since the previous step
    changes: PIL.Image.Image  # tokens changed per step, the step marked
    info: str


@dataclass(eq=False)
class Trajectory:
    """Every step of one image's run. Dimension letters: C latent channels, h x w token grid."""

    prompt: str = ""
    guided_down_to: float = 0.0  # the lowest timestep guidance runs at (0: every step guided, or none)
    timesteps: list[float] = field(default_factory=list)
    latents: list[torch.Tensor] = field(default_factory=list)  # (C, h, w) float32: after each step (a branch's start)
    # the sampler's noise generator after each step (None: a sampler that draws no noise as it steps), so that a
    # branch keeps the run's own noise to come: left as it was, it is the run again
    noise_states: list[tuple[torch.Tensor, torch.device] | None] = field(default_factory=list)
    tokens: list[torch.Tensor] = field(default_factory=list)  # (h, w) int16: each step's x0 estimate as tokens
    inputs: list[torch.Tensor] = field(default_factory=list)  # (C, h, w) float16: x_t, what the DiT read at each step
    words: list[str] = field(default_factory=list)  # the prompt's words, as the text encoder splits them
    attention: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> (words, h', w') float16, once shown
    key: int = field(default_factory=lambda: next(_run_ids))  # names this run in the frame cache

    def record(
        self, pipe, out: StepOutput, model_input: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> None:
        """Keep step `out` of image 0, the DiT's input at that step (`DenoisingRun.model_input`), from which
        `replay_attention` finds each word's attention when someone looks, and the state of the sampler's noise
        `generator` after it; call on the model thread: finding x0's tokens is a model call (unless the step
        snapped: then they come with it)."""
        self.timesteps.append(float(out.timestep))
        self.latents.append(out.latents[0].detach().float().clone())
        noise = generator if isinstance(generator, torch.Generator) else None
        self.noise_states.append(None if noise is None else (noise.get_state(), noise.device))
        tokens = out.tokens if out.tokens is not None else pipe.latents_to_tokens(out.pred_x0[:1])  # (B, h, w)
        self.tokens.append(tokens[0].to(torch.int16))
        if model_input is not None:
            self.inputs.append(model_input[0].detach().to(torch.float16).clone())

    def replay_attention(self, pipe, steps: list[int]) -> None:
        """Each word's attention at `steps` not found yet, from the DiT's inputs there, in one batch
        (`attention.replay_word_grids`): on the model thread. A replayed row costs what the step's conditional
        half did, so only the steps someone looks at are replayed. Nothing is found when the prompt cannot be
        split into words."""
        from ..attention import replay_word_grids  # imports transformers, which the page is served without

        missing = [k for k in steps if k not in self.attention and 0 <= k < len(self.inputs)]
        if not missing:
            return
        inputs, timesteps = torch.stack([self.inputs[k] for k in missing]), torch.tensor(self.timesteps)[missing]
        try:
            words, grids = replay_word_grids(pipe, self.prompt, inputs, timesteps)
        except ValueError:
            return  # the prompt's words do not match its tokens: no attention view (never an error)
        self.words = words
        self.attention.update(zip(missing, grids.to(torch.float16)))

    def __len__(self) -> int:
        return len(self.tokens)

    def changed(self, k: int) -> torch.Tensor:
        """(h, w) bool: the tokens of step k that differ from step k - 1's (all of them at step 0)."""
        if k == 0:
            return torch.ones(self.tokens[0].shape, dtype=torch.bool)
        return self.tokens[k] != self.tokens[k - 1]

    def unguided_from(self) -> int | None:
        """The first step run without guidance (t below `guided_down_to`), where the run has one."""
        return next((k for k, t in enumerate(self.timesteps) if t < self.guided_down_to), None)

    def counts(self) -> list[int]:
        """Tokens changed at each step."""
        return [int(self.changed(k).sum()) for k in range(len(self))]

    def start_latents(self, k: int) -> torch.Tensor:
        """(1, C, h, w) float32: x_t after step k, where a branch from step k starts."""
        return self.latents[k][None].float()

    def noise_after(self, k: int) -> torch.Generator | None:
        """A generator in the state the run's was after step k (it draws the run's noise to come), or None."""
        kept = self.noise_states[k] if k < len(self.noise_states) else None
        if kept is None:
            return None
        state, device = kept
        generator = torch.Generator(device=device)  # a GPU generator's state is not a CPU one's
        generator.set_state(state)
        return generator


class FrameDrawer:
    """Draws a trajectory's steps for the Trajectory tab; decoded x0 images are cached (at most `cache_size`,
    least recently used dropped first, about 12 kB each at 64x64 px)."""

    def __init__(self, pipe, compute: ModelThread, display_side: int, cache_size: int = 512):
        self.pipe, self.compute, self.display_side, self.cache_size = pipe, compute, display_side, cache_size
        self._x0: OrderedDict[tuple[int, int], PIL.Image.Image] = OrderedDict()
        self._lock = threading.Lock()
        self._axes: torch.Tensor | None = None

    def x0(self, traj: Trajectory, k: int) -> PIL.Image.Image:
        """Step k's x0 estimate, decoded from its tokens."""
        key = (traj.key, k)
        with self._lock:
            if key in self._x0:
                self._x0.move_to_end(key)
                return self._x0[key]
        image = self.compute(lambda: self.pipe.decode_tokens(traj.tokens[k][None].long())[0])
        with self._lock:
            self._x0[key] = image
            while len(self._x0) > self.cache_size:
                self._x0.popitem(last=False)
        return image

    def all_x0(self, traj: Trajectory) -> list[PIL.Image.Image]:
        """Every step's x0 (exports): one batched decode, not cached."""
        return self.compute(lambda: self.pipe.decode_tokens(torch.stack(traj.tokens).long()))

    def cached(self) -> int:
        return len(self._x0)

    def view(self, traj: Trajectory, k: int, title: str | None = None) -> StepView:
        """Step k for the Trajectory tab's views (`title` replaces the info line's start)."""
        side = self.display_side
        tokens = traj.tokens[k]
        cell = max(2, side // max(tokens.shape))
        changed = traj.changed(k)
        n, total = int(changed.sum()), tokens.numel()
        title = title or f"**Step {k + 1} of {len(traj)}**"
        changes = f"{n} of {total} tokens changed since the previous step" if k else f"the first guess: {total} tokens"
        info = f"{title} (timestep {traj.timesteps[k]:.0f}) · {changes}"
        return StepView(
            upscale_nearest(self.x_t(traj, k), side),
            upscale_nearest(self.x0(traj, k), side),
            token_map(tokens, self.pipe.vqvae.config.num_codes, cell=cell),
            change_map(changed, cell=cell),
            step_bars(traj.counts(), current=k, top=LABEL_ROOM, unguided_from=traj.unguided_from()),
            info,
        )

    def x_t(self, traj: Trajectory, k: int) -> PIL.Image.Image:
        """x_t at step k's timestep in colour, projected on the codebook's top 3 principal axes: what the DiT read
        there (the scheduler's scaled input: sqrt(abar) x0 + sqrt(1 - abar) noise for every sampler, so an
        Euler-family x0 + sigma noise is not drawn saturated). Step 0 is the starting noise. The latents after the
        step, which the run kept before, are the next step's input."""
        if self._axes is None:
            self._axes = principal_axes(self.pipe.vqvae.quantizer.codebook.detach())
        x_t = traj.inputs[k] if k < len(traj.inputs) else traj.latents[k]  # (C, h, w)
        return latent_rgb(x_t.float() / self.pipe.scaling_factor, self._axes, scale=1.0)
