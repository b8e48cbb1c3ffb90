"""The mmgen explorer, a Gradio app: generate images from text, watch them emerge step by step, and see them as
codebook tokens. `app.py` at the repository root launches it; `build_demo(pipe)` builds it (tests pass a tiny
pipeline).

One module per tab (`generate`, `trajectory`, `tokenizer`, `codebook`, `caption`, `about`), each building its
components and wiring its own events; `demo` puts them together (one page per model, picked in the navbar) and
`serving` launches it for many visitors. Shared
pieces: `loading` (the pipeline, loaded in the background while the page is served), `context` (the pipeline
and what every tab uses), `limits` (what one visitor may ask, from MMGEN_*
variables), `jobs` (one model job per visitor, time limits), `compute` (the one thread model calls run on),
`frames` (a run's compact trajectory, drawn on demand), `runs` (a run's settings, checked by `mmgen.settings`,
and what a finished run leaves for the other tabs), `errors` (messages for people), `files` (scratch files for
downloads, gradio's image cache). Handlers hold no model logic: they call the pipeline, `mmgen.run_card`,
`mmgen.tokens`, `mmgen.codebook` and the pure drawing functions of `mmgen.viz`.
"""

from .demo import ModelPage, build_demo
from .limits import Limits
from .loading import ModelLoading
from .serving import serve

__all__ = ["Limits", "ModelLoading", "ModelPage", "build_demo", "serve"]
