"""What every tab of the explorer shares: the pipeline (loaded once, in the background from the start), facts
about its models, the app's limits, the one thread model calls run on, the gate that admits model jobs, the frame
drawer and the tokenizers (the generator's own and those loaded beside it). Tabs read these from an `AppContext`;
nothing here runs a model at import."""

from __future__ import annotations

import re
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from ..codebook import reference_images
from ..images import load_image
from ..model_paths import ASSETS
from ..vocabulary import Vocabulary
from .compute import ModelThread
from .frames import FrameDrawer
from .jobs import JobGate
from .limits import Limits
from .loading import LOAD_FAILED, ModelFacts, ModelLoading
from .tokenizer_registry import TokenizerRegistry, preload_sources

if TYPE_CHECKING:
    from ..models.vqvae import VQVAE
    from ..pipeline import MMGenPipeline

SHIPPED_MODEL_CARD = ASSETS / "mmgen-base" / "README.md"
DISPLAY_SIDE = 256  # small images are shown enlarged (nearest neighbour) to at least this side
WIDE_VIEW = 320  # px: a view narrower than this in a row of two wraps under it (a phone), not squeezed beside it
SHAPES_PROMPTS = (  # the Generate tab's examples for a shapes-v1 model
    "a large red circle in the top left on a white background",
    "a small blue star at the bottom on a black background",
    "a green triangle to the left of a yellow square on a gray background",
    "a purple diamond above an orange cross on a white background",
    "a cyan circle",
)


@dataclass(frozen=True)
class AppContext:
    """The pipeline (loaded, or loading in the background: `loading`), the name it is shown (and written into run
    cards and token files) under, and the limits it is served with. Building the page reads only `facts`; the
    first model call waits for the pipeline."""

    loading: ModelLoading
    model_name: str
    limits: Limits = field(default_factory=Limits)
    examples_dir: Path = ASSETS / "examples"  # example uploads, and the photos of the codebook's reference set
    compute: ModelThread = field(default_factory=ModelThread)
    jobs: JobGate | None = None  # the gate that admits model jobs (default: one of its own, on `limits`)
    example_prompts: tuple[str, ...] = SHAPES_PROMPTS  # the Generate tab's examples
    compared_with: tuple[str, ...] = ()  # tokenizers loaded at start and compared with the model's own by default

    def __post_init__(self):
        if self.jobs is None:
            object.__setattr__(self, "jobs", JobGate(self.limits))

    @property
    def pipe(self) -> MMGenPipeline:
        return self.loading.result()

    @property
    def facts(self) -> ModelFacts:
        return self.loading.facts

    @property
    def matmuls(self) -> str:
        """The DiT's matmul dtype, as run cards record it: "bf16" (app.py's MMGEN_BF16) or "float32"."""
        return "bf16" if self.facts.bf16 else "float32"

    @cached_property
    def frames(self) -> FrameDrawer:
        return FrameDrawer(self.pipe, self.compute, DISPLAY_SIDE)

    @cached_property
    def tokenizers(self) -> TokenizerRegistry:
        """The generator's tokenizer (under `model_name`, ready when the pipeline is), those MMGEN_TOKENIZERS
        names (loading in the background from the first use on) and those visitors load."""
        facts = self.facts
        label = f"{self.model_name} ({facts.num_codes:,} codes, f{facts.downsample_factor}) · the generator's"
        registry = TokenizerRegistry(
            own_tokenizer(self.loading, self.model_name),
            self.model_name,
            self.compute,
            self.reference_set,
            self.limits.max_tokenizers,
            own_label=label,
            max_download_mb=self.limits.max_tokenizer_mb,
        )
        registry.preload([*self.compared_with, *preload_sources()], after=self.loading.future)
        return registry

    @cached_property
    def vocabulary(self) -> Vocabulary | None:
        """The words of the generator's training captions (saved beside its transformer), or None."""
        return Vocabulary.for_pipeline(self.pipe)

    def reference_set(self, downsample_factor: int) -> list[Image.Image]:
        """What a tokenizer's codebook usage is counted over: held-out shapes-v1 scenes at its size, and the
        example photos."""
        photos = [load_image(p) for p in self.example_images() if "shapes" not in Path(p).name]
        return reference_images(photos=photos, downsample_factor=downsample_factor)

    @property
    def vq(self) -> VQVAE:
        return self.pipe.vqvae

    @property
    def num_codes(self) -> int:
        return self.facts.num_codes

    @property
    def grid_side(self) -> int:
        """Tokens per side of a generated image."""
        return self.facts.grid_side

    def scheduler_name(self) -> str | None:
        """The short name (a SCHEDULERS key) of the pipeline's scheduler, for the dropdown's default; None for a
        class without one (the dropdown left empty runs the model's own)."""
        return self.facts.scheduler

    def scheduler_label(self) -> str:
        """The model's own sampler as the run info names it: its short name, else its diffusers class."""
        return self.facts.scheduler or self.facts.scheduler_class

    def example_images(self) -> list[str]:
        """The example uploads: the photos, and the shapes scenes drawn at the size the generator paints (64 px:
        shapes-N.png, 128: shapes-N-128.png), so that their token grids are the ones its repaint takes."""
        if not self.examples_dir.is_dir():
            return []
        side = self.facts.image_side
        sized = re.compile(r"shapes-\d+" + ("" if side == 64 else f"-{side}") + r"\.png")
        paths = sorted(self.examples_dir.glob("*.png"))
        return [str(p) for p in paths if not p.name.startswith("shapes-") or sized.fullmatch(p.name)]


def own_tokenizer(loading: ModelLoading, name: str) -> Future:
    """A Future of the pipeline's tokenizer, done when the pipeline is loaded."""
    from ..tokenizers import as_tokenizer

    own: Future = Future()

    def done(pipeline: Future) -> None:
        if pipeline.exception() is not None:
            own.set_exception(ValueError(LOAD_FAILED))
        else:
            own.set_result(as_tokenizer(pipeline.result().vqvae, name))

    loading.future.add_done_callback(done)
    return own
