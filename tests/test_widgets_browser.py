"""The explore notebook in a real browser: JupyterLab on loopback, headless Debian Chromium driven by playwright.

Recipe and pitfalls: ../shared/docs/browser-testing.md. The notebook (nbs/tutorials/explore.ipynb, a copy) runs on its
small fixture run (ABAW_EXPLORE_FIXTURE=1); the tests move the slider with the keyboard, click a timeline and a
confusion-matrix cell, and read the results from the page. Screenshots of failures go to .cache/browser-screenshots/.
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NB = ROOT / "nbs" / "tutorials" / "explore.ipynb"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "abaw-browser-test"
SHOTS = ROOT / ".cache" / "browser-screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.timeout(150),   # the first test also starts JupyterLab and runs the notebook
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium missing (make browser installs it)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _settings(d: Path):
    "Lab settings for the test: the project's (no news pop-up), autosave off, every cell rendered (no windowing)."
    shutil.copytree(ROOT / "lab" / "user-settings", d)
    for plugin, values in {"docmanager-extension/plugin": {"autosave": False},
                           "notebook-extension/tracker": {"windowingMode": "none"}}.items():
        p = d / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        p.parent.mkdir(parents=True, exist_ok=True); p.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def lab():
    tmp = Path(tempfile.mkdtemp(prefix="abaw-lab-"))
    (tmp / "root").mkdir(); shutil.copy(NB, tmp / "root" / "explore.ipynb")
    _settings(tmp / "settings")
    port = _free_port()
    env = {**os.environ, "ABAW_EXPLORE_FIXTURE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "TMPDIR": str(tmp)}   # the kernel's fixture run goes with the test's folder
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--ip", "127.0.0.1", f"--port={port}", "--no-browser",
           "--allow-root", f"--ServerApp.root_dir={tmp / 'root'}", f"--IdentityProvider.token={TOKEN}",
           f"--LabApp.user_settings_dir={tmp / 'settings'}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None"]
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp / "root")
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=1); break
            except OSError:
                if proc.poll() is not None: raise RuntimeError(f"jupyter lab exited: {(tmp / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pg = browser.new_page(viewport={"width": 1600, "height": 1400})
        pg.abaw_errors = []
        pg.on("pageerror", lambda e: pg.abaw_errors.append(str(e)))
        try:
            pg.goto(f"{lab}/lab/tree/explore.ipynb?token={TOKEN}&reset")
            pg.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                 " && window.jupyterapp.shell.currentWidget.sessionContext"
                                 " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                                 " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                                 " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                                 timeout=60_000)
            pg.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            pg.wait_for_selector(".abaw-scrubber .abaw-timeline .js-plotly-plot", state="attached", timeout=90_000)
            pg.wait_for_selector(".abaw-explorer .abaw-confusion .js-plotly-plot", state="attached", timeout=90_000)
            pg.wait_for_selector(".abaw-explorer .abaw-timeline .js-plotly-plot", state="attached", timeout=60_000)
        except Exception:
            _shot(pg, "setup"); raise
        yield pg
        browser.close()


def _shot(pg, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    try: pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    except Exception: pass


@pytest.fixture
def shot_on_failure(page, request):
    "The page; a screenshot named after the test when the test fails."
    failed = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed: _shot(page, request.node.name)


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
    stderr = pg.evaluate("() => Array.from(document.querySelectorAll('.jp-OutputArea-output[data-mime-type=\"application/vnd.jupyter.stderr\"]')).map(e => e.textContent)")
    assert not stderr, f"stderr in the notebook's outputs: {stderr}"
