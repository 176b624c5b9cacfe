"""The explore notebook in a real browser: JupyterLab on loopback, headless Debian Chromium driven by playwright.

Recipe and pitfalls: ../shared/docs/browser-testing.md. The notebook (nbs/tutorials/explore.ipynb, a copy) runs on its
small fixture run, kept in a folder of this module (ABAW_EXPLORE_FIXTURE=<folder>) so that it outlives its kernel.
The tests move the slider with the keyboard, click a timeline and a confusion-matrix cell, and read the results from the
page; then (issue 28) they measure the face-first layout at 1,100 and 1,920 px, and go from a failure to a fix: tag a
range chosen on the timeline (click, shift-click), correct the EXPR label of a range chosen by dragging across it, open
the notebook again (kernel shut down, page reloaded, a new kernel) and find both kept, export the corrected set with
`abaw curate export`, and read the corrected frames back with `read_split`. Screenshots of failures go to
.cache/browser-screenshots/.
"""
import itertools, json, subprocess, sys, tempfile, time
from pathlib import Path

import pytest

from browser_lab import CHROMIUM, ROOT, jupyter_lab, notebook_page, output_stderr, shot

NB = ROOT / "nbs" / "tutorials" / "explore.ipynb"

pytestmark = [pytest.mark.timeout(240),   # the first test also starts JupyterLab and runs the notebook
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium missing (make browser installs it)")]


READY = [".abaw-scrubber .abaw-timeline .js-plotly-plot", ".abaw-explorer .abaw-confusion .js-plotly-plot",
         ".abaw-explorer .abaw-timeline .js-plotly-plot", ".abaw-scrubber .abaw-curate .abaw-tag-button"]


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("explore") / "fixture"


@pytest.fixture(scope="module")
def lab(fixture_dir):
    with jupyter_lab(NB, {"ABAW_EXPLORE_FIXTURE": str(fixture_dir)}) as (url, name):   # the notebook runs on its small fixture run
        yield url, name


@pytest.fixture(scope="module")
def page(lab):
    with notebook_page(*lab, READY) as pg:
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
    _click_timeline(pg, target)
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


# Every scrubber on the page: its frame's box, its info panel's box, and the info text as laid out: the right edge of its
# text and how many rendered lines it takes (a readable panel shows each line of text on one line, inside the panel).
MEASURE = """() => Array.from(document.querySelectorAll('.abaw-scrubber')).map(s => {
  const f = s.querySelector('img.abaw-frame').getBoundingClientRect(), info = s.querySelector('.abaw-info');
  const box = info.getBoundingClientRect(), walk = document.createTreeWalker(info, NodeFilter.SHOW_TEXT), rects = [];
  for (let n = walk.nextNode(); n; n = walk.nextNode()) { const r = document.createRange(); r.selectNodeContents(n);
    for (const q of r.getClientRects()) if (q.width > 0) rects.push(q); }
  return {frame_w: f.width, frame_h: f.height, info_w: box.width, info_client: info.clientWidth, info_scroll: info.scrollWidth,
          text_right: Math.max(0, ...rects.map(q => q.right - box.left)), rendered_lines: new Set(rects.map(q => Math.round(q.top))).size,
          text_lines: info.innerText.split('\\n').filter(l => l.trim()).length, text: info.innerText,
          scrubber_scroll: s.scrollWidth, scrubber_client: s.clientWidth}; })"""


def _resize(pg, width, height, timeout=30):
    "Set the window's size and wait until every timeline has its new width (its box reports it to the kernel, which relays it out)."
    pg.set_viewport_size({"width": width, "height": height})
    last, end = None, time.time() + timeout
    while time.time() < end:
        time.sleep(0.5)
        w = pg.evaluate("() => Array.from(document.querySelectorAll('.abaw-timeline')).map(b => [b.clientWidth, b.querySelector('.js-plotly-plot')._fullLayout.width])")
        if w == last and all(abs(box - fig - 4) <= 1 or fig == 480 for box, fig in w): return
        last = w
    raise AssertionError(f"the timelines never took their boxes' width: {last}")


@pytest.mark.parametrize("width", [1100, 1920])
def test_layout_puts_the_face_first(page, width):
    "At 1,100 and 1,920 px the frame keeps >= 224 px on its long side and the info panel's text fits; nothing overflows."
    _resize(page, width, 1200)
    m = page.evaluate(MEASURE)
    try:
        assert len(m) >= 2, m
        for x in m:
            assert max(x["frame_w"], x["frame_h"]) >= 224, x
            assert x["info_w"] >= 200 and x["text_right"] <= x["info_client"] + 1 and x["info_scroll"] <= x["info_client"] + 1, x
            assert x["rendered_lines"] == x["text_lines"], x           # no line of the panel wraps
            assert x["text"].startswith("frame ") and "EXPR" in x["text"], x
            assert x["scrubber_scroll"] <= x["scrubber_client"] + 1, x   # the figures wrap or shrink, nothing sticks out
    except AssertionError:
        shot(page, f"layout-{width}px"); raise
    if width == 1920: assert max(x["frame_w"] for x in m) > 224    # larger when room allows


# The first scrubber on the page is the notebook's own VideoScrubber.
TL = "document.querySelector('.abaw-scrubber .abaw-timeline .js-plotly-plot')"


def _timeline_point(pg, frame, axis="3"):
    "Page coordinates of `frame` on the timeline, in the middle of the subplot of xaxis/yaxis `axis`."
    pg.evaluate(f"() => {TL}.scrollIntoView({{block: 'center'}})")
    return pg.evaluate(f"""([t, a]) => {{ const gd = {TL}, xa = gd._fullLayout['xaxis' + a], ya = gd._fullLayout['yaxis' + a];
        const r = gd.querySelector('.main-svg').getBoundingClientRect();
        return [r.left + xa._offset + xa.d2p(t), r.top + ya._offset + ya._length / 2]; }}""", [frame, "" if axis == "1" else axis])


def _click_timeline(pg, frame, shift=False, timeout=20):
    """Click `frame` on the timeline's third subplot as a user does: point at it, wait until plotly's hover is on it, click.
    Plotly reports a click with the points its last hover found, and its hover is throttled (and skipped while a relayout
    from the kernel redraws the figure): a click sent at once with the move can report the previous point (seen in CI)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    x, y = _timeline_point(pg, frame)
    end, on = time.time() + timeout, f"(f) => {{ const h = {TL}._hoverdata; return !!h && h.length > 0 && Math.round(h[0].x) === f; }}"
    for k in itertools.count():
        pg.mouse.move(x, y + k % 2)            # each try a new mousemove, on the same frame
        try: pg.wait_for_function(on, arg=frame, timeout=1000); break
        except PlaywrightTimeout:
            if time.time() > end: raise AssertionError(f"plotly's hover never reached frame {frame} of the timeline")
    if shift: pg.keyboard.down("Shift")
    pg.mouse.click(x, y + k % 2)
    if shift: pg.keyboard.up("Shift")


def _text(pg, sel):
    return pg.evaluate("(s) => (document.querySelector(s) || {innerText: ''}).innerText.replace(/\\u00a0/g, ' ')", sel)


def _wait_text(pg, sel, want, timeout=30):
    end = time.time() + timeout
    while want not in (t := _text(pg, sel)):
        if time.time() > end: raise AssertionError(f"{sel}: {want!r} never shown (shows {t!r})")
        time.sleep(0.1)


def _rows(pg, meta):
    "The y rows and z values of the first scrubber's timeline heat-map `meta`."
    return pg.evaluate(f"(m) => {{ const t = {TL}.data.find(d => d.meta === m); return [t.y, t.z, t.x]; }}", meta)


def _column(x, frame):
    return min(range(len(x)), key=lambda k: abs(x[k] - frame))


def _run_all_again(pg):
    "Open the notebook again: shut its kernel down (no widget outlives it), reload the page, run every cell once a new kernel is idle."
    pg.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    pg.reload()
    pg.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                         " && window.jupyterapp.shell.currentWidget.sessionContext && window.jupyterapp.shell.currentWidget.sessionContext.session"
                         " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                         " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'", timeout=60_000)
    pg.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    for sel in READY: pg.wait_for_selector(sel, state="attached", timeout=120_000)


def test_tag_a_range_correct_expr_reload_export(page, lab, fixture_dir, tmp_path):
    pg = page
    try:
        _resize(pg, 1600, 1400)
        tl = pg.evaluate(f"() => [{TL}.layout.title.text, {TL}.data[0].x[0], {TL}.data[0].x[{TL}.data[0].x.length - 1]]")
        video, lo, hi = tl[0], int(tl[1]), int(tl[2])
        flips = [f for f in json.loads((fixture_dir / "run.json").read_text())["config"]["fixture"]["flips"] if f[0] == video]
        free = lambda a, b: all(b < f[1] or a > f[2] for f in flips)   # away from the planted flips the notebook corrects
        a = next(s for s in range(lo + 5, hi - 40) if free(s, s + 15))
        c = next(s for s in range(a + 20, hi - 15) if free(s, s + 10))
        # tag a range: click its first frame, shift-click its last
        _click_timeline(pg, a)
        pg.wait_for_function(f"(f) => {TL}._fullLayout.shapes[0].x0 === f", arg=a, timeout=20_000)
        _click_timeline(pg, a + 15, shift=True)
        _wait_text(pg, ".abaw-scrubber .abaw-selection", f"frames {a}–{a + 15} (16 frames)")
        pg.locator(".abaw-scrubber .abaw-tag-choice button", has_text="occluded").first.click()
        pg.locator(".abaw-scrubber .abaw-tag-button").first.click()
        _wait_text(pg, ".abaw-scrubber .abaw-curate-msg", f"Tagged 16 frames of {video} 'occluded'")
        # correct the EXPR label of a range chosen by dragging across the valence curves
        for attempt in (1, 2):   # plotly.js throttles its selection; on a loaded machine a fast drag can end before it is computed
            (x0, y0), (x1, _) = _timeline_point(pg, c - 0.4, "1"), _timeline_point(pg, c + 10.4, "1")
            pg.mouse.move(x0, y0); pg.mouse.down()
            for k in range(1, 13): pg.mouse.move(x0 + (x1 - x0) * k / 12, y0); pg.wait_for_timeout(40)
            pg.wait_for_timeout(300); pg.mouse.up()
            try: _wait_text(pg, ".abaw-scrubber .abaw-selection", f"frames {c}–{c + 10} (11 frames)", timeout=15); break
            except AssertionError:
                if attempt == 2: raise
        pg.locator(".abaw-scrubber .abaw-fix-expr select").first.select_option(label="Surprise")
        pg.locator(".abaw-scrubber .abaw-fix-expr-button").first.click()
        _wait_text(pg, ".abaw-scrubber .abaw-curate-msg", f"Corrected 11 frames of {video} ({c}–{c + 10}): EXPR Surprise")

        _run_all_again(pg)                                          # the notebook opened again: both kept
        ey, ez, ex = _rows(pg, "expr")
        assert "EXPR corrected" in ey, ey
        row = ez[ey.index("EXPR corrected")]
        assert [row[_column(ex, f)] for f in range(c, c + 11)] == [6] * 11, row
        ty, tz, tx = _rows(pg, "errors")
        assert ty[-1] == "tagged", ty
        assert [tz[-1][_column(tx, f)] for f in range(a, a + 16)] == [-2] * 16, tz[-1]

        # export with the command line, read the new entry back
        cat, out = fixture_dir / "catalog.yaml", tmp_path / "browser_fixed"
        r = subprocess.run([str(Path(sys.executable).parent / "abaw"), "curate", "export", str(fixture_dir), "--out", str(out),
                            "--name", "browser_fixed", "--catalog", str(cat)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "frames changed: AU 0, EXPR" in r.stdout, r.stdout
        from abaw_workbench.annotations import read_split
        from abaw_workbench.catalog import Catalog
        from abaw_workbench.curate import Curation
        new = read_split(Catalog.load(cat)["browser_fixed"], "validation")
        got = new.expr.values[(new.video.values == video) & (new.frame_index.values >= c) & (new.frame_index.values <= c + 10)]
        assert got.tolist() == [6] * 11, got
        t = Curation(fixture_dir).tags
        assert sorted(t[(t.video == video) & (t.tag == "occluded")].frame_index) == list(range(a, a + 16))
    except Exception:
        shot(pg, "curate-loop"); raise


def test_no_errors_in_the_page_or_the_outputs(shot_on_failure):
    "No script errors in the page (e.g. a figure plotly.js cannot draw), no errors or warnings in the cells' outputs."
    pg = shot_on_failure
    assert not pg.abaw_errors, f"errors in the page: {pg.abaw_errors}"
    stderr = output_stderr(pg)
    assert not stderr, f"stderr in the notebook's outputs: {stderr}"
