"""`abaw predict` figures (issue 17: any video in, predictions out).

1. End to end: frames/s of `predict.predict_paths` on a 720p video made from a real photograph
   (scikit-image's astronaut, drifting and zooming, with a voiced-like audio track), with the
   time of the face detector shown on its own; against the bare forward of the same models
   (static model on the same number of 112 px crops already in memory, the temporal models
   on feature windows of the same length) in the same run. Target: everything but the detector
   >= 0.8 of the bare forward.
2. `--detect-every k`: detector time and alignment quality (eye positions of the true landmarks,
   mapped into the crop, against the template) for k = 1 and k = 3 on the first seconds.

The models are those of `--run`, or of a tiny synthetic-trained fixture run made on the spot
(the figures measure the pipeline, not the predictions).
Usage: python bench/bench_predict.py [--seconds 60] [--fps 30] [--run RUN_DIR] [--quality-seconds 4]
"""
import argparse, json, os, sys, tempfile, time, warnings
from pathlib import Path

import cv2
import numpy as np
import torch


def astro_video(path, seconds, fps, size=(720, 1280), seed=0):
    "A 720p video of the astronaut moving about, with audio; returns the true 5 landmarks per frame."
    from skimage import data as skdata
    from abaw_workbench.faces import FaceDetector
    from abaw_workbench.video import write_video
    photo = skdata.astronaut()
    L0 = FaceDetector()([photo])[0]["landmarks"][0]
    n = int(seconds * fps)
    truth = []
    def frames():
        for i in range(n):
            t = i / fps
            s = 1.6 + 0.3 * np.sin(2 * np.pi * t / 7)
            cx, cy = 640 + 250 * np.sin(2 * np.pi * t / 11), 330 + 60 * np.sin(2 * np.pi * t / 5)
            c0 = L0.mean(0)
            M = np.array([[s, 0, cx - s * c0[0]], [0, s, cy - s * c0[1]]], np.float32)
            truth.append(L0 @ M[:, :2].T + M[:, 2])
            yield cv2.warpAffine(photo, M, (size[1], size[0]), flags=cv2.INTER_LINEAR, borderValue=(90, 100, 110))
    sr = 16000
    tt = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * tt / 3)
    wave = 0.2 * np.sin(2 * np.pi * np.cumsum(f0) / sr) * (np.sin(2 * np.pi * tt * 1.5) > -0.3)
    wave = (wave + 0.01 * np.random.default_rng(seed).standard_normal(len(tt))).astype(np.float32)
    write_video(path, frames(), fps=fps, audio=(wave, sr))
    return np.stack(truth)


def bare_forward(models, n, batch=64):
    "Seconds for the static model on n crops (already normalised tensors) and the temporal models on n frames."
    from abaw_workbench.fusion import predict_video
    S = models.preprocess["size"][0]
    x = torch.randn(batch, 3, S, S)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, n, batch):
            f = models.static.features(x[:min(batch, n - s)]); models.static.heads(f)
    static = time.perf_counter() - t0
    vis = np.random.default_rng(0).standard_normal((n, models.store_meta["visual_dim"])).astype(np.float32)
    aud = np.random.default_rng(1).standard_normal((n, models.store_meta["audio_dim"])).astype(np.float32)
    t0 = time.perf_counter()
    for nets in models.fusion.values():
        for net in nets: predict_video(net, vis, aud, net.cfg.window, net.cfg.stride)
    return static, time.perf_counter() - t0


def quality(path, truth, seconds, fps, k):
    "Detector seconds and eye error (crop px, vs the template) with detection on every k-th frame."
    from abaw_workbench.faces import FaceConfig, detect_video, choose_track, similarity, face_template
    cut = Path(path).with_name(f"first{seconds}s.mp4")
    if not cut.exists():
        from abaw_workbench.video import iter_frames, write_video
        def first():
            for i, _, img in iter_frames(path):
                if i > seconds * fps: break
                yield img
        write_video(cut, first(), fps=fps)
    timer = {}
    times, tracks, _ = detect_video(cut, FaceConfig(detect_every=k), timer=timer)
    tr = choose_track(tracks)
    tpl = face_template(112)
    err = []
    for j, f in enumerate(tr.frames):
        M = similarity(tr.landmarks[j], tpl)
        eyes = truth[f, :2] @ M[:, :2].T + M[:, 2]
        err.append(np.abs(eyes - tpl[:2]).max())
    return timer["detect"], float(np.mean(err)), float(np.max(err)), len(tr) / len(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--fps", type=float, default=30)
    ap.add_argument("--run", default=None)
    ap.add_argument("--detect-every", type=int, default=1)
    ap.add_argument("--quality-seconds", type=float, default=4)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    from abaw_workbench.predict import PredictConfig, load_run_models, predict_paths
    from abaw_workbench.demo import tiny_run
    from abaw_workbench.faces import FaceConfig
    tmp = Path(tempfile.mkdtemp())
    run, cat = (Path(a.run), None) if a.run else tiny_run(tmp / "fixture")
    t0 = time.perf_counter()
    video = tmp / "astro720.mp4"
    truth = astro_video(video, a.seconds, a.fps)
    n = len(truth)
    print(f"video: {n} frames 1280x720 at {a.fps} fps ({a.seconds} s), written in {time.perf_counter() - t0:.0f} s; "
          f"threads {torch.get_num_threads()}; load {os.getloadavg()[0]:.1f}")
    timer = {}
    cfg = PredictConfig(device="cpu", faces=FaceConfig(detect_every=a.detect_every))
    t0 = time.perf_counter()
    predict_paths(video, run, tmp / "out", cfg, catalog=cat, timer=timer, log=lambda *x: None)
    total = time.perf_counter() - t0
    det = timer.get("detect", 0.0)
    models = load_run_models(run, cat)
    bs, bf = bare_forward(models, n)
    bare = bs + bf
    rest = total - det
    print(f"end to end {total:.1f} s = {n / total:.1f} frames/s; detector {det:.1f} s; everything else {rest:.1f} s "
          f"({n / rest:.1f} frames/s): " + ", ".join(f"{k} {v:.1f} s" for k, v in timer.items() if k != "detect"))
    print(f"bare forward of the same models on {n} crops: static {bs:.2f} s + temporal {bf:.2f} s = {n / bare:.1f} frames/s")
    fig = lambda **k: print(json.dumps({"bench": "predict", **k}))
    fig(metric="end_to_end_fps", value=n / total, unit="frames/s")
    fig(metric="detector_s_per_frame", value=det / n, unit="s")
    fig(metric="non_detector_fps", value=n / rest, unit="frames/s", baseline=n / bare, ratio=(n / rest) / (n / bare), target=0.8)
    stages = sum(v for k, v in timer.items() if k != "detect")   # per-frame work only: without loading models, writing files
    print(f"per-frame stages without the detector: {stages:.1f} s ({n / stages:.1f} frames/s); fixed costs (models, detector "
          f"set-up, output files) {rest - stages:.1f} s")
    fig(metric="non_detector_stage_fps", value=n / stages, unit="frames/s", baseline=n / bare, ratio=bare / stages, target=0.8)
    for k in (1, 3):
        dt, me, mx, cover = quality(video, truth, a.quality_seconds, a.fps, k)
        print(f"detect_every={k}: detector {dt:.1f} s for {int(a.quality_seconds * a.fps)} frames; eye error in the 112 px crop "
              f"mean {me:.2f} px, max {mx:.2f} px; face in {cover:.0%} of frames")
        fig(metric=f"eye_error_px_detect_every_{k}", value=me, unit="px", baseline=mx)
        fig(metric=f"detector_s_detect_every_{k}", value=dt, unit="s")


if __name__ == "__main__":
    sys.exit(main())
