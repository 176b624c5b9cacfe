"""The explorer on an `abaw predict` result, in a real browser (issue 17): `VideoScrubber(Run.open(<predict folder>))`
shows the raw video's frames with the predictions and no labels.

The predict folder: a tiny synthetic-trained run (`demo.tiny_run`) applied to a 15 fps video made from scikit-image's
astronaut photograph (256x160, the background getting lighter frame by frame). JupyterLab and Chromium as in
test_widgets_browser.py (browser_lab.py; recipe: ../shared/docs/browser-testing.md).
"""
import time, warnings
from pathlib import Path

import numpy as np
import nbformat
import pytest

from browser_lab import CHROMIUM, jupyter_lab, notebook_page, output_stderr, shot

pytestmark = [pytest.mark.timeout(400),   # the first test also trains the tiny run, predicts, starts JupyterLab
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium missing (make browser installs it)")]

N, FPS, W, H = 45, 15, 256, 160


def astro_video(path):
    import cv2
    from skimage import data as skdata
    from abaw_workbench.video import write_video
    photo = skdata.astronaut()
    frames = []
    for i in range(N):
        s = 0.45 + 0.003 * i
        M = np.array([[s, 0, 120 + i - s * 225], [0, s, 80 - s * 120]], np.float32)
        frames.append(cv2.warpAffine(photo, M, (W, H), flags=cv2.INTER_AREA, borderValue=(20 + 5 * i,) * 3))
    sr = 16000
    tone = (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(N / FPS * sr)) / sr)).astype(np.float32)
    write_video(path, frames, fps=FPS, audio=(tone, sr))


@pytest.fixture(scope="module")
def predicted(tiny_trained_run, tmp_path_factory):
    "A predict output folder."
    from abaw_workbench.catalog import Catalog
    from abaw_workbench.predict import PredictConfig, predict_paths
    run_dir, cat = tiny_trained_run
    tmp = tmp_path_factory.mktemp("predict_browser")
    astro_video(tmp / "astro.mp4")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # (the run is synthetic-trained: predict warns)
        predict_paths(tmp / "astro.mp4", run_dir, tmp / "pred", PredictConfig(device="cpu"), catalog=Catalog.load(cat), log=lambda *a: None)
    return tmp / "pred"


@pytest.fixture(scope="module")
def page(predicted, tmp_path_factory):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(
        "import os\nfrom abaw_workbench.runs import Run\nfrom abaw_workbench.widgets import VideoScrubber\n"
        "run = Run.open(os.environ['ABAW_PREDICT_RUN'])\nVideoScrubber(run)")]
    d = tmp_path_factory.mktemp("predict_nb")
    nbformat.write(nb, d / "predict_explorer.ipynb")
    with jupyter_lab(d / "predict_explorer.ipynb", {"ABAW_PREDICT_RUN": str(predicted)}) as lab, \
         notebook_page(*lab, [".abaw-scrubber .abaw-timeline .js-plotly-plot"], "predict-setup") as pg:
        yield pg


@pytest.fixture
def shot_on_failure(page, request):
    failed = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed: shot(page, request.node.name)


STATE = """() => { const s = document.querySelector('.abaw-scrubber');
  const h = s.querySelector('.abaw-slider .noUi-handle'), img = s.querySelector('img.abaw-frame');
  return {src: img.src, value: Number(h.getAttribute('aria-valuenow')), max: Number(h.getAttribute('aria-valuemax')),
          cursor: s.querySelector('.abaw-timeline .js-plotly-plot')._fullLayout.shapes[0].x0,
          info: s.querySelector('.abaw-info').textContent}; }"""

PIXELS = """() => new Promise(res => { const img = document.querySelector('.abaw-scrubber img.abaw-frame');
  const f = () => { const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
    const x = c.getContext('2d'); x.drawImage(img, 0, 0); const d = x.getImageData(0, 0, c.width, c.height).data;
    const s = [0, 0, 0]; for (let i = 0; i < d.length; i += 4) { s[0] += d[i]; s[1] += d[i + 1]; s[2] += d[i + 2]; }
    res({w: c.width, h: c.height, src: img.src, mean: s.map(v => v / (d.length / 4))}); };
  if (img.complete && img.naturalWidth) f(); else img.addEventListener('load', f, {once: true}); })"""


def _wait(pg, cond, timeout=30):
    end = time.time() + timeout
    while True:
        s = pg.evaluate(STATE)
        if cond(s): return s
        if time.time() > end: raise AssertionError(f"page state never satisfied the condition: {s}")
        time.sleep(0.1)


def _shown_frame(pg, src):
    "Size and mean colour of the frame shown, once the image with this src has loaded."
    end = time.time() + 20
    while time.time() < end:
        p = pg.evaluate(PIXELS)
        if p["src"] == src: return p
        time.sleep(0.1)
    raise AssertionError("the frame image never loaded")


def test_scrubber_shows_raw_video_frames_with_predictions_and_no_labels(shot_on_failure, predicted):
    from abaw_workbench.runs import Run
    from abaw_workbench.schema import EXPR_NAMES
    pg = shot_on_failure
    run = Run.open(predicted)
    preds = run.predictions()
    s0 = _wait(pg, lambda s: s["src"].startswith(("blob:", "data:")))
    assert (s0["value"], s0["max"]) == (1, N)   # every frame of the video, not only those with a face
    handle = pg.locator(".abaw-scrubber .abaw-slider .noUi-handle").first
    handle.focus()
    for key, fi in (("End", N), ("Home", 1), ("ArrowRight", 2)):
        pg.keyboard.press(key)
        s = _wait(pg, lambda s: s["value"] == fi and s["cursor"] == fi and s["src"] != s0["src"])
        shown = _shown_frame(pg, s["src"])
        want = run.frames.image("astro", fi).astype(float)
        assert (shown["w"], shown["h"]) == (W, H)                      # the raw frame, not a face crop
        assert np.abs(np.array(shown["mean"]) - want.mean((0, 1))).max() < 2.5, (fi, shown["mean"], want.mean((0, 1)))
        k = fi - 1                                                     # this frame's prediction, no label
        e = int(preds.expr.values[k]); expr = EXPR_NAMES[e] if e >= 0 else "no prediction"
        assert f"EXPR no label → {expr}" in s["info"] and "AU no label" in s["info"] and "VA no label" in s["info"], s["info"]
        s0 = s


def test_no_errors_in_the_page_or_the_outputs(shot_on_failure):
    pg = shot_on_failure
    assert not pg.abaw_errors, f"errors in the page: {pg.abaw_errors}"
    assert not output_stderr(pg), f"stderr in the notebook's outputs: {output_stderr(pg)}"
