"""The explore notebook in a real browser: JupyterLab on loopback, headless Debian Chromium driven by playwright.

Recipe and pitfalls: ../shared/docs/browser-testing.md. The notebook (nbs/tutorials/explore.ipynb, a copy) runs on its
small fixture run (ABAW_EXPLORE_FIXTURE=1); the tests move the slider with the keyboard, click a timeline and a
confusion-matrix cell, and read the results from the page. Screenshots of failures go to .cache/browser-screenshots/.
"""
import tempfile, time
from pathlib import Path

import pytest

from browser_lab import CHROMIUM, ROOT, jupyter_lab, notebook_page, output_stderr, shot

NB = ROOT / "nbs" / "tutorials" / "explore.ipynb"

pytestmark = [pytest.mark.timeout(150),   # the first test also starts JupyterLab and runs the notebook
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium missing (make browser installs it)")]


@pytest.fixture(scope="module")
def lab():
    with jupyter_lab(NB, {"ABAW_EXPLORE_FIXTURE": "1"}) as (url, name):   # the notebook runs on its small fixture run
        yield url, name


@pytest.fixture(scope="module")
def page(lab):
    with notebook_page(*lab, [".abaw-scrubber .abaw-timeline .js-plotly-plot", ".abaw-explorer .abaw-confusion .js-plotly-plot",
                              ".abaw-explorer .abaw-timeline .js-plotly-plot"]) as pg:
        yield pg


@pytest.fixture
def shot_on_failure(page, request):
    "The page; a screenshot named after the test when the test fails."
    failed = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed: shot(page, request.node.name)


# The first scrubber on the page is the notebook's own VideoScrubber; the FailureExplorer holds a second one.
STATE = """(sel) => { const s = document.querySelector(sel);
  const gd = s.querySelector('.abaw-timeline .js-plotly-plot');
  const h = s.querySelector('.abaw-slider .noUi-handle');
  return {src: s.querySelector('img.abaw-frame').src, cursor: gd._fullLayout.shapes[0].x0,
          value: Number(h.getAttribute('aria-valuenow')), max: Number(h.getAttribute('aria-valuemax')),
          min: Number(h.getAttribute('aria-valuemin'))}; }"""


def _state(pg, sel=".abaw-scrubber"): return pg.evaluate(STATE, sel)


def _wait_state(pg, cond, sel=".abaw-scrubber", timeout=20):
    "Poll the page until cond(state) holds; return the state."
    end = time.time() + timeout
    while True:
        s = _state(pg, sel)
        if cond(s): return s
        if time.time() > end: raise AssertionError(f"page state never satisfied the condition: {s}")
        time.sleep(0.1)


def test_keyboard_moves_frame_and_cursor(shot_on_failure):
    pg = shot_on_failure
    s0 = _wait_state(pg, lambda s: s["src"].startswith("blob:") or s["src"].startswith("data:"))
    handle = pg.locator(".abaw-scrubber .abaw-slider .noUi-handle").first
    handle.focus()
    pg.keyboard.press("End")
    s1 = _wait_state(pg, lambda s: s["value"] == s["max"] and s["cursor"] == s["max"] and s["src"] != s0["src"])
    for _ in range(3): pg.keyboard.press("ArrowLeft")
    s2 = _wait_state(pg, lambda s: s["value"] == s1["max"] - 3 and s["cursor"] == s1["max"] - 3)
    assert s2["src"] != s1["src"]


def test_click_on_timeline_seeks(shot_on_failure):
    pg = shot_on_failure
    s0 = _state(pg)
    target = (s0["min"] + s0["max"]) // 3
    if target == s0["value"]: target += 7
    pg.evaluate("() => document.querySelector('.abaw-scrubber .abaw-timeline').scrollIntoView()")
    x, y = pg.evaluate("""(t) => { const gd = document.querySelector('.abaw-scrubber .abaw-timeline .js-plotly-plot');
        const xa = gd._fullLayout.xaxis3, ya = gd._fullLayout.yaxis3, r = gd.querySelector('.main-svg').getBoundingClientRect();
        return [r.left + xa._offset + xa.d2p(t), r.top + ya._offset + ya._length / 2]; }""", target)
    pg.mouse.click(x, y)
    s = _wait_state(pg, lambda s: abs(s["value"] - target) <= 1 and s["cursor"] == s["value"])
    assert s["src"] != s0["src"]


def test_click_on_confusion_cell_lists_its_frames(shot_on_failure):
    pg = shot_on_failure
    cm = pg.evaluate("() => document.querySelector('.abaw-confusion .js-plotly-plot').data[0].text")
    names = pg.evaluate("() => document.querySelector('.abaw-confusion .js-plotly-plot').data[0].x")
    off = [(cm[i][j], i, j) for i in range(len(cm)) for j in range(len(cm)) if i != j]
    n, li, pj = max(off)
    assert n > 0, "the fixture run's confusion matrix has no off-diagonal frames"
    pg.evaluate("() => document.querySelector('.abaw-confusion').scrollIntoView()")
    x, y = pg.evaluate("""([l, p]) => { const gd = document.querySelector('.abaw-confusion .js-plotly-plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.querySelector('.main-svg').getBoundingClientRect();
        return [r.left + xa._offset + xa.d2p(p), r.top + ya._offset + ya.d2p(l)]; }""", [names[li], names[pj]])
    pg.mouse.click(x, y)
    pg.wait_for_function("(n) => document.querySelectorAll('.abaw-frames select option').length === n", arg=n, timeout=20_000)
    shown = pg.evaluate("() => Array.from(document.querySelectorAll('.abaw-frames select option')).map(o => o.textContent.replace(/\u00a0/g, ' '))")
    # the same frames, computed from the same fixture without widgets
    from abaw_workbench.explore import Interpretation, fixture_run
    with tempfile.TemporaryDirectory() as d:
        want = Interpretation.from_run(fixture_run(Path(d) / "fixture")).confusion_frames(names[li], names[pj])
    assert shown == [f"{v} · frame {i}" for v, i in zip(want.video, want.frame_index)]
    # choosing one of them shows it in the explorer's scrubber
    pg.locator(".abaw-frames select").select_option(index=len(shown) - 1)
    _wait_state(pg, lambda s: s["value"] == int(want.frame_index.iloc[-1]) and s["cursor"] == s["value"], sel=".abaw-explorer .abaw-scrubber")


def test_no_errors_in_the_page_or_the_outputs(shot_on_failure):
    "No script errors in the page (e.g. a figure plotly.js cannot draw), no errors or warnings in the cells' outputs."
    pg = shot_on_failure
    assert not pg.abaw_errors, f"errors in the page: {pg.abaw_errors}"
    stderr = output_stderr(pg)
    assert not stderr, f"stderr in the notebook's outputs: {stderr}"
