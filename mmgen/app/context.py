"""What every tab of the explorer shares: the pipeline (loaded once, at start), facts about its models, the app's
limits, the one thread model calls run on, the gate that admits model jobs, the frame drawer and the tokenizers
(the generator's own and those loaded beside it). Tabs read these from an `AppContext`; nothing here runs a model
at import."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from PIL import Image

from ..codebook import reference_images
from ..data.images import load_image
from ..models.vqvae import VQVAE
from ..pipeline import SCHEDULERS, MMGenPipeline
from ..tokenizers import as_tokenizer
from .compute import ModelThread
from .frames import FrameDrawer
from .jobs import JobGate
from .limits import Limits
from .tokenizers import TokenizerRegistry, preload_sources

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SHIPPED_MODEL_CARD = ASSETS / "mmgen-base" / "README.md"
DISPLAY_SIDE = 256  # small images are shown enlarged (nearest neighbour) to at least this side


@dataclass(frozen=True)
class AppContext:
    """The loaded pipeline, the name it is shown (and written into run cards and token files) under, and the
    limits it is served with."""

    pipe: MMGenPipeline
    model_name: str
    limits: Limits = field(default_factory=Limits)
    examples_dir: Path = ASSETS / "examples"  # example uploads, and the photos of the codebook's reference set
    compute: ModelThread = field(default_factory=ModelThread)

    @cached_property
    def jobs(self) -> JobGate:
        return JobGate(self.limits)

    @cached_property
    def frames(self) -> FrameDrawer:
        return FrameDrawer(self.pipe, self.compute, DISPLAY_SIDE)

    @cached_property
    def tokenizers(self) -> TokenizerRegistry:
        """The generator's tokenizer (under `model_name`), those MMGEN_TOKENIZERS names (loading in the background
        from the first use on) and those visitors load."""
        own = as_tokenizer(self.vq, self.model_name)
        registry = TokenizerRegistry(
            own, self.model_name, self.compute, self.reference_set, self.limits.max_tokenizers
        )
        registry.preload(preload_sources())
        return registry

    def reference_set(self) -> list[Image.Image]:
        """What codebook usage is counted over: held-out shapes-v1 scenes and the example photos."""
        photos = [load_image(p) for p in self.example_images() if "shapes" not in Path(p).name]
        return reference_images(photos=photos)

    @property
    def vq(self) -> VQVAE:
        return self.pipe.vqvae

    @property
    def num_codes(self) -> int:
        return self.vq.config.num_codes

    @property
    def grid_side(self) -> int:
        """Tokens per side of a generated image."""
        return self.pipe.transformer.config.sample_size

    def scheduler_name(self) -> str:
        """The short name (SCHEDULERS key) of the pipeline's scheduler, for the dropdown's default."""
        pipe = self.pipe
        return next((k for k, cls in SCHEDULERS.items() if isinstance(pipe.scheduler, cls)), next(iter(SCHEDULERS)))

    def example_images(self) -> list[str]:
        return sorted(str(p) for p in self.examples_dir.glob("*.png")) if self.examples_dir.is_dir() else []
