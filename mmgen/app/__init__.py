"""The mmgen explorer, a Gradio app: generate images from text, watch them emerge step by step, and see them as
codebook tokens. `app.py` at the repository root launches it; `build_demo(pipe)` builds it (tests pass a tiny
pipeline).

One module per tab (`generate`, `trajectory`, `tokenizer`, `codebook`, `about`), each building its components
and wiring its own events; `demo` puts them together. Shared pieces: `context` (the pipeline and the app's
limits), `runs` (a run's settings, checked by `mmgen.settings`, and what a finished run leaves for the other
tabs), `files` (scratch files for downloads, gradio's image cache). Handlers hold no model logic: they call the
pipeline, `mmgen.run_card`, `mmgen.tokens`, `mmgen.codebook` and the pure drawing functions of `mmgen.viz`.
"""

from .demo import build_demo

__all__ = ["build_demo"]
