"""One device check: the paper's configuration on an accelerator, each loop against its bare limit measured there.

On a GPU machine (nothing is downloaded; never timed on one yet: about 6-7 minutes on one H200 estimated, generating
the demo data set included):

    python bench/gpu_check.py --out DIR [--runs DIR2]   # DIR: gpu_check.json, gpu_check.log; DIR2: its runs (a temporary folder)

On a lent machine, `bench/gpu_run.sh` runs it after installing the wheels the machine lacks (`bench/gpu_wheels.py`).

It prints, for `--config paper` (ViT-B/16 at 224 px, bf16 autocast) on the device that `device: auto` takes:
  - stages: `bench_stages.py` there: MAE pre-training, fine-tuning, its validation pass, feature extraction (crops
    resized on the device, the default, and in the workers, for comparison), fusion; each against its bare step
    (forward + backward + fused AdamW, the run's dtype and batch) or forward, measured on the same device.
    Targets: training >= 0.85, extraction >= 0.8.
  - mae_official: the project's MAE against a model of the official code's structure (timm `Block`s, argsort
    masking, per-patch normalised loss) at batch 128: images/s of a training step each.
  - demo: a short `abaw demo --config paper` (a few steps per stage) and the ratios of its own timing table, whose
    bare limits it measures on the stage's device (`demo.calibrate`): they should agree with the stage rows.
  - predict: `abaw predict --device cuda` on a demo video with that run's models: the detector and the models on
    the GPU; frames/s end to end and the detector's ms/frame.
  - ddp: with 2 or more GPUs, fine-tuning for a few steps under `torchrun --nproc_per_node=2` (NCCL) against one
    process; skipped (and said) with one (with `--device cpu`: 2 CPU processes, gloo).
  - paths: a few fine-tuning steps (stochastic depth and dropout off) by the plain path (AdamW's for-each kernel, eager), with
    AdamW's fused kernel and compiled (`train.compile`): every step's loss equal to the plain path's within the run's
    dtype's tolerance (`TOLERANCE`), the compile time, each path's seconds a step (logging every step).
--out holds only the figures and logs (a lent machine sends back at most 8 files): the runs go to --runs.
On the CPU (`--device cpu --config tiny` and small batches) it runs the same code in miniature: that is how the test
suite keeps it working (tests/test_gpu_check.py).
"""
import argparse, contextlib, copy, dataclasses, io, json, os, platform, shutil, subprocess, sys, tempfile, time, warnings
from pathlib import Path

from abaw_workbench import cli   # abaw's thread and memory policy, set before torch loads
import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_stages
from abaw_workbench.annotations import read_split
from abaw_workbench.catalog import Catalog, default_catalog_path
from abaw_workbench.demo import demo_config, stage_steps
from abaw_workbench.finetune import FinetuneStage
from abaw_workbench.layout import Layout
from abaw_workbench.mae import MaskedAutoencoder, mae_config
from abaw_workbench.synth import resolve_entry
from abaw_workbench.train import bare_step_seconds, fit

TARGETS = {"train": 0.85, "extract": 0.8}
TOLERANCE = {None: 1e-4, torch.bfloat16: 2e-2, torch.float16: 1e-2}   # a step's loss against the plain path's, relative, by autocast dtype
LAUNCHER = "import sys\nfrom abaw_workbench.cli import main\nsys.exit(main(sys.argv[1:]))\n"


class OfficialMAE(nn.Module):
    "A masked autoencoder of the official code's structure (facebookresearch/mae models_mae.py), from timm's own modules."
    def __init__(self, img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                 decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0, **_):
        super().__init__()
        from timm.layers import PatchEmbed
        from timm.models.vision_transformer import Block
        self.p = patch_size
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        L = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos_embed", torch.zeros(1, L + 1, embed_dim))
        norm = lambda d: nn.LayerNorm(d, eps=1e-6)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=nn.LayerNorm) for _ in range(depth)])
        self.norm = norm(embed_dim)
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.register_buffer("decoder_pos_embed", torch.zeros(1, L + 1, decoder_embed_dim))
        self.decoder_blocks = nn.ModuleList([Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=nn.LayerNorm)
                                             for _ in range(decoder_depth)])
        self.decoder_norm = norm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size ** 2 * 3)

    def forward(self, imgs, mask_ratio=0.75):
        N, p = imgs.shape[0], self.p
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]                                   # [N, L, D]
        L = x.shape[1]; keep = int(L * (1 - mask_ratio))
        shuffle = torch.argsort(torch.rand(N, L, device=x.device), 1); restore = torch.argsort(shuffle, 1)
        x = torch.gather(x, 1, shuffle[:, :keep, None].expand(-1, -1, x.shape[2]))
        mask = torch.ones(N, L, device=x.device); mask[:, :keep] = 0; mask = torch.gather(mask, 1, restore)
        x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(N, -1, -1), x], 1)
        for b in self.blocks: x = b(x)
        x = self.decoder_embed(self.norm(x))
        y = torch.cat([x[:, 1:], self.mask_token.expand(N, L + 1 - x.shape[1], -1)], 1)
        y = torch.gather(y, 1, restore[..., None].expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], y], 1) + self.decoder_pos_embed
        for b in self.decoder_blocks: x = b(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]                                # [N, L, p*p*3]
        h = imgs.shape[2] // p
        target = imgs.reshape(N, 3, h, p, h, p).permute(0, 2, 4, 3, 5, 1).reshape(N, h * h, p * p * 3)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
        loss = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
        return loss, pred, mask


def section(name, fn, report, save):
    "Run one part of the check; its figures (or its error) go into the report, saved at once (a time limit keeps them)."
    print(f"\n=== {name}", flush=True)
    t0 = time.time()
    try: report[name] = fn()
    except Exception as e:   # one part failing must not hide the others' figures
        report[name] = {"error": f"{type(e).__name__}: {e}"}
        print(f"FAILED: {report[name]['error']}", flush=True)
    report.setdefault("seconds", {})[name] = round(time.time() - t0, 1)
    save()


def stages(a, overrides):
    args = bench_stages.parser().parse_args(["--config", a.config, "--rounds", str(a.rounds), "--steps", str(a.steps),
                                             *(["--catalog", a.catalog] if a.catalog else []), *overrides])
    rows = bench_stages.measure(args)
    args = bench_stages.parser().parse_args(["--config", a.config, "--rounds", str(a.rounds), "--only", "extract",
                                             *(["--catalog", a.catalog] if a.catalog else []), *overrides, "extract.resize_on=workers"])
    rows += bench_stages.measure(args, label=", crops resized in the workers")
    for r in rows:
        r["target"] = TARGETS["extract"] if "extraction" in r["metric"] else TARGETS["train"] if "train" in r["unit"] else None
        r["meets"] = None if r["target"] is None else r["ratio"] >= r["target"]
    return rows


def mae_official(a, cfg):
    on = stage_steps(cfg)["pretrain"]
    dev, kw = on[0], {**on[1], "steps": max(3, a.steps // 2)}
    mc = mae_config(cfg.encoder.size, cfg.encoder.img_size, norm_pix_loss=True)
    x = (torch.randn(a.mae_batch, 3, cfg.encoder.img_size, cfg.encoder.img_size, device=dev), 0.75)
    torch.manual_seed(0)
    ours = bare_step_seconds(MaskedAutoencoder(**mc), x, **kw)
    official = bare_step_seconds(OfficialMAE(**mc), x, **kw)
    out = {"batch": a.mae_batch, "size": cfg.encoder.size, "device": str(dev), "dtype": str(kw["dtype"]),
           "ours_images_per_s": round(a.mae_batch / ours, 1), "official_structure_images_per_s": round(a.mae_batch / official, 1),
           "ratio": round(official / ours, 3)}
    print(json.dumps(out), flush=True)
    return out


def launcher(runs):
    "A script in `runs` that runs `abaw` from this checkout (installed or not), and the environment it needs."
    script = Path(runs) / "abaw_launcher.py"
    script.write_text(LAUNCHER)
    return script, {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}


def abaw(*args, runs):
    "Run an `abaw` command from this checkout; its output goes to the log."
    script, env = launcher(runs)
    r = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, env=env)
    print(r.stdout[-6000:], r.stderr[-3000:] if r.returncode else "", sep="", flush=True)
    if r.returncode: raise RuntimeError(f"abaw {args[0]} exited {r.returncode}: {r.stderr.strip().splitlines()[-1:] or ''}")
    return r.stdout


def demo(a, overrides, runs):
    steps = [f"pretrain.train.max_steps={a.steps}", f"finetune.train.max_steps={a.steps}", f"fusion.train.max_steps={a.steps}"]
    abaw("demo", "--config", a.config, "--out", runs / "demo", *(["--catalog", a.catalog] if a.catalog else []),
         *steps, *overrides, runs=runs)
    timing = json.loads((runs / "demo" / "metrics.json").read_text())["timing"]
    calib = json.loads((runs / "demo" / "calibration.json").read_text())
    return {"timing": [r for r in timing if r["ratio"] is not None], "measured_on": calib.get("measured_on")}


def predict(a, cfg, runs):
    from abaw_workbench.predict import PredictConfig, predict_paths
    cat = Catalog.load(a.catalog or default_catalog_path())
    video = sorted(p for p in (resolve_entry(cat, cfg.dataset, "affwild2").path / "videos").iterdir() if p.suffix in (".mp4", ".avi"))[0]
    timer, t0 = {}, time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = predict_paths(video, runs / "demo", runs / "predict", PredictConfig(device=a.device), catalog=cat,
                            timer=timer, log=lambda *x: None)
    total = time.perf_counter() - t0
    n = sum(p.sizes["frame"] for p in [res["predictions"][res["model"]]])
    work = total - timer.get("load", 0.0)
    o = {"video": video.name, "frames": int(n), "device": a.device, "frames_per_s": round(n / work, 1),
         "detector_ms_per_frame": round(1000 * timer.get("detect", 0.0) / max(n, 1), 2),
         "parts_s": {k: round(v, 3) for k, v in timer.items()}}
    print(json.dumps(o), flush=True)
    return o


def ddp(a, overrides, runs):
    if a.device != "cpu" and torch.cuda.device_count() < 2:
        print(f"skipped: {torch.cuda.device_count()} GPU(s); the DDP run needs 2 or more", flush=True)
        return {"skipped": f"{torch.cuda.device_count()} GPU(s)"}
    script, env = launcher(runs)
    own = [o.removeprefix("finetune.") for o in overrides if o.startswith(("finetune.", "encoder."))]   # `abaw finetune` takes its section
    res = {"backend": "gloo" if a.device == "cpu" else "nccl"}   # on the CPU (the miniature): 2 processes, gloo
    for n in (1, 2):
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", str(script), "finetune", "--config", a.config,
               *(["--catalog", a.catalog] if a.catalog else []), "--out", runs / f"ddp{n}", f"train.max_steps={a.steps}",
               "train.progress=false", f"train.log_every={max(1, a.steps // 4)}", *own]
        r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, env=env)
        if r.returncode:   # torchrun's own report says little: the processes' error lines
            errors = [l for l in r.stderr.splitlines() if "rror" in l and "error_file" not in l][-8:]
            raise RuntimeError(f"torchrun with {n} process(es) exited {r.returncode}: " + "\n".join(errors or [r.stderr[-2000:]]))
        res[f"{n}_process_s_per_step"] = round(bench_stages.log_step_seconds(runs / f"ddp{n}" / "log.jsonl"), 4)
    res["speed_up"] = round(res["1_process_s_per_step"] / res["2_process_s_per_step"], 3)
    print(json.dumps(res), flush=True)
    return res


def paths(a, cfg, runs):
    """A few fine-tuning steps by the plain path, with AdamW's fused kernel and compiled, from the same weights on the
    same batches (stochastic depth and dropout off: the compiled graph draws its own random numbers): each step's loss against the
    plain path's, the compile time and each path's seconds a step."""
    fc = dataclasses.replace(cfg.finetune, drop_path=0.0, head_dropout=0.0)
    entry = resolve_entry(Catalog.load(a.catalog or default_catalog_path()), cfg.dataset, "affwild2")
    stage = FinetuneStage(fc, read_split(entry, "train", fc.tasks), None, Layout.of(entry).crops)
    start, dtype = copy.deepcopy(stage.model.state_dict()), stage_steps(cfg)["finetune"][1]["dtype"]
    tol, steps, res, plain = TOLERANCE[dtype], max(4, a.steps // 2), {}, None
    for name, kw in {"plain": dict(fused=False), "fused": dict(fused=True), "compiled": dict(fused=True, compile=True)}.items():
        stage.model.load_state_dict(start)
        rec = fit(stage, dataclasses.replace(fc.train, out=str(runs / f"paths_{name}"), max_steps=steps, log_every=1, eval_every=0,
                                             checkpoint_every=10**9, resume=False, progress=False, **kw))
        log = runs / f"paths_{name}" / "log.jsonl"
        losses = [r["loss"] for r in map(json.loads, open(log)) if "loss" in r]
        res[name] = {"losses": [round(x, 6) for x in losses], "s_per_step": round(bench_stages.log_step_seconds(log), 4)}
        if plain is None: plain = np.array(losses)
        else:
            diff = float(np.max(np.abs(np.array(losses) - plain) / np.abs(plain)))
            res[name].update(max_relative_loss_difference=round(diff, 6), meets=diff <= tol)
        if rec.get("compile_seconds"): res[name]["compile_s"] = round(rec["compile_seconds"], 1)
    out = {"steps": steps, "batch": fc.train.batch_size, "dtype": str(dtype or "fp32"), "tolerance": tol, **res}
    print(json.dumps(out), flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check", help="folder for gpu_check.json and its log ($OUT when set)")
    ap.add_argument("--runs", default=None, help="folder for the runs it makes (default: a temporary folder, removed at the end)")
    ap.add_argument("--config", default="paper")
    ap.add_argument("--device", default="auto", help="every stage's device (auto: CUDA when present)")
    ap.add_argument("--steps", type=int, default=20, help="loop steps per round and per short run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--mae-batch", type=int, default=128)
    ap.add_argument("--catalog", default=None)
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out: stages,mae_official,demo,predict,ddp,paths")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of the configuration (as `abaw demo`)")
    a = ap.parse_args(argv)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    runs = Path(a.runs or tempfile.mkdtemp(prefix="gpu_check_runs_")); runs.mkdir(parents=True, exist_ok=True)
    dev = [f"{s}.device={a.device}" for s in ("pretrain.train", "finetune.train", "extract", "fusion.train")] if a.device != "auto" else []
    overrides = [*dev, *a.overrides]
    cfg = demo_config(a.config, overrides)
    skip = set(filter(None, a.skip.split(",")))
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "config": a.config, "overrides": overrides, "gpus": gpus,
              "cpu_cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
              "stage_devices": {k: f"{d} {kw['dtype'] or 'fp32'}" for k, (d, kw) in stage_steps(cfg).items()}}
    print(json.dumps(report), flush=True)
    log = io.StringIO()
    class Tee(io.TextIOBase):
        def write(self, s): sys.__stdout__.write(s); log.write(s); return len(s)
        def flush(self): sys.__stdout__.flush()
    def save():
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
        (out / "gpu_check.log").write_text(log.getvalue())
    try:
        with contextlib.redirect_stdout(Tee()):
            if "stages" not in skip: section("stages", lambda: stages(a, overrides), report, save)
            if "mae_official" not in skip: section("mae_official", lambda: mae_official(a, cfg), report, save)
            if "demo" not in skip: section("demo", lambda: demo(a, overrides, runs), report, save)
            if "predict" not in skip and "demo" not in skip: section("predict", lambda: predict(a, cfg, runs), report, save)
            if "ddp" not in skip: section("ddp", lambda: ddp(a, overrides, runs), report, save)
            if "paths" not in skip: section("paths", lambda: paths(a, cfg, runs), report, save)
            rows = [r for r in report.get("stages", []) if isinstance(r, dict) and r.get("target")]
            print("\n=== summary")
            for r in rows: print(f"{r['metric']:<58}{r['ratio']:>6.2f}  target {r['target']}  {'ok' if r['meets'] else 'BELOW'}")
            for r in (report.get("demo") or {}).get("timing", []): print(f"demo table: {r['stage']:<20}{r['part']:<36}{r['ratio']:>6.2f}")
            p = report.get("paths") or {}
            for k in ("fused", "compiled"):
                if k in p: print(f"paths: {k} vs plain, loss{p[k]['max_relative_loss_difference']:>10.2g} (tolerance {p['tolerance']:g})  "
                                 f"{'ok' if p[k]['meets'] else 'BEYOND'}; s/step {p[k]['s_per_step']} vs {p['plain']['s_per_step']}"
                                 + (f"; compiled in {p[k]['compile_s']} s" if "compile_s" in p[k] else ""))
        save()
    finally:
        if not a.runs: shutil.rmtree(runs, ignore_errors=True)
    failed = [k for k, v in report.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
