import re

import numpy as np
import pytest
import torch

from mmgen.data.rewording import place_phrases, reword
from mmgen.data.shapes import POSITIONS, shapes_annotation
from mmgen.eval.prompts import HELDOUT_REWORDING, TUNE_REWORDING, PromptSets, Rewording
from mmgen.training.encoded_data import draw_batch, encode_dataset, shapes_item
from mmgen.training.train_generator import main
from tests.test_train_generator import _args


def _words(texts) -> set[str]:
    return {w for t in texts for w in re.findall(r"[a-z]+", t.lower())}


def _scenes(n: int = 600) -> list[tuple[dict, str]]:
    return [shapes_annotation(3, i) for i in range(n)]


def _rewording_words(r: Rewording) -> set[str]:
    return _words(re.sub(r"\{\w+\}", " ", t) for t in r.templates) | _words(r.where.values())


def test_a_rewording_names_every_objects_colour_and_shape_and_only_true_facts():
    for i, (labels, _) in enumerate(_scenes(300)):
        text = reword(labels, np.random.default_rng(i))
        assert text == text.lower() and "  " not in text
        for obj in labels["objects"]:
            assert f"{obj['color']} {obj['shape']}" in text
        if labels["background"] not in text:
            continue
        others = {"white", "black", "gray"} - {labels["background"]}
        assert not any(f"{bg} background" in text or f"on {bg}" in text for bg in others)


def test_each_place_phrase_names_one_cell():
    phrases = {p: set(place_phrases(p)) for p in POSITIONS}
    for a in POSITIONS:
        for b in POSITIONS:
            assert a == b or not phrases[a] & phrases[b], (a, b)


def test_training_words_stay_out_of_the_evaluations_reworded_prompts():
    """The reworded prompts test wordings training never shows: no word of theirs may be new in the rewordings
    (one the shapes-v1 captions and the canonical prompts do not already use). And the tuning set, chosen by,
    shares no such word with the held-out set."""
    scenes = _scenes()
    known = _words(caption for _, caption in scenes)
    known |= _words(it["prompt"] for items in PromptSets(96, 96, 0).draw().values() for it in items)
    rewordings = _words(reword(labels, np.random.default_rng(i)) for i, (labels, _) in enumerate(scenes))
    held_out, tuning = _rewording_words(HELDOUT_REWORDING) - known, _rewording_words(TUNE_REWORDING) - known
    assert held_out and tuning and not held_out & tuning
    assert not rewordings & held_out, rewordings & held_out
    assert not rewordings & tuning, rewordings & tuning
    assert rewordings - known  # the rewordings do say things in new words


def test_tuning_asks_for_reworded_prompts_without_changing_the_others():
    plain, reworded = PromptSets.tuning(8, 8, False), PromptSets.tuning(8, 8, False, n_paraphrase=6)
    a, b = plain.draw(), reworded.draw()
    assert a["single"] == b["single"] and a["two"] == b["two"] and not a["paraphrased"]
    assert len(b["paraphrased"]) == 6
    assert all(any(w in it["prompt"].lower() for w in TUNE_REWORDING.where.values()) for it in b["paraphrased"])


def test_encoded_scenes_carry_their_caption_and_rewordings_and_batches_draw_among_them(tiny_model_dir):
    from mmgen.models.text_encoder import load_text_encoder
    from mmgen.models.vqvae import VQVAE

    vq = VQVAE.from_pretrained(tiny_model_dir, subfolder="vqvae").eval()
    tokenizer, text_encoder = load_text_encoder()
    data = encode_dataset(vq, tokenizer, text_encoder, shapes_item(0, rewordings=2), 6)
    assert data["caption_index"].shape == (6, 3)
    assert len(data["text_states"]) == len(set(data["caption_index"].flatten().tolist())) + 1  # + the empty one
    codebook = vq.quantizer.codebook
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        _latents, _ids, states, _masks = draw_batch(data, codebook, 1.0, 6, 0.0, gen)
        seen |= {tuple(s[:3, :4].flatten().tolist()) for s in states}
    assert len(seen) > 6  # more captions than images were drawn


def test_rewordings_on_a_folder_are_a_clear_error(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="--rewordings rewords shapes-v1"):
        main(_args(tmp_path / "run", tiny_model_dir, "--steps", "1", "--data", str(tmp_path), "--rewordings", "2"))
