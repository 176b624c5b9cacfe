"""Memory of fusion training on a store too large to hold: what grows with the split is the labels, not the store.

Peak memory of fusion training (streaming windows from disk: `FusionStage(preload=0)`, the path a split
takes when its features exceed the preload budget) on stores of --frames/10 and --frames frames
(default 1 M), each in a fresh process, against a baseline process that only trains the bare network:
the growth with the split must stay far below the store's size (only the labels, ~150 bytes a frame,
are held in memory). The fusion stages' speed against their bare limits is in bench_stages.py.

Usage: python bench/bench_fusion.py [--frames 1000000]
"""
import argparse, json, subprocess, sys, tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _fit_window_net(store_dir, labels, steps, batch, window):
    from abaw_workbench.fusion import FusionStage
    from abaw_workbench.temporal import FusionConfig
    from abaw_workbench.features import FeatureStore
    from abaw_workbench.train import TrainConfig, fit
    stage = FusionStage(FeatureStore(store_dir), labels, None, cfg=FusionConfig(window=window, stride=window // 2), preload=0)
    with tempfile.TemporaryDirectory() as out:
        fit(stage, TrainConfig(max_steps=steps, batch_size=batch, lr=1e-3, out=out, progress=False, checkpoint_every=10 ** 9))


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
    ap.add_argument("--frames", type=int, default=1_000_000, help="frames in the larger store")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child: return _child(a.child[0], a.child[1], int(a.child[2]))
    print(f"{'figure':<34} {'store':>10} {'bare':>10}")
    print(json.dumps(bench_memory(a.frames)))


if __name__ == "__main__":
    main()
