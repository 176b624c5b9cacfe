"""`abaw predict` figures (issue 17: any video in, predictions out; issue 26: a faster detector with the same alignment).

1. `--rounds` interleaved rounds (order alternating) of `predict.predict_paths` end to end as `abaw predict` runs it
   (decoding, detection, tracking, cropping, the static forward, audio, the temporal models, post-processing, loading the
   models, writing every output file) with the face detector BEFORE (facenet-pytorch's own `MTCNN.detect`,
   `FaceConfig(pipeline="facenet")`: the detector of every release before issue 26) and AFTER (this package's batched
   stages, the default), and the bare forward of the run's models (the static model on as many ready-made, normalised
   crops as the face track has frames, batch 64, and each temporal model over features of as many frames on the 30 fps
   grid). Medians with their spread (min-max). Targets: end to end after >= 1.5x before (frames/s); predict without the
   detector >= 0.8 of the bare forward's frames/s.
2. Alignment quality on the first `--quality-seconds`, before and after, for `--detect-every` k = 1, 2, 3: the true eye
   positions mapped by each crop's transform, against the template's (112 px crop). Target: after - before <= 0.2 px
   (mean, k = 1).

The video: scikit-image's astronaut photograph drifting and zooming over a `--height`p 16:9 frame, with a voiced-like
audio track (kept in .cache/bench/ between runs). The models are those of `--run`, or of a tiny synthetic-trained fixture
run made on the spot (the figures measure the pipeline, not the predictions).
Usage: python bench/bench_predict.py [--seconds 60] [--height 720] [--fps 30] [--run RUN_DIR] [--rounds 3]
"""
import argparse, atexit, json, os, shutil, sys, tempfile, time, warnings
from pathlib import Path

# measured under `abaw`'s thread and memory policy, as `abaw predict` runs: set by importing the CLI before numpy and torch load
from abaw_workbench import cli  # noqa: F401

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def astro_video(path, seconds, fps, height=720, seed=0):
    "A 16:9 video of the astronaut moving about, with audio; returns the true 5 landmarks per frame (cached beside it)."
    truth_file = Path(path).with_suffix(".npy")
    if Path(path).exists() and truth_file.exists(): return np.load(truth_file)
    from skimage import data as skdata
    from abaw_workbench.faces import FaceDetector
    from abaw_workbench.video import write_video
    photo = skdata.astronaut()
    L0 = FaceDetector()([photo])[0]["landmarks"][0]
    H = int(height) // 2 * 2; W = int(round(H * 16 / 9)) // 2 * 2
    k = H / 720
    n = int(seconds * fps)
    truth = []
    def frames():
        for i in range(n):
            t = i / fps
            s = k * (1.6 + 0.3 * np.sin(2 * np.pi * t / 7))
            cx, cy = W / 2 + k * 250 * np.sin(2 * np.pi * t / 11), H * 0.46 + k * 60 * np.sin(2 * np.pi * t / 5)
            c0 = L0.mean(0)
            M = np.array([[s, 0, cx - s * c0[0]], [0, s, cy - s * c0[1]]], np.float32)
            truth.append(L0 @ M[:, :2].T + M[:, 2])
            yield cv2.warpAffine(photo, M, (W, H), flags=cv2.INTER_LINEAR, borderValue=(90, 100, 110))
    sr = 16000
    tt = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * tt / 3)
    wave = 0.2 * np.sin(2 * np.pi * np.cumsum(f0) / sr) * (np.sin(2 * np.pi * tt * 1.5) > -0.3)
    wave = (wave + 0.01 * np.random.default_rng(seed).standard_normal(len(tt))).astype(np.float32)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_video(path, frames(), fps=fps, audio=(wave, sr))
    np.save(truth_file, np.stack(truth))
    return np.stack(truth)


def bare_forward(models, n, m, batch=64):
    "Seconds for the static model (features and heads) on n normalised crops, and the temporal models on m frames."
    from abaw_workbench.fusion import predict_video
    S = models.preprocess["size"][0]
    x = torch.randn(batch, 3, S, S)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, n, batch):
            f = models.static.features(x[:min(batch, n - s)]); models.static.heads(f)
    static = time.perf_counter() - t0
    vis = np.random.default_rng(0).standard_normal((m, models.store_meta["visual_dim"])).astype(np.float32)
    aud = np.random.default_rng(1).standard_normal((m, models.store_meta["audio_dim"])).astype(np.float32)
    t0 = time.perf_counter()
    for nets in models.fusion.values():
        for net in nets: predict_video(net, vis, aud, net.cfg.window, net.cfg.stride)
    return static, time.perf_counter() - t0


def quality(path, truth, seconds, k, pipeline="batched"):
    "Detector seconds, frames detected, eye error (crop px, vs the template: mean, max) with detection on every k-th frame."
    from abaw_workbench.faces import FaceConfig, detect_video, choose_track, similarity, face_template
    cut = Path(path).with_name(Path(path).stem + f"_first{seconds:g}s.mp4")
    if not cut.exists():
        from abaw_workbench.video import iter_frames, video_info, write_video
        fps = video_info(path).fps
        def first():
            for i, _, img in iter_frames(path):
                if i > seconds * fps: break
                yield img
        write_video(cut, first(), fps=fps)
    timer = {}
    times, tracks, _ = detect_video(cut, FaceConfig(detect_every=k, pipeline=pipeline), timer=timer)
    tr = choose_track(tracks)
    tpl = face_template(112)
    err = [np.abs(truth[f, :2] @ similarity(tr.landmarks[j], tpl)[:, :2].T + similarity(tr.landmarks[j], tpl)[:, 2] - tpl[:2]).max()
           for j, f in enumerate(tr.frames)]
    return timer["detect"], len(times), float(np.mean(err)), float(np.max(err)), len(tr) / len(times)


def spread(xs):
    xs = np.asarray(xs, float)
    return float(np.median(xs)), float(xs.min()), float(xs.max())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60, help="video length (default 60)")
    ap.add_argument("--height", type=int, default=720, help="video height, 16:9 (default 720)")
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--run", default=None, help="run folder (default: a tiny synthetic-trained fixture run made here)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of before / after / bare forward (default 3)")
    ap.add_argument("--detect-every", type=int, default=1)
    ap.add_argument("--quality-seconds", type=float, default=4)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    from abaw_workbench.predict import PredictConfig, load_run_models, predict_paths, time_grid
    from abaw_workbench.faces import FaceConfig
    from abaw_workbench.demo import tiny_run
    from abaw_workbench.catalog import Catalog
    tmp = Path(tempfile.mkdtemp())
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)   # the fixture run and the predictions
    run, cat = (Path(a.run), None) if a.run else tiny_run(tmp / "fixture")
    cat = Catalog.load(cat) if cat else None   # the catalog that names the run's training data
    models = load_run_models(run, cat)
    t0 = time.perf_counter()
    video = ROOT / ".cache" / "bench" / f"astro_{a.seconds:g}s_{a.height}p_{a.fps:g}fps.mp4"
    truth = astro_video(video, a.seconds, a.fps, a.height)
    n = len(truth)
    made = time.perf_counter() - t0
    cfgs = {p: PredictConfig(device="cpu", faces=FaceConfig(detect_every=a.detect_every, pipeline=p)) for p in ("facenet", "batched")}
    quiet = lambda *x: None
    # warm-up on the first second: imports (the audio features' librosa), caches
    short = video.with_name(video.stem + "_first1s.mp4")
    if not short.exists():
        from abaw_workbench.video import iter_frames, write_video
        write_video(short, (img for i, _, img in iter_frames(video) if i <= a.fps), fps=a.fps, audio=video)
    for p, c in cfgs.items(): predict_paths(short, run, tmp / f"warm-{p}", c, catalog=cat, log=quiet)

    # interleaved rounds: before, after, and the bare forward, in an order that turns each round
    runs, cpus, parts, bare = {p: [] for p in cfgs}, {p: [] for p in cfgs}, {p: [] for p in cfgs}, []
    order = ["facenet", "batched", "bare"]
    for r in range(a.rounds):
        for what in order[r % 3:] + order[:r % 3]:
            if what == "bare":
                if r == 0 and what == order[0]: continue   # (needs a predict run's face count first)
                bs, bf = bare_forward(models, n_crops, m); bare.append((bs, bf)); continue
            tm = {}
            t0, c0 = time.perf_counter(), time.process_time()
            found = predict_paths(video, run, tmp / f"round{r}-{what}", cfgs[what], catalog=cat, timer=tm, log=quiet)["found"][video.stem]
            runs[what].append(time.perf_counter() - t0); cpus[what].append(time.process_time() - c0); parts[what].append(tm)
            m = len(time_grid(found[0], models.fps)[0])   # frames on the training frame rate's grid
            n_crops = max(len(t) for t in found[1]) if found[1] else 0
    load = os.getloadavg()
    H = int(a.height) // 2 * 2; W = int(round(H * 16 / 9)) // 2 * 2
    print(f"abaw predict: {a.seconds:g} s video, {W}x{H} at {a.fps:g} fps ({n} frames, face in {n_crops}; made in {made:.0f} s), "
          f"run {run.name} (static model: {models.static.encoder.__class__.__name__} "
          f"{models.store_meta['visual_dim']}-d features at {models.preprocess['size'][0]} px); torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"(1, 5, 15 min; after the rounds)")
    tot = {p: spread(v) for p, v in runs.items()}
    det = {p: spread([t.get("detect", 0.0) for t in parts[p]]) for p in cfgs}
    rest = {p: spread([x - t.get("detect", 0.0) for x, t in zip(runs[p], parts[p])]) for p in cfgs}
    b = spread([s + f for s, f in bare])
    speedup = tot["facenet"][0] / tot["batched"][0]
    print(f"\n{'':44}{'seconds (median, min-max)':>30}{'frames/s':>10}{'ms/frame':>10}")
    row = lambda name, sp, k: print(f"{name:44}{f'{sp[0]:.2f} ({sp[1]:.2f}-{sp[2]:.2f})':>30}{k / sp[0]:>10.1f}{sp[0] / n * 1000:>10.1f}")
    for p, label in (("facenet", "BEFORE (facenet-pytorch's MTCNN.detect)"), ("batched", "AFTER (batched stages)")):
        row(f"{label}: end to end", tot[p], n)
        row("  the detector", det[p], n)
        row("  the rest", rest[p], n)
    row("bare forward: static + temporal", b, n_crops)
    print(f"\nrounds, end to end before / after: {', '.join(f'{x:.1f}/{y:.1f}' for x, y in zip(runs['facenet'], runs['batched']))} s")
    cpu = {p: spread(v) for p, v in cpus.items()}
    print(f"CPU seconds end to end (all threads; less sensitive than wall time to other processes on a busy machine): "
          f"before {cpu['facenet'][0]:.1f}, after {cpu['batched'][0]:.1f} ({cpu['facenet'][0] / cpu['batched'][0]:.2f}x less)")
    after = parts["batched"]
    part = {k: float(np.median([t.get(k, 0.0) for t in after])) for k in ("crop", "crop_static", "audio", "temporal", "decode", "load", "write")}
    line = lambda name, sec: print(f"{name:44}{sec:>30}")
    line("after: crops (in the detection pass)", f"{part['crop']:.2f}")
    line("after: static forward (+ reading crops)", f"{part['crop_static']:.2f}")
    line("after: audio / temporal + post-processing", f"{part['audio']:.2f} / {part['temporal']:.2f}")
    line("after: waiting for decoded frames", f"{part['decode']:.2f}")
    line("after: loading models + detector / writing outputs", f"{part['load']:.2f} / {part['write']:.2f}")
    print(f"the detector: {det['facenet'][0] / tot['facenet'][0]:.0%} of end to end before, {det['batched'][0] / tot['batched'][0]:.0%} after; "
          f"{det['facenet'][0] / det['batched'][0]:.2f}x faster")
    ratio = b[0] / rest["batched"][0]
    print(f"\ntarget: end to end after >= 1.5x before: {speedup:.2f}x ({'MET' if speedup >= 1.5 else 'NOT met'})")
    print(f"target: predict without the detector >= 0.8x the bare forward's frames/s: {ratio:.2f} ({'MET' if ratio >= 0.8 else 'NOT met'})")
    fig = lambda **k: print(json.dumps({"bench": "predict", **k}))
    fig(metric="end_to_end_fps", value=n / tot["batched"][0], unit="frames/s", baseline=n / tot["facenet"][0], ratio=speedup, target=1.5)
    fig(metric="detector_ms_per_frame", value=det["batched"][0] / n * 1000, unit="ms", baseline=det["facenet"][0] / n * 1000,
        ratio=det["facenet"][0] / det["batched"][0])
    fig(metric="non_detector_fps", value=n / rest["batched"][0], unit="frames/s", baseline=n_crops / b[0], ratio=ratio, target=0.8)
    fig(metric="end_to_end_cpu_s", value=cpu["batched"][0], unit="s", baseline=cpu["facenet"][0], ratio=cpu["facenet"][0] / cpu["batched"][0])
    fig(metric="detector_share", value=det["batched"][0] / tot["batched"][0], unit="share of end to end")
    print(f"\n--detect-every k on the first {a.quality_seconds:g} s: detector time and the true eyes' error in the 112 px crop")
    err = {}
    for k in (1, 2, 3):
        for p in cfgs:
            dt, nf, me, mx, cover = quality(video, truth, a.quality_seconds, k, p)
            err[p, k] = me
            print(f"  k={k} {p:8}: detector {dt:.2f} s for {nf} frames ({dt / nf * 1000:.0f} ms/frame); eye error mean {me:.3f} px, "
                  f"max {mx:.3f} px; face in {cover:.0%} of frames")
            if p == "batched": fig(metric=f"eye_error_px_detect_every_{k}", value=me, unit="px", baseline=err["facenet", k])
    grow = err["batched", 1] - err["facenet", 1]
    print(f"target: eye error after - before <= 0.2 px (k=1): {grow:+.3f} px ({'MET' if grow <= 0.2 else 'NOT met'})")


if __name__ == "__main__":
    sys.exit(main())
