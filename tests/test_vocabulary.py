import json
from pathlib import Path

import pytest
from PIL import Image

from mmgen.cli import main
from mmgen.data.shapes import BACKGROUNDS, COLORS, POSITION_WORDINGS, SHAPES, SIZES, shapes_annotation
from mmgen.release import write_vocabulary
from mmgen.vocabulary import SHAPES_V1, Vocabulary, split_words, stage_sources, vocabulary_from_log

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "mmgen-base"
CAPTIONS = ["a red circle", "a red circle", "a blue square on the left", "A Red star, top-left", ""]


def write_log(path: Path, stages: list[dict]) -> Path:
    records = []
    for args in stages:
        records += [{"command": "mmgen train-generator", "args": args, "stage": len(records) + 1}, {"step": 1}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_words_counts_and_round_trip(tmp_path):
    assert split_words("A Red star, top-left!") == ["a", "red", "star", "top", "left"]
    vocab = Vocabulary.from_captions(CAPTIONS, sources=["four captions"])
    assert vocab.num_captions == 5 and vocab.words["red"] == 3 and vocab.words["left"] == 2
    assert list(vocab.words)[:2] == ["a", "red"]  # most common first
    assert vocab.captions[0] == "a red circle" and len(vocab.captions) == 3  # distinct, most common, not blank
    assert Vocabulary.load(vocab.save(tmp_path / "v.json")) == vocab
    assert Vocabulary.from_captions(CAPTIONS, grammar=SHAPES_V1).captions == []  # a grammar is searched, not listed
    (tmp_path / "bad.json").write_text('{"words": {}}')
    with pytest.raises(ValueError, match="bad.json: not a readable vocabulary .not an mmgen vocabulary"):
        Vocabulary.load(tmp_path / "bad.json")
    for damaged, reason in (
        ('{"format": "mmgen-vocabulary-v1", "words": {}}', "no 'num_captions' entry"),  # a KeyError's traceback
        ("{bad", "Expecting property name"),  # JSON's message, which never named the file
        ('["a list"]', "not an mmgen vocabulary"),
    ):
        (tmp_path / "bad.json").write_text(damaged)
        with pytest.raises(ValueError, match=f"bad.json: not a readable vocabulary .{reason}"):
            Vocabulary.load(tmp_path / "bad.json")


def test_unknown_words_and_suggestions():
    vocab = Vocabulary.from_captions(CAPTIONS + ["a small green triangle at the top"])
    assert vocab.unknown_words("a red circle on the left") == {}
    assert vocab.unknown_words("A cat on a sofa, a cat") == {"cat": [], "sofa": []}  # in order, once each
    assert vocab.unknown_words("a red squre")["squre"] == ["square"]  # by spelling
    assert vocab.unknown_words("a blue cat")["cat"] == []  # never "at" or "a": too short a match, or a stopword
    assert vocab.warning("a red circle") is None
    assert vocab.warning("a cat on a squre") == "the model never saw: cat, squre (try: square)"
    # words in any script are words: they used to vanish or split ("красный" was nothing, "piñata" "pi" + "ata")
    assert split_words("Красный круг, piñata!") == ["красный", "круг", "piñata"]
    assert split_words("pin\u0303ata") == ["piñata"]  # "n" and a combining tilde (NFD) are one letter
    assert list(vocab.unknown_words("a красный circle")) == ["красный"]
    assert vocab.warning("🔴 ⭐") == vocab.warning("the a of on") == "the prompt names nothing the model knows"


def test_suggestions_by_meaning_with_minilm():
    from mmgen.models.text_encoder import load_text_encoder

    vocab = Vocabulary.for_model(SHIPPED)
    encoder = load_text_encoder()
    found = vocab.unknown_words("a tiny grey oval on a sofa", encoder)
    assert found == {"tiny": ["small"], "grey": ["gray"], "oval": ["circle"], "sofa": []}


def test_the_shipped_vocabulary_holds_the_grammar():
    vocab = Vocabulary.for_model(SHIPPED)
    assert vocab.grammar == SHAPES_V1 and vocab.num_captions == 120_000 + 24_000  # the 64-px DiT's, then the 128-px
    grammar = {*COLORS, *SHAPES, *SIZES, *BACKGROUNDS, "background", "above", "below"}
    grammar |= {w for wordings in POSITION_WORDINGS.values() for phrase in wordings for w in split_words(phrase)}
    assert grammar <= set(vocab.words)
    assert not {"cat", "sofa", "upper", "corner", "backdrop"} & set(vocab.words)  # evaluation-only wordings


def test_vocabulary_from_a_training_log_of_several_stages(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(folder / name)
    (folder / "metadata.jsonl").write_text(
        '{"file_name": "a.png", "text": "a cat on a sofa"}\n{"file_name": "b.png", "text": ["dog", "a dog emoji"]}\n'
    )
    shapes = {"seed": 0, "data_seed": None, "num_samples": 30}
    log = write_log(tmp_path / "log.jsonl", [shapes, shapes | {"data_seed": 1}, shapes | {"seed": 5, "data_seed": 0}])
    assert stage_sources(log) == [
        {"data": "shapes", "stream": 0, "num_samples": 30},
        {"data": "shapes", "stream": 1, "num_samples": 30},  # the third stage reads stream 0 again: counted once
    ]
    vocab = vocabulary_from_log(log)
    expected = {w for s in (0, 1) for i in range(30) for w in split_words(shapes_annotation(s, i)[1])}
    assert set(vocab.words) == expected and vocab.num_captions == 60 and vocab.grammar == SHAPES_V1
    mixed = vocabulary_from_log(write_log(tmp_path / "mixed.jsonl", [shapes, {"data": str(folder), "seed": 0}]))
    assert mixed.grammar is None and "sofa" in mixed.words and "emoji" in mixed.words  # a list: every caption
    # fine-tuned on a folder last: the captions `caption` ranks are the folder's, not the shapes it started from
    assert sorted(mixed.captions) == ["a cat on a sofa", "a dog emoji", "dog"]
    write_log(tmp_path / "gone.jsonl", [{"data": str(tmp_path / "gone"), "seed": 0}])
    with pytest.raises(ValueError, match="the folder the generator trained on is needed"):
        vocabulary_from_log(tmp_path / "gone.jsonl")


@pytest.mark.parametrize(
    "file, text",
    [
        ("metadata.csv", "file_name,text\na.png,a cat on a sofa\nb.png,a dog\n"),  # imagefolder's other form
        (
            "metadata.jsonl",
            '\ufeff{"file_name": "a.png", "text": "a cat on a sofa"}\n{"file_name": "b.png", "text": "a dog"}',
        ),
        ("metadata.jsonl", '{"file_name": "a.png", "text": "a cat on a sofa"}\nnot json\n["b.png", "x"]\n'),
    ],
)
def test_the_vocabulary_reads_the_captions_as_training_did(tmp_path, monkeypatch, file, text):
    """Publishing read metadata.jsonl strictly where training (`ImageFolder`) reads a CSV, a BOM and bad lines:
    a model that trained could not be published (and a recipe stuck at that stage); the folder is found where
    training ran, not from where `release` runs."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(folder / name)
    (folder / file).write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "log.jsonl"
    header = {"command": "train-generator", "args": {"data": "mine", "seed": 0}, "data_folder": str(folder)}
    log.write_text(json.dumps(header) + "\n")
    monkeypatch.chdir(folder)  # `release` run elsewhere: "mine" is no folder here
    vocab = vocabulary_from_log(log)
    assert {"cat", "sofa"} <= set(vocab.words) and "x" not in vocab.words
    assert vocab.sources == ["mine"]  # as given: a published file names no folder of the machine it was made on


def test_the_model_folder_carries_it_and_the_cli_warns_without_blocking(tiny_pipe, tmp_path, capsys, caplog):
    model = tmp_path / "pipe"
    tiny_pipe.save_pretrained(model)
    args = ["generate", "a cat on a sofa", "--model", str(model), "--out", str(tmp_path / "i.png"), "--steps", "2"]
    assert main(args) == 0 and "never saw" not in capsys.readouterr().err  # no vocabulary: nothing to say
    write_log(model / "generator_train_log.jsonl", [{"seed": 0, "num_samples": 20}])
    assert write_vocabulary(model) == model / "transformer" / "vocabulary.json"
    assert main(args) == 0
    err = capsys.readouterr().err  # (the tiny random encoder's suggestions by meaning are noise: not checked)
    assert "warning: the model never saw: cat" in err and "sofa" in err and "circle" not in err
    from mmgen.pipeline import MMGenPipeline

    assert Vocabulary.for_pipeline(MMGenPipeline.from_pretrained(model)).num_captions == 20
    assert Vocabulary.for_pipeline(tiny_pipe) is None  # built in memory
    # a damaged vocabulary only feeds notes: the run goes on, and a warning names the file
    (model / "transformer" / "vocabulary.json").write_text('{"format": "mmgen-vocabulary-v1", "words": {}}')
    assert main(args) == 0
    said = "vocabulary.json: not a readable vocabulary (no 'num_captions' entry); going on without it"
    assert said in caplog.text and "Traceback" not in capsys.readouterr().err


def test_a_prompt_in_known_words():
    vocab = Vocabulary.from_captions(CAPTIONS + ["a small green triangle at the top"])
    assert vocab.in_known_words("A red circle, on the left!") == "a red circle on the left"  # all known: its words
    assert vocab.in_known_words("a red squre") == "a red square"  # an unknown word: its suggestion
    assert vocab.in_known_words("a red cat circle") == "a red circle"  # none near enough: left out
    assert vocab.in_known_words("a red squre square") == "a red square"  # a word twice in a row: once
    assert vocab.in_known_words("zebra") == ""
    assert vocab.in_known_words("a zebra on the sofa") == ""  # stop words alone say nothing


def test_in_known_words_with_minilm_finds_the_places_training_said_otherwise():
    from mmgen.models.text_encoder import load_text_encoder

    vocab, encoder = Vocabulary.for_model(SHIPPED), load_text_encoder()
    assert vocab.in_known_words("a tiny grey oval down low", encoder) == "a small gray circle bottom"
    assert vocab.in_known_words("a large red star in the top left", encoder) == "a large red star in the top left"
    # a negation is no word's neighbour: "not" became "right" ("a red circle, not a square" -> "... right a square")
    assert vocab.unknown_words("a red circle, not a square", encoder) == {"not": []}
    assert vocab.warning("a red circle without a square", encoder).endswith(
        "(it cannot negate: it draws what is named)"
    )
    with pytest.raises(ValueError, match="says 'not': the model never read a negation"):
        vocab.in_known_words("a red circle, not a square", encoder)


def test_generate_known_words_draws_the_rewritten_prompt_or_says_why_not(tiny_pipe, tmp_path, capsys):
    model = tmp_path / "pipe"
    tiny_pipe.save_pretrained(model)
    args = ["generate", "a red squre", "--model", str(model), "--out", str(tmp_path / "i.png"), "--steps", "1"]
    assert main([*args, "--known-words"]) == 2
    assert "published without transformer/vocabulary.json" in capsys.readouterr().err
    write_log(model / "generator_train_log.jsonl", [{"seed": 0, "num_samples": 20}])
    write_vocabulary(model)
    assert main([*args, "--known-words"]) == 0
    err = capsys.readouterr().err
    assert "in known words: a red square" in err and "never saw" not in err
    assert main([*args[:1], "?!", *args[2:], "--known-words"]) == 2  # (the tiny encoder finds some word near any)
    assert "'?!' names nothing the model knows" in capsys.readouterr().err


def test_the_unread_end_of_a_long_prompt_is_quoted_as_typed(tiny_pipe):
    """What the generator never reads of a long prompt (past 30 word pieces), in the visitor's own characters:
    decoded pieces would have read '##…', '[UNK]' for an emoji and 'pinata' for 'Piñata'."""
    from mmgen.models.text_encoder import unread_text

    assert unread_text(tiny_pipe.tokenizer, "a red circle") == ""
    long = "a large red circle " * 7 + "on a Small Piñata 🎉"  # 28 + 2 pieces are read
    assert unread_text(tiny_pipe.tokenizer, long) == "Small Piñata 🎉"


def test_a_long_prompt_is_said_to_be_cut_once(tiny_pipe, caplog):
    """Best of 4 encodes the prompt for each candidate: the warning came five times for one image."""
    long = "a large red circle " * 8
    tiny_pipe(long, num_inference_steps=2, num_candidates=4, output_type="latent")
    assert caplog.text.count("word pieces of a prompt") == 1
    tiny_pipe([long, long + "x"], num_inference_steps=2, num_candidates=2, output_type="latent")
    assert caplog.text.count("word pieces of a prompt") == 2  # the new prompt's, once


def test_a_folders_captions_keep_the_metadatas_order(tmp_path):
    """Captions seen once each tie: the model's own caption ranking keeps the first MAX_CAPTIONS in the metadata's
    order (as the reader before `ImageFolder` did), not the folder's file order."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (8, 8)).save(folder / name)
    lines = [
        {"file_name": n, "text": f"a {w} thing"} for n, w in (("c.png", "third"), ("a.png", "first"), ("b.png", "x"))
    ]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    log = write_log(tmp_path / "log.jsonl", [{"data": str(folder), "seed": 0}])
    assert vocabulary_from_log(log).captions == ["a third thing", "a first thing", "a x thing"]
