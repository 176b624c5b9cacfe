"""Frame loading throughput of `FrameDataset` against a bare loop that only decodes the same JPEGs.

Writes a few thousand 112 px JPEG crops (face-like smooth content plus noise, ~4-6 KB each, like
Aff-Wild2's `cropped_aligned`) into a temporary folder, then measures frames/s for:
  - bare: read the bytes + `cv2.imdecode` (the decoder `data.decode_file` uses), nothing else, in this process
    (the baseline);
  - FrameDataset at 112 px and 224 px (decode, resize, normalise, labels), through a DataLoader
    with 0 workers (in this process), 1 worker and 2 workers; and at 224 px with `normalize=False`
    (uint8 images, normalised later on the device), which moves 4x fewer bytes;
  - what one core decodes for a GPU (`loader_settings` gives every core but one to workers there): the inference
    crops at their stored 112 px (resized on the device, `resize_on="device"`) or resized to 224 in the worker
    (`resize_on="workers"`), and the training crops at 224 (random resized crop, flip, colour jitter, uint8);
    and MAE pre-training's face images at 224 (`ImageFolderDataset`: random resized crop of 20-100 %, flip, uint8);
    the cores each would need to feed the paper configuration's bare rates on one H200 (forward 8,114 frames/s,
    fine-tuning step 2,472 images/s, MAE step about 1,985 images/s: ../shared/docs/gpu.md and issue 25).
Each figure is the best of `--repeats` full passes (workers warmed up by a first pass); the bare
loop is timed again right before each configuration and the ratio uses that neighbour, so that
load from other processes on a shared machine affects both sides alike.
Prints a table, then one JSON line per figure; exits 1 when a figure misses its target:
  - in this process at 112 px, >= 0.45x bare (decoding dominates); uint8 at 224 px, >= 0.15x bare (4x the pixels);
    the float images at 224 px are reported without a target: a batch of 64 is 38.5 MB, over glibc's 32 MB ceiling
    for reusing freed memory, so every batch faults its pages in again (about 150 faults a frame; at batch 32 none);
    no stage loads them in its own process (the CPU's default is workers, a GPU's uint8);
  - 2 workers >= 1.2x the frames/s of 1 worker, on 2 cores or more (a worker pays for writing its batch into
    fresh shared memory, which the loop in this process does not, so workers are compared with a worker);
  - one core feeding a GPU: at most 3 cores for one H200's bare rate (its machine has 16 cores, 15 workers).

    python bench/bench_frames.py [--frames 4000] [--repeats 2] [--batch 64]
"""
import argparse, json, os, sys, tempfile, time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
from abaw_workbench import cli   # noqa: F401 (abaw's thread and memory policy, as the stages run, before numpy and torch load)
import cv2
import numpy as np
import torch
from PIL import Image

from abaw_workbench.data import FrameDataset, make_loader, preprocess_config
from abaw_workbench.finetune import CropDataset
from abaw_workbench.mae import ImageFolderDataset

H200 = {"forward": 8114, "train": 2472, "pretrain": 1985}   # the paper configuration's bare rates on one H200, frames (images) per second
from abaw_workbench.schema import make_dataset


def write_crops(root: Path, n: int, videos: int = 8, size: int = 112, seed: int = 0):
    "n face-like JPEG crops split over `videos` folders; returns the labels dataset."
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    per = int(np.ceil(n / videos))
    names, fis = [], []
    for v in range(videos):
        name = f"{v}-30-{size}x{size}"
        (root / name).mkdir(parents=True, exist_ok=True)
        base = rng.uniform(60, 200, 3)
        for i in range(1, min(per, n - v * per) + 1):
            c = 0.5 + 0.3 * np.sin(6 * xx + 0.05 * i) * np.cos(4 * yy)            # smooth "face"
            face = np.exp(-(((xx - 0.5) / 0.3) ** 2 + ((yy - 0.5) / 0.38) ** 2))
            img = base[None, None] * (0.6 + 0.4 * face[..., None]) * c[..., None] + rng.normal(0, 6, (size, size, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name / f"{i:05d}.jpg", quality=90)
            names.append(name); fis.append(i)
    n = len(names)
    return make_dataset(names, fis, expr=rng.integers(0, 8, n), va=rng.uniform(-1, 1, (n, 2)),
                        au=rng.integers(0, 2, (n, 12)).astype(np.float32))


class Seeded(torch.utils.data.Dataset):
    "A dataset keyed as the training loop keys it, by (index, seed), so that its augmentation runs."
    def __init__(self, d): self.d = d
    def __len__(self): return len(self.d)
    def __getitem__(self, i): return self.d[(i, i)]


def bare(paths):
    for p in paths:
        with open(p, "rb") as f: data = f.read()
        cv2.imdecode(np.frombuffer(data, np.uint8), getattr(cv2, "IMREAD_COLOR_RGB", cv2.IMREAD_COLOR))


def timed(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t0)
    return best


def loader_fps(fd, n, batch, nw, repeats, bare_fps):
    "Frames/s of a loader of `nw` workers over `fd`, and the bare figure measured right before it."
    dl = make_loader(fd, batch_size=batch, num_workers=nw)
    def epoch():
        k = 0
        for b in dl: k += len(b["image"])
        assert k == n
    if nw: epoch()  # start the persistent workers
    base = bare_fps()  # the baseline right before, so machine load hits both alike
    return n / timed(epoch, repeats), base   # the loader and its workers go when this returns


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cropped_aligned"
        t0 = time.perf_counter(); ds = write_crops(root, a.frames)
        n = ds.sizes["frame"]
        kb = sum(p.stat().st_size for p in root.rglob("*.jpg")) / n / 1024
        print(f"wrote {n} crops of 112 px ({kb:.1f} KB each) in {time.perf_counter() - t0:.1f} s")
        paths = [f"{root}/{v}/{i:05d}.jpg" for v, i in zip(ds.video.values, ds.frame_index.values)]
        bare(paths[:200])  # warm the page cache and libjpeg
        bare_fps = lambda: n / timed(lambda: bare(paths), a.repeats)
        rows = []  # (label, metric, frames/s, bare frames/s measured just before it)
        for px, norm in ((112, True), (224, True), (224, False)):
            fd = FrameDataset(ds, root, preprocess_config("vit_tiny_patch16_224", img_size=px), normalize=norm)
            kind = "" if norm else " uint8"
            for nw in dict.fromkeys((0, 1, a.workers)):
                fps, base = loader_fps(fd, n, a.batch, nw, a.repeats, bare_fps)
                rows.append((f"FrameDataset {px} px{kind}, {nw} workers",
                             f"static_{px}px{'_uint8' if not norm else ''}_{nw}workers", fps, base))
        cfg = lambda px: preprocess_config("vit_tiny_patch16_224", img_size=px)
        feed = [("inference crops at 112 px (resized on the device)", "feed_infer_112px", CropDataset(ds, root, cfg(112), normalize=False), "forward"),
                ("inference crops resized to 224 px in the worker", "feed_infer_224px", CropDataset(ds, root, cfg(224), normalize=False), "forward"),
                ("training crops at 224 px (augmented, jittered)", "feed_train_224px",
                 FrameDataset(ds, root, cfg(224), augment=True, jitter=1.0, normalize=False), "train"),
                ("MAE pre-training's face images at 224 px (augmented)", "feed_pretrain_224px",
                 Seeded(ImageFolderDataset(files=paths, img_size=224, normalize=False)), "pretrain")]
        fed = []
        for label, metric, d, kind in feed:
            fps, base = loader_fps(d, n, a.batch, 0, a.repeats, bare_fps)
            fed.append((label, metric, fps, base, H200[kind] / fps))
    base_fps = max(r[3] for r in rows)
    print(f"\n{'what':<36} {'frames/s':>10} {'bare f/s':>10} {'x bare':>8}")
    print(f"{'bare imdecode loop (best)':<36} {base_fps:>10.0f} {'':>10} {1:>8.2f}")
    for label, _, fps, base in rows: print(f"{label:<36} {fps:>10.0f} {base:>10.0f} {fps / base:>8.2f}")
    print(f"\n{'one core, feeding a GPU':<52} {'frames/s':>10} {'cores for one H200':>20}")
    for label, _, fps, _, need in fed: print(f"{label:<52} {fps:>10.0f} {need:>20.1f}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"(bare = read + cv2.imdecode only, in one process; {os.cpu_count()} cores, load average {load:.1f} at the end)\n")
    one = {m.rsplit("_", 1)[0]: fps for _, m, fps, _ in rows if m.endswith("_1workers")}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    def target(metric, px, nw, fps, base):
        "The figure's target (None: reported), and whether it is met."
        if nw == 1 or (nw > 1 and cores < 2): return None, True
        if nw > 1: return f">= 1.2x the 1-worker figure ({nw} workers on {cores} cores)", fps >= 1.2 * one[metric.rsplit("_", 1)[0]]
        if px == 112: return ">= 0.45x bare (decode dominates)", fps / base >= 0.45
        if "uint8" in metric: return ">= 0.15x bare (upsampling to 224: 4x the pixels)", fps / base >= 0.15
        return None, True   # float at 224 px in this process: see the docstring
    print(json.dumps({"bench": "frames", "metric": "bare_decode", "value": round(base_fps, 1), "unit": "frames/s"}))
    missed = []
    for label, metric, fps, base in rows:
        parts = metric.split("_")
        px, nw = int(parts[1].rstrip("px")), int(parts[-1].rstrip("workers"))
        text, met = target(metric, px, nw, fps, base)
        if not met: missed.append(metric)
        print(json.dumps({"bench": "frames", "metric": metric, "value": round(fps, 1), "unit": "frames/s",
                          "baseline": round(base, 1), "ratio": round(fps / base, 3), "target": text}))
    for label, metric, fps, base, need in fed:
        if need > 3: missed.append(metric)
        print(json.dumps({"bench": "frames", "metric": metric, "value": round(fps, 1), "unit": "frames/s on one core",
                          "baseline": round(base, 1), "ratio": round(fps / base, 3), "cores_for_one_h200": round(need, 1),
                          "target": "<= 3 cores for one H200"}))
    if missed: print(f"missed its target: {', '.join(missed)}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
