"""What every tab of the explorer shares: the pipeline (loaded once, at start), facts about its models, and the
app's limits. Tabs read these from an `AppContext`; nothing here runs a model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..models.vqvae import VQVAE
from ..pipeline import SCHEDULERS, MMGenPipeline
from ..settings import MAX_CANDIDATES

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SHIPPED_MODEL_CARD = ASSETS / "mmgen-base" / "README.md"
DISPLAY_SIDE = 256  # small images are shown enlarged (nearest neighbour) to at least this side
MAX_STEPS = 100  # the sliders' range; the pipeline itself accepts up to 1000
MAX_APP_CANDIDATES = min(8, MAX_CANDIDATES)  # the slider's range: 8 noises cost 2.8 runs' time (make bench)


@dataclass(frozen=True)
class AppContext:
    """The loaded pipeline and the name it is shown (and written into run cards and token files) under."""

    pipe: MMGenPipeline
    model_name: str
    examples_dir: Path = ASSETS / "examples"  # example uploads, and the photos of the codebook's reference set

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
