"""Training-step throughput of the workbench's loop against a bare loop on the same model.

For MAE pre-training and for fine-tuning (encoder + linear head), tiny at 112 px and base at
224 px: images/s of `abaw_workbench.train.fit` (real image files through the dataset,
sampler, per-sample masks, logging) against a bare `forward + backward + AdamW step` of the
same model on random tensors, in the same run. Per-step times are the fastest of the timed
steps (warm-up steps are not timed; the minimum is the figure least disturbed by other
processes on a shared machine), and the bare loop runs before and after the workbench's.
The loop decodes and augments images in `--workers` DataLoader processes (default: 2 on
CUDA, 0 on CPU). Target: ratio >= 0.85.

By default base (ViT-B/16 at 224 px) runs only when CUDA is present (on a 2-core CPU one
step takes tens of seconds); `--sizes tiny,base` forces it.

Usage: python bench/bench_mae.py [--sizes tiny,base] [--steps N] [--batch-tiny B] [--batch-base B] [--workers W]
"""
import argparse, json, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from abaw_workbench.mae import (ImageFolderDataset, MaskedAutoencoder, PretrainConfig, PretrainTrainConfig, build_encoder,
                                mae_config, pretrain)
from abaw_workbench.core import get_device
from abaw_workbench.train import Stage, TrainConfig, fit


def write_images(root, n, size):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / f"{i:05d}.png")
    return root


DEV = get_device("auto")


def _sync():
    if DEV.type == "cuda": torch.cuda.synchronize()


def bare(model, loss_fn, batch, img_size, steps, warmup=2):
    "Fastest seconds per step of a plain loop on random tensors."
    model = model.to(DEV)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for s in range(steps + warmup):
        x = torch.randn(batch, 3, img_size, img_size, device=DEV)
        _sync(); t0 = time.perf_counter()
        loss = loss_fn(model, x)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        _sync()
        if s >= warmup: times.append(time.perf_counter() - t0)
    return min(times)


def loop_time(out, warmup=2):
    "Fastest seconds per step from the loop's log (the first `warmup` steps excluded)."
    t = [json.loads(l)["time"] for l in (Path(out) / "log.jsonl").read_text().splitlines() if '"loss"' in l]
    return float(min(np.diff(t)[warmup - 1:]))


class FinetuneStage(Stage):
    "Encoder + linear head, cross-entropy on labels drawn from the sample seed."
    def __init__(self, model, data): self.model, self.data = model, data
    def train_data(self): return self.data
    def loss(self, model, batch):
        y = (batch["seed"] % 8).to(batch["image"].device)
        return nn.functional.cross_entropy(model(batch["image"]), y), {}


def row(name, metric, loop_s, bare_s, batch):
    v, b = batch / loop_s, batch / bare_s
    print(f"{name:<28} {v:9.1f} {b:9.1f} {v / b:7.2f}")
    return dict(bench="mae", metric=metric, value=round(v, 2), unit="images/s", baseline=round(b, 2),
                ratio=round(v / b, 3), target=">= 0.85")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="tiny,base" if DEV.type == "cuda" else "tiny")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per measurement (tiny); base uses half")
    ap.add_argument("--batch-tiny", type=int, default=32)
    ap.add_argument("--batch-base", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2 if DEV.type == "cuda" else 0,
                    help="DataLoader workers of the loop (default: 0 on CPU, where a worker competes with the model for cores)")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    results = []
    print(f"{'figure':<28} {'loop':>9} {'bare':>9} {'ratio':>7}   (images/s on {DEV}, torch threads: {torch.get_num_threads()})")
    if "base" not in a.sizes: print("(base at 224 px skipped on CPU: --sizes tiny,base to run it)")
    with tempfile.TemporaryDirectory() as d:
        for size in a.sizes.split(","):
            img = 112 if size == "tiny" else 224
            B = a.batch_tiny if size == "tiny" else a.batch_base
            steps = a.steps if size == "tiny" else max(2, a.steps // 2)
            folder = write_images(Path(d) / f"img{img}", B * (steps + 2), img)
            tc = dict(max_steps=steps + 2, batch_size=B, log_every=1, checkpoint_every=10**9, progress=False, device=str(DEV),
                      num_workers=a.workers)
            # MAE pre-training
            model = MaskedAutoencoder(**mae_config(size, img))
            mae_loss = lambda m, x: m(x)[0]
            bare_s = bare(model, mae_loss, B, img, steps)
            cfg = PretrainConfig(size=size, img_size=img, train=PretrainTrainConfig(**tc, out=f"{d}/pre_{size}"))
            pretrain(cfg, folder, model=MaskedAutoencoder(**mae_config(size, img)))
            bare_s = min(bare_s, bare(model, mae_loss, B, img, steps))
            results.append(row(f"MAE pretrain {size} {img}px", f"pretrain_{size}_{img}", loop_time(cfg.train.out), bare_s, B))
            del model
            # fine-tuning: encoder + head
            enc = build_encoder(size, img, num_classes=8)
            ce = lambda m, x: nn.functional.cross_entropy(m(x), torch.randint(0, 8, (x.shape[0],), device=x.device))
            bare_s = bare(enc, ce, B, img, steps)
            data = ImageFolderDataset(folder, img, augment=True)
            fit(FinetuneStage(build_encoder(size, img, num_classes=8), data), TrainConfig(**tc, out=f"{d}/ft_{size}"))
            bare_s = min(bare_s, bare(enc, ce, B, img, steps))
            results.append(row(f"finetune {size} {img}px", f"finetune_{size}_{img}", loop_time(f"{d}/ft_{size}"), bare_s, B))
    for r in results: print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
