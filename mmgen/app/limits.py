"""What one visitor may ask of a shared Space: the budget of a run, the queue, how long a session is kept, how
large an upload or a request may be. Read once at start from the environment (a Space's variables), so a host
raises or lowers them without touching code:

| variable | default | what |
|---|---:|---|
| MMGEN_MAX_STEPS | 100 | sampling steps per image (the Steps slider's end) |
| MMGEN_MAX_CANDIDATES | 8 | starting noises per image (the Candidates slider's end) |
| MMGEN_MAX_JOB_SECONDS | 60 | a model job still running after this is stopped |
| MMGEN_QUEUE_SIZE | 16 | jobs waiting at once, all visitors together |
| MMGEN_SESSION_MINUTES | 30 | a session's run and tokens are dropped this long after they were made |
| MMGEN_MAX_UPLOAD_MB | 10 | an uploaded file |
| MMGEN_MAX_UPLOAD_MEGAPIXELS | 16 | an uploaded image, read from its header before anything is decoded |
| MMGEN_MAX_TOKENIZERS | 4 | tokenizers that visitors loaded, kept at once (least recently used go first) |
| MMGEN_MAX_TOKENIZER_MB | 1024 | a tokenizer a visitor loads from the Hub (its weights, checked before the download) |

`Limits.check_sampling` is the app's one check of sampling settings: the library's (`mmgen.settings`) with the
sliders' bounds, every entry point (controls, API, run cards) alike; a value over the budget is refused with a
message that names the limit.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..settings import MAX_CANDIDATES, MAX_STEPS, SamplingSettings

MAX_GUIDANCE = 10.0  # the Guidance sliders' end; the library accepts any guidance >= 0
ENV = {  # field -> the environment variable that sets it
    "max_steps": "MMGEN_MAX_STEPS",
    "max_candidates": "MMGEN_MAX_CANDIDATES",
    "job_seconds": "MMGEN_MAX_JOB_SECONDS",
    "queue_size": "MMGEN_QUEUE_SIZE",
    "session_minutes": "MMGEN_SESSION_MINUTES",
    "max_upload_mb": "MMGEN_MAX_UPLOAD_MB",
    "max_upload_megapixels": "MMGEN_MAX_UPLOAD_MEGAPIXELS",
    "max_tokenizers": "MMGEN_MAX_TOKENIZERS",
    "max_tokenizer_mb": "MMGEN_MAX_TOKENIZER_MB",
}
BUDGET = (("num_inference_steps", "max_steps", "steps"), ("num_candidates", "max_candidates", "candidates"))
LIBRARY_MAX = {"max_steps": MAX_STEPS, "max_candidates": MAX_CANDIDATES}  # what the pipeline itself accepts
CONCURRENCY = 2  # model jobs that run at once; they share the one model thread step by step (`compute.py`)
MAX_REQUEST_KB = 256  # any request but an upload: a prompt, a cell list, a data: URL of a small image


@dataclass(frozen=True)
class Limits:
    max_steps: int = 100  # 100 steps of best-of-8: ~4 s on a 2-vCPU Space (6 blocks)
    max_candidates: int = 8  # 8 noises cost 2.8 runs' time (docs/speed.md)
    job_seconds: float = 60.0
    queue_size: int = 16
    session_minutes: float = 30.0
    max_upload_mb: float = 10.0
    max_upload_megapixels: float = 16.0  # a 16 MP PNG decodes to 48 MB; larger JPEGs are decoded at 1/2..1/8 scale
    max_tokenizers: int = 4  # besides the generator's and MMGEN_TOKENIZERS'; Kandinsky's MoVQ is ~270 MB in float32
    max_tokenizer_mb: float = 1024.0  # what one visitor's Hub load may download (and keep in the Space's disk cache)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value, high = getattr(self, f.name), LIBRARY_MAX.get(f.name, math.inf)
            if not (_number(value) and 0 < value <= high):
                most = f" and at most {high}" if math.isfinite(high) else ""
                raise ValueError(f"{ENV[f.name]} must be a number above 0{most}, got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Limits:
        """The limits set by MMGEN_* variables (see the module's table); a bad value stops the app at start."""
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV[f.name])
            if raw is None or not raw.strip():
                continue
            try:
                values[f.name] = int(raw) if f.type == "int" else float(raw)
            except ValueError as e:
                raise ValueError(f"{ENV[f.name]} must be a number, got {raw!r}") from e
        return cls(**values)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_upload_pixels(self) -> int:
        return int(self.max_upload_megapixels * 1_000_000)

    @property
    def session_seconds(self) -> float:
        return self.session_minutes * 60

    def check_sampling(self, settings: SamplingSettings) -> SamplingSettings:
        """`settings` checked with the app's bounds (the sliders'); ValueError with a message for people, which
        names the Space's limit when a value is over its budget."""
        for field, limit_name, what in BUDGET:
            value, limit = getattr(settings, field), getattr(self, limit_name)
            if _number(value) and value > limit:
                env = ENV[limit_name]
                raise ValueError(
                    f"{value:g} {what} is over this Space's limit of {limit} ({env}): choose fewer {what}."
                )
        guidance = settings.guidance_scale
        if _number(guidance) and not 0 <= guidance <= MAX_GUIDANCE:  # the slider's range, whichever end is passed
            raise ValueError(f"Guidance must be a number 0..{MAX_GUIDANCE:g}, got {guidance!r}.")
        return settings.checked(max_steps=self.max_steps, max_candidates=self.max_candidates)

    def field_error(self, settings: SamplingSettings) -> tuple[str, str] | None:
        """(field, message) of the first field of `settings` that `check_sampling` refuses, else None: which
        control to show the message under."""
        try:
            self.check_sampling(settings)
            return None
        except ValueError as whole:
            valid = SamplingSettings("a red circle", num_inference_steps=1, num_candidates=1)  # within any budget
            for f in dataclasses.fields(SamplingSettings):
                probe = dataclasses.replace(valid, **{f.name: getattr(settings, f.name)})
                try:
                    self.check_sampling(probe)
                except ValueError as e:
                    return f.name, str(e)
            return "prompt", str(whole)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
