"""Benchmark: read every annotation file of a ~2.6 M-frame split into the schema, then score it.

Generates (in a temp dir) an Aff-Wild2-layout annotation tree: ~550 videos of 500-20,000 frames
(2.6 M frames in all), each labelled for VA, EXPR and/or AU like the real set. Times
- baselines: reading the bytes of every file (no parsing), and a bare `pandas.read_csv` of every file
  (parsing without any checks, joins or schema);
- `read_split` into the schema (crop look-up off: the tree has no images);
- scoring all three tasks against predictions (labels + noise), and the per-video breakdown;
- listing crops (`crop_indices`) on a few videos with real (empty) .jpg files.
Target (issue #3): reading + scoring well under 10 s on 2 cores.

Run: OMP_NUM_THREADS=1 python bench/bench_annotations.py [--frames 2600000] [--videos 550]
"""
import argparse, json, os, tempfile, time
from pathlib import Path

import numpy as np

from abaw_workbench.annotations import HEADERS, read_split, write_submission
from abaw_workbench.layout import Layout, crop_indices
from abaw_workbench.metrics import score, per_video_scores
from abaw_workbench.schema import make_dataset, AU_NAMES


def generate(root: Path, n_frames: int, n_videos: int, seed: int = 0) -> dict:
    "Write the annotation files; returns counts per task."
    rng = np.random.default_rng(seed)
    lens = rng.lognormal(0, 0.8, n_videos)
    lens = np.clip(np.round(lens / lens.sum() * n_frames), 500, 20000).astype(int)
    e = Layout.of(root)
    au_rows = np.array([",".join(map(str, r)) for r in rng.integers(0, 2, (256, 12))] + [",".join(["-1"] * 12)], dtype=object)
    expr_rows = np.array([str(i) for i in range(-1, 8)], dtype=object)
    vals = np.array([np.format_float_positional(x, trim="-") for x in np.round(np.linspace(-1, 1, 2001), 3)], dtype=object)
    counts = {"au": 0, "expr": 0, "va": 0}
    for t in counts: e.annotation_dir(t, "train").mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(lens):
        name = [f"{i}-30-1280x720", f"video{i}", f"{i}-25-640x360_left"][i % 3]
        tasks = [t for t, p in (("va", 0.8), ("expr", 0.55), ("au", 0.5)) if rng.random() < p] or ["va"]
        for t in tasks:
            m = n if t == "va" or rng.random() < 0.5 else int(n * rng.uniform(0.8, 1))  # files of one video differ in length
            if t == "au": rows = au_rows[np.where(rng.random(m) < 0.05, 256, rng.integers(0, 256, m))]
            elif t == "expr": rows = expr_rows[rng.integers(0, 9, m)]
            else:
                a, b = vals[rng.integers(0, 2001, m)], vals[rng.integers(0, 2001, m)]
                rows = a + "," + b
                rows[rng.random(m) < 0.03] = "-5,-5"
            text = HEADERS[t] + "\n" + "\n".join(rows.tolist()) + "\n"
            (e.annotation_dir(t, "train") / f"{name}.txt").write_text(text)
            counts[t] += m
    return e, counts


def predictions(ds, seed=1):
    rng = np.random.default_rng(seed)
    n = ds.sizes["frame"]
    au = np.clip(np.nan_to_num(ds.au.values, nan=0) * 0.4 + rng.random((n, 12), np.float32) * 0.6, 0, 1)
    ep = rng.random((n, 8), np.float32)
    ep[np.arange(n), np.maximum(ds.expr.values, 0)] += 0.6
    va = np.clip(np.nan_to_num(ds.va.values) * 0.7 + rng.normal(0, 0.3, (n, 2)), -1, 1)
    return make_dataset(ds.video.values, ds.frame_index.values, au=au, va=va, expr_prob=ep, time=ds.time.values)


def timed(f, *a, **k):
    t = time.perf_counter(); r = f(*a, **k); return r, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2_600_000)
    ap.add_argument("--videos", type=int, default=550)
    args = ap.parse_args()
    out = []
    with tempfile.TemporaryDirectory(prefix="bench_annotations_") as d:
        root = Path(d)
        (e, counts), t_gen = timed(generate, root, args.frames, args.videos)
        files = [p for t in counts for p in e.annotation_dir(t, "train").glob("*.txt")]
        mb = sum(p.stat().st_size for p in files) / 1e6
        print(f"generated {len(files)} files ({mb:.0f} MB; AU {counts['au']:,} / EXPR {counts['expr']:,} / VA {counts['va']:,} lines) in {t_gen:.1f} s")
        read_bytes = lambda: sum(len(p.read_bytes()) for p in files)
        read_bytes()  # warm the page cache for both contenders
        _, t_base = timed(read_bytes)
        import pandas as pd
        _, t_parse = timed(lambda: [pd.read_csv(p, dtype=np.float64, engine="c").to_numpy() for p in files])
        ds, t_read = timed(read_split, e, "train", crops=False)
        n = ds.sizes["frame"]
        pred = predictions(ds)
        t_score, scores = 0.0, {}
        for t in ("au", "expr", "va"):
            r, dt = timed(score, ds, pred, t); t_score += dt; scores[t] = r["score"]
        _, t_pv = timed(per_video_scores, ds, pred, "va")
        # a VA submission for ~930 k test rows (the real test set's size), in shuffled video order
        m = min(n, 930_000)
        sample = root / "CVPR_5th_ABAW_VA_test_set_sample.txt"
        locs = np.char.add(np.char.add(ds.video.values[:m].astype(str), "/"), np.char.zfill(ds.frame_index.values[:m].astype(str), 5))
        sample.write_text("image_location,valence,arousal\n" + "".join(f"{l}.jpg,\n" for l in locs.tolist()))
        _, t_sub = timed(write_submission, pred, "va", sample, root / "submission_va.txt")
        # crop listing on a few videos with real (empty) files
        crops = root / "cropped_aligned"
        n_crops = 0
        for v in list(dict.fromkeys(ds.video.values[:: max(1, n // 20)]))[:10]:
            (crops / v).mkdir(parents=True, exist_ok=True)
            k = int((ds.video.values == v).sum())
            for i in range(1, k + 1): (crops / v / f"{i:05d}.jpg").touch()
            n_crops += k
        _, t_crops = timed(lambda: [crop_indices(p) for p in crops.iterdir()])
    total = t_read + t_score
    print(f"\n{n:,} frames in {ds.attrs['n_videos']} videos ({mb:.0f} MB of text)")
    print(f"{'step':<42} {'seconds':>8}")
    for k, v in [("baseline: read bytes of every file", t_base), ("bare parse: pandas.read_csv of every file", t_parse), ("read_split -> schema (parse + checks)", t_read),
                 ("score au + expr + va", t_score), ("read + score", total), ("per_video_scores (va)", t_pv), (f"write_submission (va, {m:,} rows)", t_sub),
                 (f"crop listing, {n_crops:,} crops", t_crops)]:
        print(f"{k:<42} {v:8.3f}")
    print(f"read_split / baseline = {t_read / t_base:.1f}x; scores: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    j = lambda **kw: print(json.dumps({"bench": "annotations", **kw}))
    j(metric="read_split_seconds", value=round(t_read, 3), unit="s", baseline=round(t_base, 4), ratio=round(t_read / t_base, 1), target="< 10 s with scoring")
    j(metric="read_split_vs_bare_parse", value=round(t_read, 3), unit="s", baseline=round(t_parse, 3), ratio=round(t_read / t_parse, 2))
    j(metric="score_seconds", value=round(t_score, 3), unit="s")
    j(metric="read_and_score_seconds", value=round(total, 3), unit="s", target="well under 10 s on 2 cores")
    j(metric="read_split_frames_per_second", value=round(n / t_read), unit="frames/s")
    j(metric="per_video_scores_seconds", value=round(t_pv, 3), unit="s")
    j(metric="write_submission_va_seconds", value=round(t_sub, 3), unit="s", rows=m)
    j(metric="crop_listing_seconds_per_100k_crops", value=round(t_crops / max(n_crops, 1) * 1e5, 3), unit="s")


if __name__ == "__main__":
    main()
