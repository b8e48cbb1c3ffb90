"""shapes-v1 conformance: every rule of docs/shapes-v1.md that a sample can be checked against."""

import json
from pathlib import Path

import numpy as np
import pytest

from mmgen.data.shapes import (
    BACKGROUNDS,
    CENTER_JITTER,
    COLORS,
    POSITION_WORDINGS,
    POSITIONS,
    SHAPES,
    SIZE_JITTER,
    SIZES,
    cell_of,
    relation,
    render_scene,
    shapes_sample,
    write_shapes,
)

N = 400
SAMPLES = [shapes_sample(0, i) for i in range(N)]


def test_same_seed_and_index_give_identical_samples():
    a, b = shapes_sample(3, 17), shapes_sample(3, 17)
    assert a.caption == b.caption and a.labels == b.labels
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    c = shapes_sample(4, 17)
    assert (c.labels, c.caption) != (a.labels, a.caption)


def test_canvas_is_64x64_rgb():
    assert all(s.image.size == (64, 64) and s.image.mode == "RGB" for s in SAMPLES[:20])


def test_background_and_object_colours_come_from_the_palette():
    for s in SAMPLES[:100]:
        arr = np.asarray(s.image)
        assert tuple(arr[0, 0]) == BACKGROUNDS[s.labels["background"]]
        for obj in s.labels["objects"]:
            cx, cy = obj["center"]
            # the centre pixel lies inside every shape, far from anti-aliased edges
            assert tuple(arr[cy, cx]) == COLORS[obj["color"]], (s.labels, obj)


def test_sizes_positions_and_jitter_follow_the_spec():
    for s in SAMPLES:
        for obj in s.labels["objects"]:
            assert obj["shape"] in SHAPES and obj["color"] in COLORS
            assert abs(obj["side"] - SIZES[obj["size"]]) <= SIZE_JITTER
            x, y = POSITIONS[obj["position"]]
            assert abs(obj["center"][0] - x) <= CENTER_JITTER and abs(obj["center"][1] - y) <= CENTER_JITTER


def test_one_object_in_about_60_percent_of_scenes():
    share = np.mean([len(s.labels["objects"]) == 1 for s in SAMPLES])
    assert 0.53 < share < 0.67
    assert all(len(s.labels["objects"]) in (1, 2) for s in SAMPLES)


def test_two_objects_differ_in_cell_and_colour_and_stay_apart():
    pairs = [s.labels["objects"] for s in SAMPLES if len(s.labels["objects"]) == 2]
    assert len(pairs) > 100
    for a, b in pairs:
        assert a["position"] != b["position"] and a["color"] != b["color"]
        gap_x = abs(a["center"][0] - b["center"][0]) - (a["side"] + b["side"]) / 2
        gap_y = abs(a["center"][1] - b["center"][1]) - (a["side"] + b["side"]) / 2
        assert max(gap_x, gap_y) >= 2
        if "large" in (a["size"], b["size"]):  # the spec's consequence: never in neighbouring cells
            (ca, ra), (cb, rb) = cell_of(a["position"]), cell_of(b["position"])
            assert max(abs(ca - cb), abs(ra - rb)) >= 2


def test_captions_name_every_object_and_only_true_facts():
    for s in SAMPLES:
        caption, objects = s.caption, s.labels["objects"]
        assert caption == caption.lower()
        for obj in objects:
            assert f"{obj['color']} " in caption and obj["shape"] in caption
        for bg in BACKGROUNDS:  # background names never name an object colour, so any mention is the background
            if bg in caption:
                assert bg == s.labels["background"], caption
        if len(objects) == 1 and not caption.endswith(objects[0]["shape"]):  # something follows the object
            rest = caption.split(objects[0]["shape"], 1)[1]
            stated = [p for p, phrases in POSITION_WORDINGS.items() if any(rest.startswith(" " + w) for w in phrases)]
            if stated:  # a position was stated: it is the object's
                assert stated == [objects[0]["position"]], caption
        for size in SIZES:
            if f"{size} " in caption:
                assert any(o["size"] == size for o in objects)
        if len(objects) == 2:
            a, b = objects
            said = [
                r
                for r, phrase in [
                    ("left of", "to the left of"),
                    ("right of", "to the right of"),
                    ("above", " above "),
                    ("below", " below "),
                ]
                if phrase in caption
            ]
            assert len(said) == 1 and said[0] in relation(a, b), (caption, a["position"], b["position"])


def test_labels_have_the_spec_structure():
    labels = SAMPLES[0].labels
    assert set(labels) == {"background", "objects"}
    assert set(labels["objects"][0]) == {"shape", "color", "size", "position", "center", "side"}
    json.dumps(labels)  # plain JSON types only


def test_render_is_a_pure_function_of_the_labels():
    s = SAMPLES[5]
    assert np.array_equal(np.asarray(render_scene(s.labels)), np.asarray(s.image))


def test_edges_are_anti_aliased():
    s = next(s for s in SAMPLES if s.labels["objects"][0]["shape"] == "circle")
    colours = {tuple(p) for p in np.asarray(s.image).reshape(-1, 3)}
    assert len(colours) > 2  # box-filtered edges blend object and background


def test_every_attribute_value_occurs():
    seen = {k: set() for k in ("shape", "color", "size", "position")}
    for s in SAMPLES:
        for obj in s.labels["objects"]:
            for k in seen:
                seen[k].add(obj[k])
    assert seen["shape"] == set(SHAPES) and seen["color"] == set(COLORS)
    assert seen["size"] == set(SIZES) and seen["position"] == set(POSITIONS)


def test_write_shapes_makes_an_imagefolder(tmp_path):
    write_shapes(tmp_path, 5, seed=2)
    lines = (tmp_path / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == 5
    rec = json.loads(lines[0])
    assert (tmp_path / rec["file_name"]).exists()
    assert rec["text"] == shapes_sample(2, 0).caption and rec["labels"] == shapes_sample(2, 0).labels


def test_write_shapes_refuses_a_folder_holding_someone_elses_dataset(tmp_path):
    (tmp_path / "cat.png").write_bytes(b"")
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "cat.png", "text": "a cat"}\n')
    with pytest.raises(ValueError, match=r"already holds other files \(cat.png\): write into a new or empty folder"):
        write_shapes(tmp_path, 2)
    assert (tmp_path / "metadata.jsonl").read_text() == '{"file_name": "cat.png", "text": "a cat"}\n'
    write_shapes(tmp_path / "new", 3)
    write_shapes(tmp_path / "new", 2)  # its own folder again: rewritten, the third image of before gone
    assert len((tmp_path / "new" / "metadata.jsonl").read_text().splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["000000.png", "000001.png", "metadata.jsonl"]
    with pytest.raises(ValueError, match="a file, not a folder"):
        write_shapes(tmp_path / "cat.png", 1)


def test_write_shapes_refuses_photos_named_as_its_images(tmp_path):
    """Someone's 000000.png ... with their own metadata.jsonl were taken for an earlier run's and deleted."""
    theirs = '{"file_name": "000000.png", "text": "my cat"}\n'
    (tmp_path / "000000.png").write_bytes(b"a photo")
    (tmp_path / "metadata.jsonl").write_text(theirs)
    with pytest.raises(ValueError, match=r"already holds other files \(metadata.jsonl, not written by this command"):
        write_shapes(tmp_path, 2)
    assert (tmp_path / "000000.png").read_bytes() == b"a photo" and (tmp_path / "metadata.jsonl").read_text() == theirs
    (tmp_path / "metadata.jsonl").unlink()  # images named like its own, and no metadata.jsonl: not its own either
    with pytest.raises(ValueError, match="already holds other files"):
        write_shapes(tmp_path, 2)


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_renders_inside_its_box(shape):
    labels = {
        "background": "black",
        "objects": [
            {"shape": shape, "color": "red", "size": "large", "position": "center", "center": [32, 32], "side": 28}
        ],
    }
    arr = np.asarray(render_scene(labels)).astype(int)
    ys, xs = np.nonzero(np.abs(arr - np.array(BACKGROUNDS["black"])).sum(-1) > 0)
    assert xs.min() >= 32 - 14 and xs.max() <= 32 + 14 - 1
    assert ys.min() >= 32 - 14 and ys.max() <= 32 + 14 - 1


def test_a_128_pixel_scene_is_the_64_pixel_scene_with_every_length_doubled():
    """The spec's Resolution section: box-downsampling a 2x render gives the 64-pixel render up to edge detail,
    so the 64-pixel judge reads it; labels and captions are the same at every resolution."""
    import numpy as np
    from PIL import Image

    from mmgen.eval.judge import read_scene, score_scene

    for index in range(12):
        small, big = shapes_sample(3, index), shapes_sample(3, index, scale=2)
        assert big.image.size == (128, 128) and big.labels == small.labels and big.caption == small.caption
        down = np.asarray(big.image, dtype=np.float32).reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))
        diff = np.abs(down - np.asarray(small.image, dtype=np.float32))
        assert diff.mean() < 1.0 and np.quantile(diff, 0.99) < 40  # equal away from the edges
        back = Image.fromarray(np.round(down).astype(np.uint8))
        assert score_scene(read_scene(back), big.labels)["all"]
    with pytest.raises(ValueError, match="scale must be one of"):
        shapes_sample(0, 0, scale=3)


def test_the_spec_in_docs_is_the_shared_contract():
    """docs/shapes-v1.md is a copy, for readers of this repository, of the contract the project follows (the shared
    spec beside it, where this checkout has one): the two must never drift apart."""
    root = Path(__file__).resolve().parents[1]
    shared = root.parent / "shared" / "specs" / "shapes-v1.md"
    if not shared.is_file():
        pytest.skip("no shared spec beside this checkout")
    assert (root / "docs" / "shapes-v1.md").read_text() == shared.read_text()
