"""Benchmark of the synthetic data generator (issue #4).

Measures, on one core:
- end-to-end generation speed of the default demo set (12 videos x 300 frames at 112 px: faces, JPEG
  crops, H.264 raw videos with AAC audio, labels), in frames/s; target >= 300 frames/s;
- the face renderer alone (draw + JPEG), in frames/s;
- against a bare baseline in the same run: JPEG-encoding a random 112x112 image (cv2.imencode), the
  floor any generator writing JPEG crops pays;
- size on disk per 1,000 frames (crops, raw videos, total).

Prints a table, then one JSON line per figure.  Usage: python bench/bench_synth.py [--videos 12 --frames 300]
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
import argparse, json, tempfile, time
from pathlib import Path

import cv2
import numpy as np

cv2.setNumThreads(1)
from abaw_workbench import synth  # noqa: E402


def _du(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", type=int, default=112)
    a = ap.parse_args()
    rows = []

    # baseline: JPEG-encode a random image of the same size
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (a.size, a.size, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (5, 5), 2)  # JPEG of pure noise is unrealistically slow; smooth it a little
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n): cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
    base = n / (time.perf_counter() - t0)

    # the face renderer alone (draw + JPEG)
    r = synth.FaceRenderer(synth.random_identity(np.random.default_rng(1)), a.size, np.random.default_rng(1))
    aus = rng.uniform(0, 1, (n, 12)) * (rng.random((n, 12)) < 0.3)
    t0 = time.perf_counter()
    for i in range(n):
        cv2.imencode(".jpg", r.render(aus[i], 0.1, 0.2, (0.05, 0.01, 0.0, 1.0, 0.1)), [int(cv2.IMWRITE_JPEG_QUALITY), 90])
    render = n / (time.perf_counter() - t0)

    # end to end: the whole data set
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        root = synth.synth_affwild2(Path(d) / "demo", a.videos, a.frames, 0, a.size, workers=1)
        dt = time.perf_counter() - t0
        frames = a.videos * a.frames
        crops, videos, total = _du(root / "cropped_aligned"), _du(root / "videos"), _du(root)
    e2e = frames / dt
    k = 1000 / frames / 1e6
    rows = [
        ("frames_per_s_end_to_end", e2e, "frames/s", base, ">= 300 frames/s on one core"),
        ("frames_per_s_render_jpeg", render, "frames/s", base, None),
        ("demo_set_seconds", dt, "s", None, "well under 60 s"),
        ("mb_per_1000_frames_total", total * k, "MB", None, None),
        ("mb_per_1000_frames_crops", crops * k, "MB", None, None),
        ("mb_per_1000_frames_videos", videos * k, "MB", None, None),
    ]
    print(f"synth: {a.videos} videos x {a.frames} frames at {a.size} px, one core "
          f"(baseline: cv2.imencode of a {a.size}x{a.size} image, {base:,.0f} /s)")
    print(f"{'metric':<28} {'value':>10}  {'unit':<9} {'vs baseline':>11}  target")
    for m, v, u, b, t in rows:
        print(f"{m:<28} {v:>10.2f}  {u:<9} {(f'{v / b:.3f}' if b else ''):>11}  {t or ''}")
    for m, v, u, b, t in rows:
        j = {"bench": "synth", "metric": m, "value": round(v, 4), "unit": u}
        if b: j.update(baseline=round(b, 2), ratio=round(v / b, 4))
        if t: j["target"] = t
        print(json.dumps(j))


if __name__ == "__main__":
    main()
