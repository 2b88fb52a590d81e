"""The review page in a real browser: Playwright driving Debian's Chromium against `animagent studio`'s app.

One tiny two-shot film is made; the page must show every shot, move its progress bar as logs/events.jsonl
grows, re-assemble the film with another clip candidate when one is clicked (film.mp4 changes, the other
shot's files do not), and put an edited narration line into film.srt. Screenshots go to the test's tmp folder.
Playwright's own browser download is never used: the executable is /usr/bin/chromium.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the studio extra is not installed: pip install 'animagent[studio]'")
pytest.importorskip("playwright", reason="playwright is not installed: pip install playwright (never `playwright install`)")

from animagent.runs import make_film  # noqa: E402
from tests.test_studio_web import TOKEN, lock_held_by_another_process, serving  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
TWO_SHOTS = "tests/data/two_shots.json"
JOB_S = 120  # a tiny resume on 2 busy cores

# The test's own probe (not the page's code): logs each value a progress bar takes, for the test to read.
PROGRESS_PROBE = """
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver((changes) => {
    for (const change of changes) {
      const bar = change.target.closest && change.target.closest("[data-stage]");
      if (bar && change.attributeName === "value") console.log("progress", bar.dataset.stage, Number(change.target.value));
    }
  }).observe(document.getElementById("progress"), {attributes: true, subtree: true});
});
"""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install -y chromium)"
)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def film_run(tiny_all, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("studio-run") / "run"
    # eval.auto off: every job below re-assembles only, which is what the page is tested for here
    film = make_film(None, profile="tiny", out=out, script=TWO_SHOTS,
                     overrides=[f"weights.root={tiny_all}", "eval.auto=false"])
    return Path(film.run_dir)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def wait_for_job(page, name: str) -> None:
    """The page reloads itself when the job ends; then its status line names the job and its outcome."""
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_contain_text(f"last job: {name}", timeout=JOB_S * 1000)
    expect(page.locator("#status")).to_contain_text("finished")


def test_watch_pick_and_edit_in_a_browser(film_run, browser, tmp_path):
    from playwright.sync_api import expect

    run = film_run
    errors: list[str] = []
    with serving(run) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        seen: list[tuple[str, int]] = []  # every value a progress bar takes, across the page's reloads
        page.on("console", lambda m: seen.append((m.args[1].json_value(), m.args[2].json_value()))
                if m.type == "log" and m.args and m.args[0].json_value() == "progress" else None)
        page.add_init_script(PROGRESS_PROBE)
        page.goto(f"{base}/?token={TOKEN}")
        assert page.url == f"{base}/"  # the token went into a cookie

        # every shot, with its candidates
        expect(page.locator("section.shot")).to_have_count(2)
        for shot in ("s01_k1", "s01_k2"):
            expect(page.locator(f"#shot-{shot} article.keyframe")).to_have_count(2)
            expect(page.locator(f"#shot-{shot} article.clip")).to_have_count(2)
            expect(page.locator(f"#shot-{shot} article.clip.chosen")).to_have_count(1)
            expect(page.locator(f"#shot-{shot} .speech audio")).to_have_count(1)  # its spoken narration
        page.screenshot(path=str(tmp_path / "opened.png"))

        # another process holds the run's lock (a render from the CLI): shown, actions disabled; reloaded when it ends
        with lock_held_by_another_process(run) as holder:
            expect(page.locator("#status")).to_contain_text(f"locked by pid {holder.pid}")
            expect(page.locator('[data-pick="clip-s01_k1-0"]')).to_be_disabled()
            page.evaluate("window.beforeRelease = true")
        (run / ".lock").unlink()
        expect(page.locator('[data-pick="clip-s01_k1-0"]')).to_be_enabled()
        assert page.evaluate("window.beforeRelease === undefined")  # a fresh page: it reloaded

        # the progress bar follows logs/events.jsonl as a render appends to it
        events = run / "logs/events.jsonl"
        bar = page.locator('#progress [data-stage="animate"] progress')
        for done in (1, 2):
            with events.open("a") as fh:
                fh.write(json.dumps({"time": time.time(), "event": "progress", "stage": "animate", "done": done,
                                     "total": 2}) + "\n")
            expect(bar).to_have_js_property("value", done)
        with events.open("a") as fh:
            fh.write(json.dumps({"time": time.time(), "event": "step", "step": "draw/s01_k1",
                                 "outputs": ["keyframes/s01_k1/candidates/1.png"]}) + "\n")
        expect(page.locator("#landed img")).to_have_count(1)  # the new image lands on the page
        page.screenshot(path=str(tmp_path / "progress.png"))

        # a new narration line for s01_k2 reaches film.srt
        line = "Tobin keeps the flame alive until dawn."
        page.locator("#shot-s01_k2 details.edit summary").click()
        page.locator("#shot-s01_k2 textarea[name=narration]").fill(line)
        page.locator("#shot-s01_k2 .edit-form button").click()
        wait_for_job(page, "edit s01_k2")
        assert line in (run / "film.srt").read_text(encoding="utf-8")
        # the render wrote its progress to logs/events.jsonl and the bars followed it live: a fresh page only
        # replays each stage's latest (finished) progress, so a bar at 0 was seen while the job ran
        assert ("assemble", 0) in seen and ("assemble", 1) in seen
        expect(page.locator("#shot-s01_k2 .narration")).to_contain_text(line)

        # another clip candidate for s01_k1: the film is re-assembled with it, s01_k2 is untouched
        chosen = int(page.locator("#shot-s01_k1 article.clip.chosen").get_attribute("data-candidate"))
        other = 1 - chosen
        film_before = sha(run / "film.mp4")
        untouched = {p: sha(p) for p in (run / "clips/s01_k2.mp4", run / "clips/s01_k2.json",
                                         run / "clips/s01_k2/review.json", run / "keyframes/s01_k2.png")}
        page.locator(f'[data-pick="clip-s01_k1-{other}"]').click()
        wait_for_job(page, f"pick clip {other} of s01_k1")
        expect(page.locator(f'#shot-s01_k1 article.clip.chosen[data-candidate="{other}"]')).to_have_count(1)
        assert sha(run / "clips/s01_k1.mp4") == sha(run / f"clips/s01_k1/candidates/{other}.mp4")
        assert sha(run / "film.mp4") != film_before
        assert {p: sha(p) for p in untouched} == untouched
        page.screenshot(path=str(tmp_path / "picked.png"), full_page=True)
    assert errors == []  # no script error, no CSP violation, no missing asset
