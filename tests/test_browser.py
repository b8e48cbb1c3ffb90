"""The app in a real browser: Debian's Chromium driven by Playwright, against the app served on localhost.

    pytest tests/test_browser.py                       # part of `make test` (tiny random pipeline)
    python tests/test_browser.py --out assets/screenshots   # README screenshots of each tab, real model

A failing test leaves a screenshot of the page in build/screenshots/. `make test` installs Debian's chromium
when it is missing; Playwright drives it through `executable_path` (no browser download).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("MMGEN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]
FAILURE_SHOTS = ROOT / "build" / "screenshots"
TIMEOUT_MS = 60_000


# ---------------------------------------------------------------- page helpers (tests and the screenshot script)
def open_tab(page, name: str) -> None:
    # .first: while the page re-measures its tab bar (e.g. as a run streams images), a tab can be listed twice
    page.get_by_role("tab", name=name).first.click()


def to_step(page, k: int, shown: str) -> None:
    """Type step k (from 1, as shown) into the Trajectory slider's box and wait for its info line to say `shown`."""
    number = page.locator("#step input[type=number]")
    number.fill(str(k))
    number.press("Enter")
    page.locator("#step-info").get_by_text(shown).wait_for()


def generate(page, prompt: str, steps: int | None = None) -> None:
    open_tab(page, "Generate")
    box = page.locator("#prompt textarea")
    box.fill(prompt)
    if steps is not None:
        page.locator("#steps input[type=number]").fill(str(steps))
        page.locator("#steps input[type=number]").press("Enter")
    page.locator("#generate").click()
    page.locator("#generate-info").get_by_text("steps of").wait_for(timeout=TIMEOUT_MS)


def upload(page, path: Path) -> None:
    open_tab(page, "Tokenizer")
    page.locator("#upload input[type=file]").set_input_files(str(path))
    page.locator("#stats").get_by_text("PSNR").wait_for(timeout=TIMEOUT_MS)


# ---------------------------------------------------------------- fixtures
# Every message the page shows (gradio's toasts go after 10 s), for a failing test's report
KEEP_MESSAGES = """
window.shownMessages = [];
new MutationObserver(() => document.querySelectorAll('.toast-body:not([data-kept])').forEach(el => {
  el.dataset.kept = '1'; window.shownMessages.push(el.innerText);
})).observe(document, {childList: true, subtree: true});
"""


@pytest.fixture
def page(browser, tiny_app_url, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.add_init_script(KEEP_MESSAGES)
    page.goto(tiny_app_url)
    page.get_by_role("tab", name="Generate").first.wait_for()  # .first: see open_tab
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        FAILURE_SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(FAILURE_SHOTS / f"{request.node.name}.png"), full_page=True)
        print("messages shown:", page.evaluate("window.shownMessages"))  # in the failure's report
    context.close()


# ---------------------------------------------------------------- tests
def test_type_a_prompt_and_generate(page):
    generate(page, "a red circle on a white background", steps=3)
    assert "3 steps of" in page.locator("#generate-info").inner_text()
    assert page.locator("#image img").get_attribute("src")
    assert page.locator("#image-tokens img").get_attribute("src")


def test_scrub_the_trajectory_slider(page):
    generate(page, "a blue star", steps=4)
    open_tab(page, "Trajectory")
    page.locator("#step-info").get_by_text("Step 4 of 4").wait_for()
    to_step(page, 2, "Step 2 of 4")
    page.locator("#prev").click()
    page.locator("#step-info").get_by_text("Step 1 of 4").wait_for()
    assert page.locator("#x0 img").get_attribute("src") and page.locator("#x-t img").get_attribute("src")


def test_the_trajectory_tab_draws_only_while_it_is_open(page, monkeypatch):
    """A visitor who only generates costs no drawing of trajectory frames and no replay of the DiT for the word
    attention; opening the tab draws the last run, and a run that ends while the tab is open is drawn too."""
    import time

    from mmgen.app import generate as generate_tab
    from mmgen.app.frames import FrameDrawer, Trajectory

    calls = {"view": 0, "replay": 0}
    view, replay, advance = FrameDrawer.view, Trajectory.replay_attention, generate_tab.advance

    def counted(name, fn):
        def call(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return call

    monkeypatch.setattr(FrameDrawer, "view", counted("view", view))
    monkeypatch.setattr(Trajectory, "replay_attention", counted("replay", replay))
    generate(page, "a large red circle", steps=3)
    generate(page, "a small blue star", steps=4)
    time.sleep(1.0)  # the events a finished run sets off (the old page replayed the attention here)
    assert calls == {"view": 0, "replay": 0}
    open_tab(page, "Trajectory")
    page.locator("#step-info").get_by_text("Step 4 of 4").wait_for()
    page.locator("#attention-info").get_by_text("'small' at step 4 of 4").wait_for()
    assert calls["view"] >= 1 and calls["replay"] >= 1

    # A run of as many steps (the slider stays where it is) that finishes after the visitor came back to the tab
    monkeypatch.setattr(generate_tab, "advance", lambda *a: (time.sleep(0.3), advance(*a))[1])
    open_tab(page, "Generate")
    page.locator("#prompt textarea").fill("a green square")
    page.locator("#generate").click()
    open_tab(page, "Trajectory")
    page.locator("#attention-word").get_by_text("square", exact=True).wait_for()
    page.locator("#attention-info").get_by_text("'green' at step 4 of 4").wait_for()


def test_a_step_moved_as_the_tab_opens_keeps_the_word_map_at_that_step(page, monkeypatch):
    """Opening the tab draws the word's map and strip at the last step; a step moved meanwhile is drawn last."""
    import time

    from mmgen.app import word_attention

    strip = word_attention.word_map_strip
    monkeypatch.setattr(word_attention, "word_map_strip", lambda *a, **k: (time.sleep(1.0), strip(*a, **k))[1])
    generate(page, "a small blue star", steps=4)
    open_tab(page, "Trajectory")
    page.locator("#step-info").get_by_text("Step 4 of 4").wait_for()
    to_step(page, 2, "Step 2 of 4")
    time.sleep(2.0)  # the strip's draw (1 s) has finished: without the redraw its step-4 map would be on top
    page.locator("#attention-info").get_by_text("at step 2 of 4").wait_for(timeout=2000)


def test_each_new_run_opens_at_its_last_step_frames_word_map_and_slider_alike(page):
    """Runs of 4, 5, then 3 steps, the same words. The slider, set by Generate while its tab was hidden, mounted
    with the last run's range and sent a value clamped to it (frames 'Step 4 of 5' under a slider at 5); the
    tab's own draw handed the word's view the step's index where it takes the slider's count ('step 3 of 4'
    beside frames of step 4)."""
    for steps in (4, 5, 3):
        generate(page, "a red circle", steps=steps)
        open_tab(page, "Trajectory")
        page.locator("#step-info").get_by_text(f"Step {steps} of {steps}").wait_for()
        page.locator("#attention-info").get_by_text(f"at step {steps} of {steps}").wait_for()
        page.wait_for_function(f"document.querySelector('#step input[type=number]').value === '{steps}'")


def test_step_mode(page):
    open_tab(page, "Generate")
    page.locator("#steps input[type=number]").fill("3")
    page.locator("#steps input[type=number]").press("Enter")
    open_tab(page, "Trajectory")
    for k in (1, 2, 3):
        page.locator("#step-once").click()
        # The last click finishes the run: the slider jumps to it and its view ("Step 3 of 3") may replace the
        # step-mode line at once, so match either wording.
        page.locator("#step-info").get_by_text(re.compile(f"step {k} of 3", re.IGNORECASE)).wait_for()
        if k < 3:  # the word maps are the last finished run's, as the slider is, and the line says so
            page.locator("#attention-info").get_by_text("stay the last finished run's").wait_for()
    page.wait_for_function("document.querySelector('#step input[type=number]').value === '3'")
    page.locator("#attention-info").get_by_text("at step 3 of 3").wait_for()  # the finished run's word maps


def test_a_new_run_clears_the_last_runs_branch(page):
    """The Original / Branch pair and its line belonged to the run before: they stayed under a new run's frames."""
    generate(page, "a red circle", steps=4)
    open_tab(page, "Trajectory")
    page.locator("#step-info").get_by_text("Step 4 of 4").wait_for()  # the tab's own draw first: it moves the slider
    to_step(page, 2, "Step 2 of 4")  # a branch starts before the last step
    page.get_by_text("Branch from this step").click()  # the accordion
    page.locator("#branch").click()
    page.locator("#branch-info").get_by_text("Branched after step").wait_for()
    for box, value in (("#branch-guidance", "7"), ("#branch-seed", "5")):  # this run's branch settings
        page.locator(f"{box} input[type=number]").fill(value)
    page.locator("#branch-prompt textarea").fill("a green star")
    generate(page, "a blue square", steps=5)
    open_tab(page, "Trajectory")
    page.locator("#step-info").get_by_text("of 5").wait_for()
    page.wait_for_function("!document.querySelector('#branch-info').innerText.includes('Branched')")
    assert page.locator("#branch-result img").count() == 0
    # the new run's own settings: a branch left as it is changes only the noise to come (guidance and seed stayed)
    guidance = page.locator("#guidance input[type=number]").input_value()
    page.wait_for_function(f"document.querySelector('#branch-guidance input[type=number]').value === '{guidance}'")
    assert page.locator("#branch-seed input").input_value() == ""
    assert page.locator("#branch-prompt textarea").input_value() == ""


def test_upload_an_image_and_click_a_token(page, tmp_path):
    from mmgen.data.shapes import shapes_sample

    path = tmp_path / "scene.png"
    shapes_sample(0, 1).image.save(path)
    upload(page, path)
    assert "16×16 tokens" in page.locator("#stats").inner_text()
    page.locator("#token-map img").click(position={"x": 30, "y": 30})
    page.locator("#cell-info").get_by_text("holds code").wait_for()
    assert "1 cell(s) selected" in page.locator("#cell-info").inner_text()
    page.locator("#set-code").click()
    page.locator("#cell-info").get_by_text("Set 1 cell(s) to code").wait_for()


def test_open_the_codebook(page):
    open_tab(page, "Codebook")
    page.locator("#codebook-info").get_by_text("Reference set").wait_for()
    grid = page.locator("#codebook-grid img")
    height = grid.bounding_box()["height"]
    grid.click(position={"x": 10, "y": 4})  # the blank band over the tiles (room for the label): no code
    page.get_by_text("Click on a code tile.").wait_for()
    grid.click(position={"x": 10, "y": height - 6})  # a tile of the last row
    page.locator("#code-info").get_by_text("occurrences").wait_for()


def test_a_page_number_typed_shows_that_page(page, tmp_path, monkeypatch):
    """A large codebook's page box: the page typed shows at once (it showed only once the box lost focus)."""
    from tokenizer_families import make_family

    monkeypatch.chdir(tmp_path)
    make_family("ldm-f4", num_vq_embeddings=600).save_pretrained(tmp_path / "big")
    open_tab(page, "Codebook")
    page.locator("#codebook-info").get_by_text("Reference set").wait_for()
    page.locator("#codebook-tokenizer-load-box").get_by_text("Load another tokenizer").click()
    page.locator("#codebook-tokenizer-source textarea").fill(str(tmp_path / "big"))
    page.locator("#codebook-tokenizer-load").click()
    page.locator("#codebook-info").get_by_text("Page 1 of 3").wait_for(timeout=TIMEOUT_MS)
    box = page.locator("#codebook-page input[type=number]")
    box.fill("2")
    page.locator("#codebook-info").get_by_text("Page 2 of 3").wait_for(timeout=TIMEOUT_MS)
    assert box.evaluate("el => el === document.activeElement")  # still in the box: no blur needed

    # pages drawn slowly (a busy Space): a reply to the first key must not reset the box the last one set
    import time

    from mmgen.app.codebook import CodebookTab

    draw = CodebookTab.codebook_page
    monkeypatch.setattr(CodebookTab, "codebook_page", lambda *a: (time.sleep(1.0), draw(*a))[1])
    box.fill("1")
    box.fill("3")
    time.sleep(3.0)
    page.locator("#codebook-info").get_by_text("Page 3 of 3").wait_for(timeout=TIMEOUT_MS)
    assert box.input_value() == "3"

    # a code looked up on another page: the summary names the page the grid jumped to (it said the page before)
    page.locator("#sort-codes").get_by_text("code id").click()
    page.locator("#codebook-info").get_by_text("Page 1 of 3").wait_for(timeout=TIMEOUT_MS)
    page.locator("#code-id input").fill("599")
    page.locator("#show-code").click()
    page.locator("#code-info").get_by_text("Code 599").wait_for(timeout=TIMEOUT_MS)
    page.locator("#codebook-info").get_by_text("Page 3 of 3").wait_for(timeout=TIMEOUT_MS)
    assert box.input_value() == "3"
    # another order: the code's details go with the page they belonged to
    page.locator("#sort-codes").get_by_text("usage").click()
    page.wait_for_function("!document.querySelector('#code-info').innerText.includes('Code 599')")


def test_load_a_second_tokenizer_and_compare(page, tmp_path, monkeypatch):
    """A visitor loads a folder through the load box; it joins the comparison beside the generator's own."""
    from tokenizer_families import make_family

    from mmgen.data.shapes import shapes_sample

    monkeypatch.chdir(tmp_path)  # visitors load folders inside the app's own (its working directory)
    make_family("vq-diffusion").save_pretrained(tmp_path / "second")
    path = tmp_path / "scene.png"
    shapes_sample(0, 1).image.save(path)
    upload(page, path)
    page.locator("#tokenizer-picker-load-box").get_by_text("Load another tokenizer").click()
    page.locator("#tokenizer-picker-source textarea").fill(str(tmp_path / "second"))
    page.locator("#tokenizer-picker-load").click()
    page.locator("#tokenizer-picker-status").get_by_text("Loaded").wait_for(timeout=TIMEOUT_MS)
    assert "48 codes" in page.locator("#tokenizer-picker-status").inner_text()
    # the load's status line shows before the event after it puts the tokenizer into the comparison (a busy CI
    # machine clicked Compare in between: "Pick 2 to 4 tokenizers")
    page.locator("#compare-tokenizers").get_by_text("second").wait_for(timeout=TIMEOUT_MS)
    page.locator("#compare").click()
    page.locator("#compare-info").get_by_text("Compared at").wait_for(timeout=TIMEOUT_MS)
    table = page.locator("#compare-table").inner_text()
    assert "tiny-test" in table and "second" in table and "8×8" in table and "16×16" in table
    assert "edges in place" in table and "edges in place" in page.locator("#compare-info").inner_text()
    assert "Traceback" not in page.content()
    # another image: the comparison of the last one is cleared (its table and sheet stayed under the new image)
    shapes_sample(0, 2).image.save(tmp_path / "other.png")
    page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "other.png"))
    page.wait_for_function("!document.querySelector('#compare-info').innerText.includes('Compared at')")
    assert "tiny-test" not in page.locator("#compare-table").inner_text()  # no row left


def test_read_the_generated_image_back_as_text_and_see_a_words_attention(page, tmp_path):
    generate(page, "a large red circle", steps=3)
    open_tab(page, "Trajectory")
    page.locator("#attention-word").get_by_text("circle", exact=True).click()
    page.locator("#attention-info").get_by_text("'circle' at step").wait_for(timeout=TIMEOUT_MS)
    open_tab(page, "Image → text")
    page.locator("#caption-candidates textarea").fill("a blue star")  # typed before: kept, under the prompt
    open_tab(page, "Generate")
    page.locator("#read-back").click()
    page.wait_for_function("document.querySelector('#caption-candidates textarea').value.startsWith('a large')")
    assert page.locator("#caption-candidates textarea").input_value() == "a large red circle\na blue star"
    page.locator("#rank-captions").click()
    page.locator("#caption-info").get_by_text("Ranked 2 caption(s)").wait_for(timeout=TIMEOUT_MS)
    assert "Traceback" not in page.content()
    # another image: the last one's ranking goes (it stayed beside the new image)
    from mmgen.data.shapes import shapes_sample

    shapes_sample(0, 1).image.save(tmp_path / "scene.png")
    page.locator("#caption-image input[type=file]").set_input_files(str(tmp_path / "scene.png"))
    page.wait_for_function("!document.querySelector('#caption-info').innerText.includes('Ranked')")


def test_bad_upload_shows_a_message_not_a_traceback(page, tmp_path):
    """... and clears the image before it: token edits used to apply to it while the new file was shown."""
    from mmgen.data.shapes import shapes_sample

    shapes_sample(0, 1).image.save(tmp_path / "scene.png")
    upload(page, tmp_path / "scene.png")
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    page.locator("#upload input[type=file]").set_input_files(str(path))
    page.locator("#stats").get_by_text("can't be used", exact=False).wait_for(timeout=TIMEOUT_MS)
    assert "PSNR" not in page.locator("#stats").inner_text() and "Traceback" not in page.content()
    page.locator("#set-code").click()
    page.get_by_text("Tokenize an image first", exact=False).first.wait_for(timeout=TIMEOUT_MS)


def test_the_tab_bar_keeps_its_tabs_as_they_are_opened(page):
    """A component between gr.Tabs and its tabs (a gr.State) shifted gradio's tab order: opening Trajectory showed
    its label in Codebook's place, and Codebook could no longer be opened."""
    labels = [tab.inner_text() for tab in page.get_by_role("tab").all()]
    assert len(set(labels)) == len(labels) and "Codebook" in labels
    for name in ("Trajectory", "Tokenizer", "Codebook", "Image → text", "Generate"):
        open_tab(page, name)
        page.locator("[role=tab][aria-selected=true]", has_text=name).first.wait_for(timeout=TIMEOUT_MS)
        assert [tab.inner_text() for tab in page.get_by_role("tab").all()] == labels, name


def test_a_refused_request_says_why_under_its_control(page):
    """The app's one check runs when the job asks to join the queue; the browser shows its message under the
    control it concerns, and nothing runs."""
    open_tab(page, "Generate")
    page.locator("#prompt textarea").fill("   ")
    page.locator("#generate").click()
    page.locator("#prompt").get_by_text("Type a prompt first").wait_for(timeout=TIMEOUT_MS)
    page.locator("#prompt textarea").fill("a red circle")
    page.locator("#generate").click()  # and a corrected request goes through
    page.locator("#generate-info").get_by_text("steps of").wait_for(timeout=TIMEOUT_MS)


def test_a_prompt_with_words_the_model_never_saw_can_be_put_in_words_it_knows(browser):
    """After a run, the note under the prompt names the words the model never saw, and a button puts the prompt
    in words it knows; once used, note and button go."""
    from conftest import launched, make_tiny_pipe

    import app
    from mmgen.vocabulary import Vocabulary

    demo = app.build_demo(make_tiny_pipe(), model_name="tiny-test")
    demo.mmgen_context.__dict__["vocabulary"] = Vocabulary.from_captions(["a large red circle", "a small blue square"])
    with launched(demo) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        button = page.locator("#use-known-words")
        generate(page, "a large red circle", steps=2)
        page.locator("#generate-info").get_by_text("2 steps of").wait_for()
        assert not button.is_visible()  # every word known: no note, no button
        generate(page, "a lagre red squre", steps=2)
        page.locator("#unknown-words").get_by_text("never saw").wait_for()
        button.click()
        page.wait_for_function("document.querySelector('#prompt textarea').value === 'a large red square'")
        button.wait_for(state="hidden")
        assert "never saw" not in page.locator("#unknown-words").inner_text()
        page.locator("#prompt textarea").fill("a small blue circel")
        page.locator("#prompt textarea").press("Enter")  # a run started by Enter says so too
        button.wait_for(state="visible")
        page.locator("#unknown-words").get_by_text("circel").wait_for()
        context.close()


# ---------------------------------------------------------------- README screenshots (real model)
def screenshots(out: Path) -> None:
    """Launch the app on the shipped model and capture each tab after a typical action."""
    from playwright.sync_api import sync_playwright

    import app
    from mmgen.app.context import SHAPES_PROMPTS
    from mmgen.pipeline import MMGenPipeline
    from mmgen.tokens import default_model

    out.mkdir(parents=True, exist_ok=True)
    limits = app.Limits()
    pipe = MMGenPipeline.from_pretrained(default_model())
    steps = pipe.sampling_defaults["num_inference_steps"]  # what the page samples at: the model's own
    demo = app.build_demo(pipe, limits=limits)
    app.serve(demo, limits, prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(demo.local_url)
            generate(page, SHAPES_PROMPTS[2])
            page.screenshot(path=str(out / "generate.png"), full_page=True)
            open_tab(page, "Trajectory")
            page.locator("#step-info").get_by_text(f"Step {steps} of {steps}").wait_for()  # the run's frames are in
            page.locator("#attention-info").get_by_text(f"at step {steps} of {steps}").wait_for()  # the word's map
            to_step(page, 7, "Step 7 of")
            page.locator("#attention-info").get_by_text(f"at step 7 of {steps}").wait_for()
            page.wait_for_timeout(1000)  # the step's images, drawn
            page.screenshot(path=str(out / "trajectory.png"), full_page=True)
            upload(page, ROOT / "assets" / "examples" / "coffee.png")
            page.locator("#token-map img").click(position={"x": 120, "y": 90})
            page.locator("#cell-info").get_by_text("holds code").wait_for()
            page.screenshot(path=str(out / "tokenizer.png"), full_page=True)
            open_tab(page, "Codebook")
            page.locator("#codebook-info").get_by_text("Reference set").wait_for()
            grid = page.locator("#codebook-grid img")
            grid.click(
                position={"x": 40, "y": grid.bounding_box()["height"] / 2}
            )  # a tile (a band over them is blank)
            page.locator("#code-info").get_by_text("occurrences").wait_for()
            page.screenshot(path=str(out / "codebook.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"wrote screenshots to {out}")


if __name__ == "__main__":
    import argparse

    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    parser = argparse.ArgumentParser(description="README screenshots of each tab, on the shipped model")
    parser.add_argument("--out", default=str(ROOT / "assets" / "screenshots"))
    screenshots(Path(parser.parse_args().out))
