"""Aff-Wild2 at its real size, simulated: every stage's set-up time and peak memory, fusion streaming from a full-size store.

Builds an Aff-Wild2-sized data set in a temporary folder (default 550 videos, 2.57 M frames; --videos scales both):
  - crops: hard links to a pool of real-size 112-px JPEG face crops (`synth.synth_faces`), so the disk cost is the
    pool and the folder entries; 2 % of the frames have none, in runs, as when face detection drops them;
  - annotation files for AU, EXPR and VA, train and validation, in the ABAW5 format, with the tasks' shares of the
    videos of shared/docs/affwild2-format.md (some videos' crops run past their last labelled line, as real ones do);
  - for fusion, a feature store of every frame extraction writes (labelled or with a crop): 768-d visual features
    and the default audio features, written by `features.FeatureStore.write`, as extraction writes them.
Then each stage runs in a fresh process, which reports the seconds of its parts and its own peak memory (VmHWM),
beside its peak once its modules are imported (the baseline):
  - read: `read_split` of both splits, every task (no torch imported);
  - finetune: the splits read, the fine-tuning stage made (`finetune.FinetuneStage`, the configuration's model), its
    first steps, then its validation during training on the fixed subsample of `finetune.eval_frames` (--eval-frames;
    the first pass decodes and keeps its crops, later ones read them), against a pass over every validation frame
    (measured with --full-validation, else estimated from the subsample decoded as such a pass decodes it);
  - extract: `features.run_extract` up to its first batch (the splits, the crop listing, the frame table);
  - fusion: the splits read, the fusion stage made from the store (`fusion.audio_stats`, `fusion.FusionStage`
    streaming, preload=0: the store's index and the videos' means) and its first steps, one validation pass, the time
    a batch of windows takes to read, then its loop against its bare step in alternating rounds, as bench_stages.py
    measures the demo's (median over rounds of bare time / real time; target >= 0.85).
Checks: the figures that have a target, and that the data set is what was asked for (frames, share of missing crops,
the stages' frame counts, the subsample's size, and the streamed windows equal to the windows read into memory).

    python bench/bench_scale.py [--videos 550] [--frames N] [--config tiny] [--rounds 5] [--steps 12]
                                [--eval-frames N] [--full-validation] [--tmp DIR] [--root DIR --keep]
"""
import argparse, dataclasses, json, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np

FULL_VIDEOS, FULL_FRAMES = 550, 2_570_000
# videos per task and split (shared/docs/affwild2-format.md): the validation videos are AU's 105
SHARES = {"validation": {"au": 105 / 105, "va": 76 / 105, "expr": 70 / 105},
          "train": {"au": 295 / 445, "va": 356 / 445, "expr": 248 / 445}}
VAL_SHARE = 105 / FULL_VIDEOS
MISSING = 0.02  # share of frames without a crop
VISUAL_DIM = 768
TARGET = 0.85


# ---------------------------------------------------------------- the data set
def plan(videos, frames, seed=0):
    "Per video: name, split, tasks, frames, labelled frames, the frames without a crop."
    rng = np.random.default_rng(seed)
    n = rng.lognormal(0, 0.9, videos)
    n = np.maximum(300, np.round(n / n.sum() * frames)).astype(np.int64)
    n[np.argmax(n)] += frames - n.sum()                              # exactly `frames` in all
    n_val = max(1, round(videos * VAL_SHARE))
    split = np.where(rng.permutation(videos) < n_val, "validation", "train")
    out = []
    for i in range(videos):
        s = str(split[i])
        tasks = [t for t, p in SHARES[s].items() if rng.random() < p] or ["va"]
        labelled = int(n[i] - (rng.integers(1, 30) if rng.random() < 0.1 else 0))   # crops past the last labelled line
        missing, want = np.zeros(n[i], bool), round(MISSING * n[i])
        while (short := want - missing.sum()) > 0:                   # runs of 5-45 frames without a face
            a = rng.integers(0, n[i]); missing[a:a + min(short, rng.integers(5, 46))] = True
        name = f"{i}-30-1280x720" if i % 3 else f"video{i}"
        out.append(dict(video=name, split=s, tasks=tasks, frames=int(n[i]), labelled=labelled,
                        missing=np.flatnonzero(missing) + 1))
    return out


def _rows(task, n, rng):
    "n annotation lines of `task` (values drawn from a few hundred distinct rows; 2-10 % invalid, marked as the format says)."
    from abaw_workbench.annotations import MARKERS, NCOLS
    if task == "au": pool = [",".join(map(str, rng.integers(0, 2, 12))) for _ in range(256)]
    elif task == "expr": pool = [str(c) for c in range(8)]
    else: pool = [f"{a:.6f},{b:.6f}" for a, b in rng.uniform(-1, 1, (1000, 2))]
    bad = 0.1 if task == "expr" else 0.02
    pool, p = pool + [",".join([str(MARKERS[task])] * NCOLS[task])], np.r_[np.full(len(pool), (1 - bad) / len(pool)), bad]
    return "\n".join(np.array(pool, dtype=object)[rng.choice(len(pool), n, p=p)]) + "\n"


def build(root, videos, frames, pool_size=96, seed=0):
    "Write the data set under root/affwild2 and a catalog naming it (root/catalog.yaml); returns the plan."
    from abaw_workbench.annotations import HEADERS
    from abaw_workbench.layout import Layout, crop_name
    from abaw_workbench.synth import synth_faces
    p = plan(videos, frames, seed)
    lay = Layout.of(root / "affwild2")
    pool = synth_faces(root / "affwild2" / "pool", images=pool_size, seed=seed)
    faces = sorted(str(f) for f in pool.rglob("*.jpg"))
    rng = np.random.default_rng(seed + 1)
    for j, v in enumerate(p):
        d = lay.crop_dir(v["video"]); d.mkdir(parents=True)
        keep = np.ones(v["frames"] + 1, bool); keep[0] = False; keep[v["missing"]] = False
        for fi in np.flatnonzero(keep).tolist():
            os.link(faces[(j * 7919 + fi) % len(faces)], f"{d}/{crop_name(fi)}")
        for t in v["tasks"]:
            a = lay.annotation_dir(t, v["split"]); a.mkdir(parents=True, exist_ok=True)
            (a / f"{v['video']}.txt").write_text(HEADERS[t] + "\n" + _rows(t, v["labelled"], rng))
    (root / "catalog.yaml").write_text("entries:\n  scale: {kind: affwild2, path: affwild2}\ncache_dir: cache\n")
    return p


def store_frames(v):
    "The frames extraction writes for a planned video (labelled or with a crop), and which have a crop."
    fi = np.arange(1, v["frames"] + 1)
    has = ~np.isin(fi, v["missing"])
    keep = has | (fi <= v["labelled"])
    return fi[keep], has[keep]


def write_store(root, p, seed=0):
    "A feature store of every planned video as extraction writes it: [frames, 768] visual (zeros without a face), audio."
    from abaw_workbench.audio import audio_feature_names
    from abaw_workbench.features import FeatureStore
    names = audio_feature_names()
    st = FeatureStore(root / "store").init({"visual_dim": VISUAL_DIM, "audio_dim": len(names), "audio_features": names,
                                            "encoder": None, "dataset": "scale"})
    rng = np.random.default_rng(seed + 2)
    for v in p:
        fi, has = store_frames(v)
        vis = rng.standard_normal((len(fi), VISUAL_DIM), dtype=np.float32); vis[~has] = 0
        st.write(v["video"], fi, vis, rng.standard_normal((len(fi), len(names)), dtype=np.float32), has,
                 np.ones(len(fi), bool))
    return st


# ---------------------------------------------------------------- the stages, each in a child process
def _peak_mb():
    "This process's own peak resident memory (VmHWM; ru_maxrss would carry the parent's across fork+exec)."
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024


class _Clock:
    "Seconds of each named part since the previous one."
    def __init__(self): self.t, self.parts = time.perf_counter(), {}
    def __call__(self, name):
        t = time.perf_counter(); self.parts[name] = round(t - self.t, 3); self.t = t


def _splits(root, tasks):
    from abaw_workbench.annotations import read_split
    from abaw_workbench.catalog import Catalog
    entry = Catalog.load(root / "catalog.yaml").resolve("scale", "affwild2")
    return entry, [read_split(entry, s, tasks) for s in ("train", "validation")]


def _frames(train, val):
    return {"train": train.sizes["frame"], "validation": val.sizes["frame"],
            "train_crops": int(train.has_face.sum()), "validation_crops": int(val.has_face.sum())}


def stage_read(root, cfg, a):
    "`read_split` of both splits, every task (imports no torch)."
    out, clock = {"import_mb": _peak_mb()}, _Clock()
    _, (train, val) = _splits(root, ("au", "expr", "va"))
    clock("read_split, both splits")
    return {**out, "frames": _frames(train, val), "parts": clock.parts}


def stage_finetune(root, cfg, a):
    "The fine-tuning stage made, its first steps, and its validation: the eval_frames subsample (and every frame)."
    from abaw_workbench.core import config_from_dict
    from abaw_workbench.evaluation import evaluate_predictions
    from abaw_workbench.finetune import FinetuneConfig, FinetuneStage, predict_frames
    from abaw_workbench.layout import Layout
    from abaw_workbench.train import fit
    out, clock = {"import_mb": _peak_mb()}, _Clock()
    fc = config_from_dict(FinetuneConfig, {**cfg["finetune"], "eval_frames": a.eval_frames})
    entry, (train, val) = _splits(root, fc.tasks)
    clock("read_split, both splits")
    crops = Layout.of(entry).crops
    st = FinetuneStage(fc, train, val, crops)
    clock("stage made")
    st.val_labels = None   # the first steps, without the loop's validation at their end (timed below)
    fit(st, dataclasses.replace(fc.train, max_steps=3, out=str(root / "runs" / "ft"), resume=False, progress=False,
                                eval_every=0, checkpoint_every=10**9))
    clock("first 3 steps")
    st.val_labels = val
    st.evaluate(st.model); clock("validation on the subsample, first (decodes and keeps its crops)")
    st.evaluate(st.model); clock("validation on the subsample, later")
    H, W = st.pre["size"]
    full_kept = int(val.has_face.sum()) * H * W * 3 <= fc.eval_cache_gib * 2**30   # else every pass decodes every frame
    if not full_kept:
        evaluate_predictions(st.eval_labels, predict_frames(st.model, st.eval_labels, crops, st.pre, fc.eval_batch), fc.tasks)
        clock("validation on the subsample, decoded as an uncached pass decodes")
    if a.full_validation:
        full = FinetuneStage(dataclasses.replace(fc, eval_frames=None), train, val, crops, model=st.model)
        full.evaluate(full.model); clock("validation on every frame, first")
        if full._val_crops.images is not None: full.evaluate(full.model); clock("validation on every frame, later")
    return {**out, "frames": _frames(train, val), "parts": clock.parts, "used_frames": len(st.data),
            "subsample": {"frames": st.eval_labels.sizes["frame"], "crops": int(st.eval_labels.has_face.sum()),
                          "kept": st._val_crops.images is not None},
            "full_kept": full_kept}


def stage_extract(root, cfg, a):
    "`run_extract` up to its first batch (the loader is wrapped to stop there: nothing is encoded or written)."
    import abaw_workbench.features as features
    from abaw_workbench.catalog import Catalog
    from abaw_workbench.core import config_from_dict
    from abaw_workbench.finetune import FinetuneConfig
    from abaw_workbench.tasks import FrameModel
    from abaw_workbench.mae import build_encoder
    out, clock = {"import_mb": _peak_mb()}, _Clock()
    fc, xc = config_from_dict(FinetuneConfig, cfg["finetune"]), config_from_dict(features.ExtractConfig, cfg["extract"])
    cat = Catalog.load(root / "catalog.yaml"); entry = cat.resolve("scale", "affwild2")
    fm = FrameModel(build_encoder(fc.encoder.size, fc.encoder.img_size, drop_path=0.0), fc.tasks, pool=fc.pool, grid_dim=fc.grid_dim).eval()
    clock("model")
    class First(Exception): pass
    make_loader = features.make_loader
    def first_batch(*args, **kw):
        for _ in make_loader(*args, **kw): raise First
    features.make_loader = first_batch
    try: features.run_extract(dataclasses.replace(xc, splits=["train", "validation"]), root / "extract_store", data=entry, encoder=fm,
                              cache_dir=root / "cache", progress=False, catalog=cat)
    except First: clock("set-up to its first batch")
    shutil.rmtree(root / "extract_store", ignore_errors=True)
    return {**out, "parts": clock.parts}


def stage_fusion(root, cfg, a):
    "The fusion stage made from the store (streaming) and its first steps, a validation pass, then its loop against its bare step."
    import torch
    from abaw_workbench.core import config_from_dict
    from abaw_workbench.features import FeatureStore, WindowFeatureDataset
    from abaw_workbench.fusion import FuseRunConfig, FusionStage, audio_stats
    from abaw_workbench.schema import video_slices
    from abaw_workbench.train import bare_step_seconds, fit
    from bench_stages import loop_step_seconds
    out, clock = {"import_mb": _peak_mb()}, _Clock()
    fu, store = config_from_dict(FuseRunConfig, cfg["fusion"]), FeatureStore(root / "store")
    fcfg = fu.fusion
    _, (train, val) = _splits(root, fu.tasks)
    clock("read_split, both splits")
    norm = audio_stats(store, list(video_slices(train))); clock("audio statistics")
    st = FusionStage(store, train, None, ["au"], fcfg, fu.loss, audio_norm=norm, preload=0)   # the demo's AU model, streaming
    clock("stage made (windows, the store's index)")
    tc = dataclasses.replace(fu.train, out=str(root / "runs" / "fu"), resume=False, progress=False, eval_every=0,
                             checkpoint_every=10**9)
    fit(st, dataclasses.replace(tc, max_steps=3)); clock("first 3 steps")
    st.val_labels = val
    st.evaluate(st.model); clock("validation pass")
    st.val_labels = None
    # streamed windows are the windows read into memory (a few videos, every window of theirs)
    sub = train.isel(frame=np.flatnonzero(np.isin(train.video.values, list(video_slices(train))[:3])))
    mem, disk = (WindowFeatureDataset(store, sub, fcfg.window, fcfg.stride, visual_norm=fcfg.visual_norm, preload=p) for p in (8.0, 0))
    bm, bd = mem.batch(range(len(mem))), disk.batch(range(len(disk)))
    equal = bool(mem.memory is not None and disk.memory is None and all(torch.equal(bm[k], bd[k]) for k in bm))
    # what a batch of windows costs to read (random windows, as the loop draws them)
    B, T, m = fu.train.batch_size, fcfg.window, store.meta
    g, reads = np.random.default_rng(0), []
    for _ in range(30):
        ids = g.choice(len(st.windows), B, replace=False)
        t = time.perf_counter(); st.windows.batch(ids); reads.append(time.perf_counter() - t)
    clock("30 batches read")
    # the loop against its bare step, alternating (as bench_stages.py)
    x = (torch.randn(B, T, m["visual_dim"]), torch.randn(B, T, m["audio_dim"]), torch.ones(B, T, dtype=torch.bool))
    reals, bares = [], []
    for r in range(a.rounds):
        reals.append(loop_step_seconds(lambda o: fit(st, dataclasses.replace(tc, **o)), a.steps, root / "runs" / f"fu{r}"))
        bares.append(bare_step_seconds(st.model, x, steps=a.steps))
    return {**out, "frames": _frames(train, val), "parts": clock.parts, "windows": len(st.windows), "streamed_equal": equal,
            "loop": {"real": reals, "bare": bares, "batch": B, "read": statistics.median(reads)}}


STAGES = {"read": stage_read, "finetune": stage_finetune, "extract": stage_extract, "fusion": stage_fusion}


def child(stage, root, a):
    "Run one stage in this (fresh) process, under abaw's thread and memory policy; print its figures as one JSON line."
    from abaw_workbench import cli   # noqa: F401 (sets the policy before numpy and torch load)
    import warnings; warnings.filterwarnings("ignore")
    cfg = json.loads((root / "config.json").read_text())
    out = STAGES[stage](root, cfg, a)
    print(json.dumps({**out, "peak_mb": _peak_mb()}))


def run_child(stage, root, a):
    "One stage in a fresh process: its figures."
    cmd = [sys.executable, __file__, "--child", stage, str(root), "--rounds", str(a.rounds), "--steps", str(a.steps),
           "--eval-frames", str(a.eval_frames)] + (["--full-validation"] if a.full_validation else [])
    r = subprocess.run(cmd, capture_output=True, text=True)   # the script's folder is on its path: bench_stages imports
    if r.returncode: raise SystemExit(f"bench_scale: stage {stage} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the report
def _row(metric, value, unit, baseline=None, ratio=None, target=None, **kw):
    return dict(bench="scale", metric=metric, value=value, unit=unit, baseline=baseline, ratio=ratio, target=target, **kw)


def report(p, res, a):
    "Print the stages' figures; the JSON rows and the checks."
    rows, checks = [], []
    fr = res["read"]["frames"]
    want = {s: sum(v["labelled"] for v in p if v["split"] == s) for s in ("train", "validation")}
    crops = sum(v["labelled"] - int(np.sum(np.array(v["missing"]) <= v["labelled"])) for v in p)
    checks += [("read_split: every labelled frame", [fr["train"], fr["validation"]] == [want["train"], want["validation"]]),
               ("read_split: every crop of a labelled frame", fr["train_crops"] + fr["validation_crops"] == crops),
               ("the stages read the same splits", all(r["frames"] == fr for r in res.values() if "frames" in r))]
    print(f"\n{'stage, each in a fresh process (parts in order)':<66}{'seconds':>8}{'peak MB':>9}{'imports':>9}")
    for stage, r in res.items():
        parts = list(r["parts"].items())
        for i, (k, t) in enumerate(parts):
            end = f"{r['peak_mb']:>9.0f}{r['import_mb']:>9.0f}" if i == len(parts) - 1 else ""
            print(f"{stage + ': ' + k:<66}{t:>8.2f}{end}")
        rows.append(_row(f"{stage}: peak memory (its imports: the baseline)", round(r["peak_mb"]), "MB", round(r["import_mb"])))
    ft, ex, fu = res["finetune"]["parts"], res["extract"]["parts"], res["fusion"]["parts"]
    rows += [_row("read_split, both splits", res["read"]["parts"]["read_split, both splits"], "s"),
             _row("fine-tuning: set-up to its first 3 steps", round(ft["stage made"] + ft["first 3 steps"], 2), "s"),
             _row("extraction: set-up to its first batch", ex["set-up to its first batch"], "s"),
             _row("fusion: set-up to its first 3 steps", round(sum(fu[k] for k in ("audio statistics", "stage made (windows, the store's index)",
                                                                                   "first 3 steps")), 2), "s"),
             _row("fusion: validation pass", fu["validation pass"], "s")]

    # fine-tuning's validation per epoch: the subsample against every frame
    sub, n_val = res["finetune"]["subsample"], fr["validation_crops"]
    first, later = ft["validation on the subsample, first (decodes and keeps its crops)"], ft["validation on the subsample, later"]
    checks.append(("eval_frames: a fixed subsample of at most that many frames", a.eval_frames // 2 <= sub["frames"] <= a.eval_frames))
    if "validation on every frame, first" in ft:
        full, how = ft.get("validation on every frame, later", ft["validation on every frame, first"]), "measured"
    else:   # a pass over every frame decodes them all when they do not fit the cache (Aff-Wild2's do not); else reads them
        kept = res["finetune"]["full_kept"]
        per = (later if kept else ft["validation on the subsample, decoded as an uncached pass decodes"]) / max(sub["crops"], 1)
        full, how = per * n_val, f"estimated: {n_val:,} crops at the subsample's {per * 1e3:.2f} ms a frame, {'kept' if kept else 'decoded'}"
    epoch = later if sub["kept"] else first
    print(f"\nfine-tuning validation per epoch: every frame {full:,.0f} s ({how}); eval_frames={a.eval_frames:,} "
          f"({sub['frames']:,} frames, crops {'kept' if sub['kept'] else 'decoded each time'}) {epoch:.1f} s: {full / epoch:.0f}x shorter")
    rows += [_row("fine-tuning validation per epoch, every frame", round(full, 1), "s", how=how),
             _row(f"fine-tuning validation per epoch, eval_frames={a.eval_frames}", round(epoch, 2), "s", round(full, 1), round(epoch / full, 4))]

    lp = res["fusion"]["loop"]
    ratios = [b / r for r, b in zip(lp["real"], lp["bare"])]
    ratio = statistics.median(ratios)
    row = _row(f"fusion loop streaming from the store ({sum(len(store_frames(v)[0]) for v in p):,} frames)",
               round(lp["batch"] / statistics.median(lp["real"]), 1), "train items/s", round(lp["batch"] / statistics.median(lp["bare"]), 1),
               round(ratio, 3), f">= {TARGET}", spread=[round(min(ratios), 3), round(max(ratios), 3)])
    print(f"fusion loop streaming from the store: {row['value']} windows/s, bare {row['baseline']}/s: ratio {ratio:.2f} "
          f"(rounds {row['spread'][0]:.2f}-{row['spread'][1]:.2f}; {a.rounds} rounds of {a.steps} steps)  {'ok' if ratio >= TARGET else 'BELOW'} >= {TARGET}")
    rows.append(row)
    rd = lp["read"]
    print(f"  a batch of {lp['batch']} windows read from the store: {rd * 1e3:.1f} ms (median of 30), "
          f"{rd / statistics.median(lp['bare']):.1%} of the bare step")
    rows.append(_row("fusion: a batch of windows read from the store", round(rd * 1e3, 2), "ms",
                     round(statistics.median(lp["bare"]) * 1e3, 1), round(rd / statistics.median(lp["bare"]), 4)))
    checks += [("fusion: streamed windows equal the windows read into memory", res["fusion"]["streamed_equal"]),
               (f"fusion loop >= {TARGET} of its bare step", ratio >= TARGET)]
    return rows, checks


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=FULL_VIDEOS)
    ap.add_argument("--frames", type=int, default=None, help=f"frames in all (default: {FULL_FRAMES:,} x videos / {FULL_VIDEOS})")
    ap.add_argument("--config", default="tiny", help="named demo configuration or YAML file (as `abaw demo --config`)")
    ap.add_argument("--rounds", type=int, default=5, help="fusion: alternating rounds of the loop and its bare step")
    ap.add_argument("--steps", type=int, default=12, help="fusion: steps per round (the first 3 of each are not timed)")
    ap.add_argument("--eval-frames", type=int, default=None,
                    help="fine-tuning's validation subsample during training (default: 10,000 x videos / 550)")
    ap.add_argument("--full-validation", action="store_true", help="measure a validation pass over every frame (else estimated)")
    ap.add_argument("--tmp", default=None, help="folder for the temporary data set (default: the system's)")
    ap.add_argument("--root", default=None, help="build in (or reuse) this folder")
    ap.add_argument("--keep", action="store_true", help="keep the data set and store (with --root: reuse them next time)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("child_root", nargs="?", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child: return child(a.child, Path(a.child_root), a)
    from abaw_workbench.audio import audio_feature_names
    from abaw_workbench.demo import demo_config
    cfg = demo_config(a.config)
    frames = a.frames or round(FULL_FRAMES * a.videos / FULL_VIDEOS)
    a.eval_frames = a.eval_frames or max(100, round(10_000 * a.videos / FULL_VIDEOS))
    store_gb = frames * (VISUAL_DIM + len(audio_feature_names())) * 4 / 1e9
    root = Path(a.root) if a.root else Path(tempfile.mkdtemp(prefix="bench_scale_", dir=a.tmp))
    root.mkdir(parents=True, exist_ok=True)
    reuse, free = (root / "built.json").exists(), shutil.disk_usage(root).free / 1e9
    if not reuse and free < 1.3 * store_gb + 1:
        raise SystemExit(f"bench_scale: {root} has {free:.1f} GB free; the feature store needs {store_gb:.1f} GB (use --tmp)")
    try:
        t0 = time.perf_counter()
        if reuse: p, built = json.loads((root / "built.json").read_text()), "reused"
        else:
            p = build(root, a.videos, frames); t1 = time.perf_counter()
            write_store(root, p); t2 = time.perf_counter()
            built = f"built in {t1 - t0:.0f} s, store written in {t2 - t1:.0f} s"
            (root / "built.json").write_text(json.dumps([{**v, "missing": v["missing"].tolist()} for v in p]))
        for v in p: v["missing"] = np.asarray(v["missing"], np.int64)
        (root / "config.json").write_text(json.dumps({k: dataclasses.asdict(getattr(cfg, k)) for k in ("finetune", "extract", "fusion")}))
        n_missing, n_store = sum(len(v["missing"]) for v in p), sum(len(store_frames(v)[0]) for v in p)
        size = sum(f.stat().st_size for f in (root / "store" / "videos").iterdir()) / 1e9
        print(f"data set ({built}): {len(p)} videos, {sum(v['frames'] for v in p):,} frames ({n_missing / frames:.1%} without a crop); "
              f"feature store: {n_store:,} frames, {size:.2f} GB; config {a.config}", flush=True)
        for s in ("train", "validation"):
            print(f"  {s:<10} " + ", ".join(f"{t.upper()} {sum(t in v['tasks'] for v in p if v['split'] == s)} videos "
                  f"{sum(v['labelled'] for v in p if v['split'] == s and t in v['tasks']):,} frames" for t in ("au", "expr", "va")))
        checks = [("frames as asked", sum(v["frames"] for v in p) == frames),
                  ("about 2 % of the frames without a crop", 0.015 <= n_missing / frames <= 0.03)]
        res = {}
        for stage in STAGES:
            t = time.perf_counter()
            res[stage] = run_child(stage, root, a)
            print(f"  ({stage}: {time.perf_counter() - t:.0f} s in all)", flush=True)
        rows, more = report(p, res, a)
        print(f"(machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end)")
        for name, ok in checks + more: print(f"check: {name}: {'ok' if ok else 'FAILED'}")
        for r in rows: print(json.dumps(r))
        return 0 if all(ok for _, ok in checks + more) else 1
    finally:
        if not a.keep:
            t = time.perf_counter(); shutil.rmtree(root, ignore_errors=True)
            print(f"(removed {root} in {time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
