"""Fusion-stage figures (issue: multimodal temporal fusion).

1. Feature extraction: frames/s of `features.extract_features` (crops decoded by workers,
   encoder forward, audio features, per-video writes) against a bare encoder forward on random
   tensors of the same number of frames, in the same run. Target ratio >= 0.85.
2. Fusion training: frames/s of the shared loop (`train.fit` on `FusionStage`: windows read
   from the on-disk store) against a bare forward+backward+AdamW of the same network on random
   tensors. Target ratio >= 0.8.
3. Peak memory of fusion training on stores of --frames/10 and --frames frames (default 1 M),
   each in a fresh process, against a baseline process that only trains the bare network: the
   growth with the split must stay far below the store's size (windows are read from disk; only
   the labels, ~150 bytes a frame, are held in memory).

Usage: python bench/bench_fusion.py [--frames 1000000] [--skip-extract] [--skip-memory]
"""
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time, warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _fit_window_net(store_dir, labels, steps, batch, window):
    from abaw_workbench.fusion import FusionStage
    from abaw_workbench.temporal import FusionConfig
    from abaw_workbench.features import FeatureStore
    from abaw_workbench.train import TrainConfig, fit
    st = FeatureStore(store_dir)
    stage = FusionStage(st, labels, None, cfg=FusionConfig(window=window, stride=window // 2))
    out = tempfile.mkdtemp()
    fit(stage, TrainConfig(max_steps=steps, batch_size=batch, lr=1e-3, out=out, progress=False, log_every=1,
                           checkpoint_every=10 ** 9))
    t = [json.loads(l)["time"] for l in (Path(out) / "log.jsonl").read_text().splitlines() if '"loss"' in l]
    return stage, float(np.min(np.diff(t)))


def make_store(path, videos, frames, vd, ad, seed=0):
    from abaw_workbench.features import FeatureStore
    from abaw_workbench.schema import make_dataset
    rng = np.random.default_rng(seed)
    st = FeatureStore(path).init({"visual_dim": vd, "audio_dim": ad})
    names, fis = [], []
    for i in range(videos):
        v = f"{i}-30-112x112"
        fi = np.arange(1, frames + 1)
        st.write(v, fi, rng.standard_normal((frames, vd), np.float32), rng.standard_normal((frames, ad), np.float32),
                 np.ones(frames, bool), np.ones(frames, bool))
        names.append(np.full(frames, v, dtype=object)); fis.append(fi)
    n = videos * frames
    lab = make_dataset(np.concatenate(names), np.concatenate(fis), au=rng.integers(0, 2, (n, 12)),
                       expr=rng.integers(0, 8, n), va=rng.uniform(-1, 1, (n, 2)))
    return st, lab


def _bare_step_time(steps, batch, window, vd, ad):
    from abaw_workbench.temporal import FusionConfig, FusionNet
    from abaw_workbench.tasks import TaskLoss
    net = FusionNet(vd, ad, cfg=FusionConfig(window=window))
    crit = TaskLoss()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    times = []
    for s in range(steps + 1):
        v, a = torch.randn(batch, window, vd), torch.randn(batch, window, ad)
        valid = torch.ones(batch, window, dtype=torch.bool)
        b = {"au": torch.randint(0, 2, (batch * window, 12)).float(), "au_mask": torch.ones(batch * window, 12, dtype=torch.bool),
             "expr": torch.randint(0, 8, (batch * window,)), "va": torch.rand(batch * window, 2) * 2 - 1,
             "va_mask": torch.ones(batch * window, 2, dtype=torch.bool)}
        t0 = time.perf_counter()
        out = net(v, a, valid)
        loss, _ = crit({k: o.reshape(-1, o.shape[-1]) for k, o in out.items()}, b)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        if s: times.append(time.perf_counter() - t0)
    return min(times)


def bench_training(steps=8, batch=32, window=100, rounds=3):
    "Loop and bare steps measured in alternating rounds; the fastest step of each (robust to a busy machine)."
    vd, ad = 192, 138
    loop, bare = [], []
    with tempfile.TemporaryDirectory() as d:
        st, lab = make_store(Path(d) / "s", 40, 500, vd, ad)
        for _ in range(rounds):
            loop.append(_fit_window_net(Path(d) / "s", lab, steps, batch, window)[1])
            bare.append(_bare_step_time(steps, batch, window, vd, ad))
    loop_s, bare_s = min(loop), min(bare)
    fl, fb = batch * window / loop_s, batch * window / bare_s
    print(f"{'fusion training (frames/s)':<34} {fl:10.0f} {fb:10.0f} {fl / fb:7.2f}")
    return dict(bench="fusion", metric="fusion training", value=round(fl, 1), unit="frames/s", baseline=round(fb, 1),
                ratio=round(fl / fb, 3), target=">= 0.8")


def bench_extract(videos=6, frames=400):
    from abaw_workbench.catalog import Catalog
    from abaw_workbench.features import ExtractConfig, extract_features
    from abaw_workbench.mae import build_encoder
    from abaw_workbench.synth import synth_affwild2
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        synth_affwild2(d / "syn", videos=videos, frames=frames, seed=0)
        (d / "cat.yaml").write_text("entries:\n  syn: {kind: affwild2, path: syn}\n")
        entry = Catalog.load(d / "cat.yaml").resolve("syn")
        cfg = ExtractConfig(batch_size=64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(0); model = build_encoder("tiny", 112, drop_path=0.0)
            extract_features(entry, d / "warm", model, ExtractConfig(batch_size=64, splits=["validation"]), d / "cache", progress=False)
            t0 = time.perf_counter()
            st = extract_features(entry, d / "store", model, cfg, d / "cache", progress=False)
            loop_s = time.perf_counter() - t0
        n = sum(int(st.read(v)["face_mask"].sum()) for v in st.videos)
    enc = build_encoder("tiny", 112, drop_path=0.0).eval()
    with torch.inference_mode():
        enc(torch.randn(64, 3, 112, 112))
        t0 = time.perf_counter()
        for i in range(0, n, 64): enc(torch.randn(min(64, n - i), 3, 112, 112))
        bare_s = time.perf_counter() - t0
    fl, fb = n / loop_s, n / bare_s
    print(f"{'feature extraction (frames/s)':<34} {fl:10.1f} {fb:10.1f} {fl / fb:7.2f}   ({n} crops, audio cached)")
    return dict(bench="fusion", metric="feature extraction", value=round(fl, 2), unit="frames/s", baseline=round(fb, 2),
                ratio=round(fl / fb, 3), target=">= 0.85")


def _child(mode, store, frames_per_video):
    "Run in a fresh process: train a few steps (mode=store) or only build the net (mode=base); print peak RSS."
    from abaw_workbench.temporal import FusionConfig, FusionNet
    if mode == "store":
        from abaw_workbench.features import FeatureStore
        from abaw_workbench.schema import make_dataset
        st = FeatureStore(store)
        vids = st.videos
        n = len(vids) * frames_per_video
        lab = make_dataset(np.repeat(vids, frames_per_video), np.tile(np.arange(1, frames_per_video + 1), len(vids)),
                           au=np.zeros((n, 12), np.float32), expr=np.zeros(n, np.int8), va=np.zeros((n, 2), np.float32))
        _fit_window_net(store, lab, 30, 32, 100)
    else:
        net = FusionNet(192, 138, cfg=FusionConfig())
        net(torch.randn(32, 100, 192), torch.randn(32, 100, 138), torch.ones(32, 100, dtype=torch.bool))[ "au"].sum().backward()
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's peak across fork+exec)
    hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(json.dumps({"maxrss_mb": hwm / 1024}))


def _peak(frames, per_video=2000):
    videos = max(1, frames // per_video)
    with tempfile.TemporaryDirectory() as d:
        make_store(Path(d) / "s", videos, per_video, 192, 138)
        size = sum(p.stat().st_size for p in (Path(d) / "s").rglob("*")) / 2 ** 20
        res = {}
        for mode in ("base", "store"):
            r = subprocess.run([sys.executable, __file__, "--child", mode, str(Path(d) / "s"), str(per_video)],
                               capture_output=True, text=True)
            if r.returncode: raise SystemExit(r.stderr)
            res[mode] = json.loads(r.stdout.strip().splitlines()[-1])["maxrss_mb"]
    return videos * per_video, size, res


def bench_memory(frames):
    "Peak memory of fusion training at frames/10 and frames: what grows with the split is the labels, not the store."
    n1, s1, r1 = _peak(frames // 10)
    n2, s2, r2 = _peak(frames)
    e1, e2 = r1["store"] - r1["base"], r2["store"] - r2["base"]
    growth = (e2 - e1) / ((n2 - n1) / 1e6)
    print(f"{'fusion training peak RSS (MB)':<34} {r2['store']:10.0f} {r2['base']:10.0f}   +{e2:.0f} MB over the bare net "
          f"for a {n2:,}-frame ({s2:,.0f} MB) store; +{e1:.0f} MB at {n1:,} frames ({s1:,.0f} MB)")
    print(f"  growth: {growth:.0f} MB per million frames (labels held in memory), vs {s2 / (n2 / 1e6):,.0f} MB of features per million")
    return dict(bench="fusion", metric=f"peak memory, {n2:,}-frame store", value=round(r2["store"]), unit="MB",
                baseline=round(r2["base"]), ratio=round(growth / (s2 / (n2 / 1e6)), 3),
                target="memory growth per frame << feature bytes per frame (ratio = growth / feature size)")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1_000_000, help="frames in the store of the memory figure")
    ap.add_argument("--skip-extract", action="store_true"); ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child: return _child(a.child[0], a.child[1], int(a.child[2]))
    print(f"{'figure':<34} {'loop':>10} {'bare':>10} {'ratio':>7}   (torch threads: {torch.get_num_threads()})")
    rows = [bench_training()]
    if not a.skip_extract: rows.append(bench_extract())
    if not a.skip_memory: rows.append(bench_memory(a.frames))
    for r in rows: print(json.dumps(r))


if __name__ == "__main__":
    main()
