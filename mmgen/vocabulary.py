"""What the generator knows: the words of its training captions, saved beside its transformer.

A prompt word the model never read in training ("a cat on a sofa") still gets a text-encoder state, and the DiT
does something with it, but nothing it learned: the result is a guess (for mmgen-base, usually a grey square).
So every published generator carries `transformer/vocabulary.json`, written by `mmgen.release` from its run's
training captions (every stage named in the run's log), and the command line and the app name the words of a
prompt it never saw, with the known words nearest in spelling (difflib) or in meaning (MiniLM), without blocking
the run.

    vocab = Vocabulary.for_pipeline(pipe)              # None for a model published without one
    vocab.unknown_words("a cat on a sofa")            # {"cat": [], "sofa": []}
    vocab.warning("a tiny violet circle", encoder)    # "the model never saw: tiny (try: small), violet (try: ...)"
    vocab.in_known_words("a tiny red circle", encoder)  # "a small red circle": what `--known-words` draws

A vocabulary of shapes-v1 captions also names that grammar, so `mmgen.captioning.caption` searches it; for other
data it keeps the most common distinct captions, which `caption` ranks.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .data.shapes import VERSION as SHAPES_V1

logger = logging.getLogger(__name__)  # the standard library's: the app imports this module before diffusers

VOCABULARY_FILE = "vocabulary.json"  # inside the model folder's transformer/
FORMAT = "mmgen-vocabulary-v1"
MAX_CAPTIONS = 1000  # distinct captions kept (the most common) for models not trained on a grammar
SPELLING_CUTOFF = 0.8  # difflib ratio for a "did you mean": "squre" -> "square", not "cat" -> "at"
MEANING_CUTOFF = 0.45  # MiniLM cosine for a known word of like meaning: "tiny" -> "small" (0.91), "cat" -> none
STOPWORDS = frozenset("a an the of on in at to and with".split())  # never offered as suggestions
# Words that turn what follows around. MiniLM puts "not" near "right" (0.49) and "without" near "above": a rewrite
# would say the opposite, and a DiT that never read a negation draws what is named anyway.
NEGATIONS = frozenset("not no never without nor neither none except".split())


def split_words(text: str) -> list[str]:
    """The words of a text, lower-cased, in order: runs of letters and digits in any script ("top-left" is "top",
    "left"; "piñata" and "красный" are one word each)."""
    return re.findall(r"[^\W_]+", unicodedata.normalize("NFC", text).lower())  # "n" + U+0303 is "ñ"


@dataclass
class Vocabulary:
    words: dict[str, int]  # word -> how many training captions hold it, most common first
    num_captions: int  # training captions read (repeats counted)
    grammar: str | None = None  # "shapes-v1" when every caption came from that grammar
    captions: list[str] = field(default_factory=list)  # the most common distinct captions (none for a grammar)
    sources: list[str] = field(default_factory=list)  # where the captions came from, for people
    _meaning: tuple | None = field(default=None, repr=False, compare=False)  # (encoder, words, embeddings)

    @classmethod
    def from_captions(cls, captions: Iterable[str], grammar: str | None = None, sources=()) -> Vocabulary:
        counts, per_caption = Counter(), Counter()
        for caption in captions:
            per_caption[caption] += 1
        for caption, n in per_caption.items():
            for word in set(split_words(caption)):
                counts[word] += n
        kept = [] if grammar else [c for c, _ in per_caption.most_common() if c.strip()][:MAX_CAPTIONS]
        ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return cls(ordered, sum(per_caption.values()), grammar, kept, list(sources))

    # ---------------------------------------------------------------- files
    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "grammar": self.grammar,
            "num_captions": self.num_captions,
            "sources": self.sources,
            "words": self.words,
            "captions": self.captions,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """The vocabulary saved at `path`; ValueError naming the file when it is not one (or is damaged)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not an mmgen vocabulary ({FORMAT})")
            vocabulary = cls(
                dict(data["words"]),
                int(data["num_captions"]),
                data.get("grammar"),
                list(data["captions"]),
                list(data.get("sources", [])),
            )
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:  # JSONDecodeError: a ValueError
            reason = f"no {e.args[0]!r} entry" if isinstance(e, KeyError) else str(e)
            raise ValueError(f"{path}: not a readable vocabulary ({reason})") from None
        return vocabulary

    @classmethod
    def for_model(cls, model_dir: str | Path) -> Vocabulary | None:
        """The vocabulary of a local model folder (MODEL/transformer/vocabulary.json), or None."""
        path = Path(model_dir) / "transformer" / VOCABULARY_FILE
        return cls.load(path) if path.is_file() else None

    @classmethod
    def for_pipeline(cls, pipe) -> Vocabulary | None:
        """The vocabulary saved beside a loaded pipeline's transformer, or None (an in-memory model, or one
        published before vocabularies)."""
        where = getattr(pipe.transformer.config, "_name_or_path", None)
        path = Path(where) / VOCABULARY_FILE if where else None
        if path is None or not path.is_file():
            return None
        try:
            return cls.load(path)
        except ValueError as e:  # it only feeds notes and the caption search: the model still draws without it
            logger.warning(f"{e}; going on without it (no notes on unknown words, no captions to search)")
            return None

    # ---------------------------------------------------------------- prompts
    def unknown_words(self, prompt: str, encoder=None) -> dict[str, list[str]]:
        """{word the training captions never held (stop words aside): known words to try instead}, in prompt order.
        `encoder`: (tokenizer, text encoder), to also offer the known word nearest in meaning."""
        unknown = list(dict.fromkeys(w for w in split_words(prompt) if w not in self.words and w not in STOPWORDS))
        return dict(zip(unknown, self.suggestions(unknown, encoder)))

    def suggestions(self, words: list[str], encoder=None) -> list[list[str]]:
        """Known words close to each of `words`: by spelling, then (with `encoder`) the nearest in meaning, if near
        enough. The meanings come from one batched MiniLM pass, however many words (a long prompt of unknown
        words cost a pass each: 4 s for 2,000 characters on a 2-core CPU)."""
        known = [w for w in self.words if w not in STOPWORDS]
        found = [difflib.get_close_matches(word, known, n=2, cutoff=SPELLING_CUTOFF) for word in words]
        if encoder is not None and known and words:
            for near, (nearest, similarity) in zip(found, self._nearest_in_meaning(words, known, encoder)):
                if similarity >= MEANING_CUTOFF and nearest not in near:
                    near.append(nearest)
        return [[] if word in NEGATIONS else near for word, near in zip(words, found)]  # "not" is no word's neighbour

    def in_known_words(self, prompt: str, encoder=None) -> str:
        """`prompt` in the words the model was trained on: each unknown word becomes its first suggestion (by
        spelling, then meaning) or goes, and a word twice in a row is said once ("up high" -> "top top" -> "top").
        Lower case, punctuation dropped: a prompt of known words comes back as its words (repeats once); "" when
        only stop words are left ("a cat on a sofa"). The DiT follows the words it was trained on, and MiniLM
        finds them for words it was not ("lower" -> "bottom"). A negation it never read ("not", "without") is
        refused (ValueError): no prompt in its words means the same."""
        if negated := [w for w in split_words(prompt) if w in NEGATIONS and w not in self.words]:
            raise ValueError(
                f"the prompt says {negated[0]!r}: the model never read a negation, so no prompt in its words means "
                "the same; leave out what should not be drawn"
            )
        words, unknown = [], self.unknown_words(prompt, encoder)
        for word in split_words(prompt):
            if word in unknown:
                word = next(iter(unknown[word]), None)
            if word and (not words or words[-1] != word):
                words.append(word)
        return " ".join(words) if any(w not in STOPWORDS for w in words) else ""  # "a cat on a sofa": nothing

    def warning(self, prompt: str, encoder=None) -> str | None:
        """ "the model never saw: cat, tiny (try: small)"; "the prompt names nothing the model knows" for one of
        symbols or stop words alone ("🔴 ⭐", "the a of"); None when the prompt names something and every word
        is known."""
        unknown = self.unknown_words(prompt, encoder)
        if not unknown:
            named = any(w in self.words and w not in STOPWORDS for w in split_words(prompt))
            return None if named else "the prompt names nothing the model knows"
        parts = [w + (f" (try: {', '.join(s)})" if s else "") for w, s in unknown.items()]
        message = "the model never saw: " + ", ".join(parts)
        if any(w in NEGATIONS for w in unknown):
            message += " (it cannot negate: it draws what is named)"
        return message

    @torch.no_grad()
    def _nearest_in_meaning(self, words: list[str], known: list[str], encoder) -> list[tuple[str, float]]:
        """For each of `words`, the known word whose MiniLM embedding (mean of its token states) is nearest its
        own, and the cosine."""
        from .models.text_encoder import encode_text

        tokenizer, model = encoder

        def embed(texts: list[str]) -> torch.Tensor:
            states, mask = encode_text(tokenizer, model, texts)
            m = mask[..., None].to(states.dtype)  # (N, L, 1)
            return torch.nn.functional.normalize((states * m).sum(1) / m.sum(1), dim=-1)  # (N, E)

        def embed_all(texts: list[str]) -> torch.Tensor:  # (N, E), in batches of 256
            return torch.cat([embed(texts[i : i + 256]) for i in range(0, len(texts), 256)])

        if self._meaning is None or self._meaning[0] is not model or self._meaning[1] != known:
            self._meaning = (model, known, embed_all(known))
        similarity = (embed_all(words) @ self._meaning[2].T).cpu()  # (N, K)
        best = similarity.argmax(dim=1)  # (N,)
        return [(known[int(b)], float(s[b])) for b, s in zip(best, similarity)]


# ---------------------------------------------------------------- a run's training captions
class CaptionsNotFound(ValueError):
    """The image folder a generator trained on is not where its log says (moved, or on another machine)."""


def stage_sources(log_path: str | Path) -> list[dict]:
    """The distinct training sets of every stage in a generator's training log (its header lines): {"data":
    "shapes", "stream": seed, "num_samples": n} or {"data": folder as given, "path": where it was}."""
    sources = []
    for line in Path(log_path).read_text().splitlines():
        record = json.loads(line)
        if "command" not in record:
            continue
        args = record["args"]
        if args.get("data", "shapes") == "shapes":
            stream = args["seed"] if args.get("data_seed") is None else args["data_seed"]
            source = {"data": "shapes", "stream": stream, "num_samples": args["num_samples"]}
        else:  # named as given; read where training resolved it (older logs: from where training ran)
            source = {"data": args["data"], "path": record.get("data_folder", args["data"])}
        if source not in sources:
            sources.append(source)
    if not sources:
        raise ValueError(f"{log_path}: no training stage header found")
    return sources


def training_captions(source: dict) -> list[str]:
    """The captions a stage trained on: the shapes-v1 stream's, or the folder's, read as training read them
    (`ImageFolder`: metadata.jsonl or metadata.csv, its lines that are left out left out here too)."""
    if source["data"] == "shapes":
        from .data.shapes import shapes_annotation

        return [shapes_annotation(source["stream"], i)[1] for i in range(source["num_samples"])]
    from .data.images import ImageFolder

    path = source.get("path", source["data"])
    if not Path(path).is_dir():
        raise CaptionsNotFound(
            f"{path}: the folder the generator trained on is needed to write its vocabulary (a log from before "
            "2026-12-07 names it as given: run this from the folder training ran in)"
        )
    folder = ImageFolder(path, captions_required=True)
    return [text for _, texts, _ in folder.in_metadata_order() for text in texts]  # ties ranked as listed


def vocabulary_from_log(log_path: str | Path) -> Vocabulary:
    """The vocabulary of everything a generator trained on, from its training log (all stages)."""
    sources = stage_sources(log_path)
    captions = [c for s in sources for c in training_captions(s)]
    grammar = SHAPES_V1 if all(s["data"] == "shapes" for s in sources) else None
    described = [
        f"shapes-v1 stream {s['stream']}, {s['num_samples']} scenes" if s["data"] == "shapes" else s["data"]
        for s in sources
    ]
    vocabulary = Vocabulary.from_captions(captions, grammar, described)
    if grammar is None and sources[-1]["data"] != "shapes":  # fine-tuned on a folder last: rank its captions
        vocabulary.captions = Vocabulary.from_captions(training_captions(sources[-1])).captions
    return vocabulary
