"""Every model stage of `abaw demo`, as the demo runs it, against its bare limit measured in the same run.

The stages are built from the demo's configuration (`--config`, default tiny) and data (the catalog's
`demo` and `demo_faces` entries, generated on first use) with the demo's own code: MAE pre-training
(`pretrain.run_pretrain`), fine-tuning (`finetune.FinetuneStage`: JPEG crops, augmentation, the grid pooling,
the multi-task loss, layer-decay groups), its validation pass, feature extraction
(`features.run_extract`: crop decoding, encoder, per-video writes) and both fusion stages
(`fusion.FusionStage`: windows, modality dropout, per-task loss). Weights start random: speed does not
depend on them.

Rounds alternate the real thing with its bare limit, so that load from other processes hits both:
  - training: S steps of the shared loop (`train.fit`; per-step times between its log lines, every S/4 steps,
    the steps before the first line of each round not counted), then S bare forward+backward+AdamW steps of the same model on random tensors
    of the batch's shape (`train.bare_step_seconds`, the demo's calibration);
  - inference (validation, extraction): one pass over the split, then a bare forward of the same model
    over the same number of frames in batches of the same size.
Each stage's bare limit is measured where the stage runs (`demo.stage_steps`: its device, autocast dtype, AdamW
kernel, compile switch; the device synchronised around each step), so on a GPU the ratios are the GPU's
(`bench/gpu_check.py` runs this with `--config paper` there).
Each figure is the median over rounds of bare time / real time, with the lowest and highest round.
Targets: training >= 0.85, inference >= 0.9. The first validation pass decodes the crops it keeps for
the others (the demo does the same once per run), and extraction decodes the audio in an untimed
warm-up pass (its rounds read the waveforms from the cache and compute the audio features again;
decoding the 18 validation videos' audio tracks took about 0.09 s, about 1 % of a pass, measured separately).

    python bench/bench_stages.py [--config tiny] [--rounds 3] [--steps 20] [--only finetune,fusion_visual] [key=value ...]
"""
import argparse, contextlib, dataclasses, json, os, statistics, sys, tempfile, time, warnings
from pathlib import Path

# the stages run under `abaw`'s thread and memory policy, as `abaw demo` runs them: set by importing the CLI before numpy and torch load
from abaw_workbench import cli
import numpy as np
import torch

from abaw_workbench.annotations import read_split
from abaw_workbench.catalog import Catalog, default_catalog_path
from abaw_workbench.demo import demo_config, stage_steps
from abaw_workbench.features import FeatureStore, run_extract
from abaw_workbench.finetune import FinetuneStage
from abaw_workbench.fusion import FusionStage, audio_stats
from abaw_workbench.layout import Layout
from abaw_workbench.mae import MaskedAutoencoder, list_images, mae_config
from abaw_workbench.pretrain import run_pretrain
from abaw_workbench.schema import video_slices
from abaw_workbench.synth import resolve_entry
from abaw_workbench.train import bare_step_seconds, fit

TARGET = {"train": 0.85, "infer": 0.9}


def log_step_seconds(log):
    "Median seconds per step over the intervals between a run's log lines (`log.jsonl`); the steps before the first line, the warm-up, do not count."
    recs = [(r["step"], r["time"]) for r in map(json.loads, open(log)) if "time" in r]
    return float(np.median([(t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(recs, recs[1:])]))


def loop_step_seconds(run, steps, out):
    """Median seconds per step of `run(train_config_overrides)` (`log_step_seconds`). The loop logs every steps // 4 steps, not
    every step: a log line reads the loss back from the device, which a run does every `log_every` (10) steps."""
    run(dict(max_steps=steps, out=str(out), resume=False, progress=False, log_every=max(1, steps // 4), eval_every=0, checkpoint_every=10**9))
    return log_step_seconds(Path(out) / "log.jsonl")


def rounds(name, kind, real, bare, n_rounds, work):
    "Alternate `real()` and `bare()` (seconds each) `n_rounds` times; one row of the table."
    ratios, reals, bares = [], [], []
    for _ in range(n_rounds):
        r = real(); b = bare()
        reals.append(r); bares.append(b); ratios.append(b / r)
    row = dict(bench="stages", metric=name, value=round(work / statistics.median(reals), 1), unit=f"{kind} items/s",
               baseline=round(work / statistics.median(bares), 1), ratio=round(statistics.median(ratios), 3),
               spread=[round(min(ratios), 3), round(max(ratios), 3)], target=f">= {TARGET[kind]}")
    print(f"{name:<34}{row['value']:>10.1f}{row['baseline']:>10.1f}{row['ratio']:>8.2f}   "
          f"{row['spread'][0]:.2f}-{row['spread'][1]:.2f}   {'ok' if row['ratio'] >= TARGET[kind] else 'BELOW'} {row['target']}",
          flush=True)
    return row


def parser():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="tiny", help="named demo configuration or YAML file (as `abaw demo --config`)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="loop steps per round (fusion: twice as many, its steps are short)")
    ap.add_argument("--only", default="", help="comma-separated subset of: pretrain,finetune,validation,extract,fusion_visual,fusion_audio_visual")
    ap.add_argument("--catalog", default=None)
    ap.add_argument("overrides", nargs="*", help="key=value overrides of the configuration (as `abaw demo`)")
    return ap


def main(argv=None):
    a = parser().parse_args(argv)
    rows = measure(a)
    for r in rows: print(json.dumps(r))
    return 0 if all(r["ratio"] >= TARGET["train" if "train" in r["unit"] else "infer"] for r in rows) else 1


def measure(a, label=""):
    "The rows of the table for parsed arguments `a` (`parser()`); the runs it times go to a temporary folder, removed after."
    with tempfile.TemporaryDirectory(prefix="bench_stages_") as tmp:
        return measure_in(Path(tmp), a, label)


def measure_in(tmp, a, label=""):
    "`measure`, its runs written under the folder `tmp`."
    only = set(filter(None, a.only.split(",")))
    want = lambda s: not only or s in only
    warnings.filterwarnings("ignore")
    cfg = demo_config(a.config, a.overrides)
    cat = Catalog.load(a.catalog or default_catalog_path())
    entry = resolve_entry(cat, cfg.dataset, "affwild2")
    e, H, S = cfg.encoder, cfg.encoder.img_size, a.steps
    on = stage_steps(cfg)   # each stage's device, dtype and optimizer, as its loop runs
    spin = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_THREAD_TIMEOUT") if k in os.environ}
    devs = sorted({f"{d} {kw['dtype'] or 'fp32'}" for d, kw in on.values()})
    print(f"{'stage (as abaw demo runs it)':<34}{'real/s':>10}{'bare/s':>10}{'ratio':>8}   spread      "
          f"(config {a.config}{' ' + ' '.join(a.overrides) if a.overrides else ''}: {e.size} at {H} px on {', '.join(devs)}; "
          f"torch threads {torch.get_num_threads()}, {spin or 'default spin'} as {cli.__name__} sets it; {a.rounds} rounds)", flush=True)
    rows = []
    k = iter(range(10**6))
    rnd = lambda st, *shape: torch.randn(*shape, device=on[st][0])

    if want("pretrain"):
        faces = list_images(resolve_entry(cat, cfg.faces, "image_folder").path)
        pc = cfg.pretrain
        def real(): return loop_step_seconds(lambda o: run_pretrain(dataclasses.replace(pc, train=dataclasses.replace(pc.train, **o)), o["out"], data=faces),
                                             S, tmp / f"pre{next(k)}")
        mae = MaskedAutoencoder(**mae_config(e.size, H, norm_pix_loss=pc.norm_pix_loss))
        x = (rnd("pretrain", pc.train.batch_size, 3, H, H), pc.mask_ratio)
        rows.append(rounds(f"MAE pre-training{label}", "train", real, lambda: bare_step_seconds(mae, x, **{**on["pretrain"][1], "steps": S}), a.rounds,
                           pc.train.batch_size))

    train, val = (read_split(entry, s, cfg.finetune.tasks) for s in ("train", "validation"))
    crops = Layout.of(entry).crops
    if want("finetune") or want("validation"):
        fc = cfg.finetune
        stage = FinetuneStage(fc, train, val, crops)   # the demo's model, dataset, loss and groups
        fm = stage.model
        if want("finetune"):
            def real():
                stage.val_labels = None   # the rounds time training steps; validation has its own row
                try: return loop_step_seconds(lambda o: fit(stage, dataclasses.replace(fc.train, **o)), S, tmp / f"ft{next(k)}")
                finally: stage.val_labels = val
            x = (rnd("finetune", fc.train.batch_size, 3, H, H),)
            rows.append(rounds(f"fine-tuning{label}", "train", real, lambda: bare_step_seconds(fm, x, **{**on["finetune"][1], "steps": S}), a.rounds,
                               fc.train.batch_size))
        if want("validation"):
            n_val = int(val.has_face.values.sum())
            dev, dtype = on["finetune"][0], on["finetune"][1]["dtype"]
            fm.to(dev)
            def real():   # as the loop evaluates: on its device, under its autocast
                t0 = time.perf_counter()
                with (torch.autocast(dev.type, dtype=dtype) if dtype else contextlib.nullcontext()): stage.evaluate(fm)
                return time.perf_counter() - t0
            def bare():
                n, B = n_val, fc.eval_batch
                per = bare_step_seconds(fm, (rnd("finetune", B, 3, H, H),), train=False, **{**on["finetune"][1], "steps": 3})
                return per * n / B
            rows.append(rounds(f"fine-tuning validation pass{label}", "infer", real, bare, a.rounds, n_val))

    need_store = want("extract") or want("fusion_visual") or want("fusion_audio_visual")
    if need_store:
        fc = cfg.finetune
        fm = FinetuneStage(fc, train, None, crops).model.eval()
        xc = dataclasses.replace(cfg.extract, splits=["validation"])
        run_extract(xc, tmp / "warm", data=entry, encoder=fm, cache_dir=tmp / "cache", progress=False, catalog=cat)   # warm-up: audio features cached
        n_ext = int(val.has_face.values.sum())
        if want("extract"):
            def real():
                d = tmp / f"ext{next(k)}"
                t0 = time.perf_counter(); run_extract(xc, d, data=entry, encoder=fm, cache_dir=tmp / "cache", progress=False, catalog=cat)
                return time.perf_counter() - t0
            def bare():
                B = xc.batch_size
                return bare_step_seconds(fm, (rnd("extract", B, 3, H, H),), train=False, **{**on["extract"][1], "steps": 3}) * n_ext / B
            rows.append(rounds(f"feature extraction{label}", "infer", real, bare, a.rounds, n_ext))
        fusion = [mod for mod in ("visual", "audio_visual") if want(f"fusion_{mod}")]
        if fusion:
            store = FeatureStore(run_extract(dataclasses.replace(cfg.extract, splits=["train"]), tmp / "store", data=entry, encoder=fm,
                                             cache_dir=tmp / "cache", progress=False, catalog=cat).path)
            norm = audio_stats(store, list(video_slices(train)))
            m = store.meta
        for mod in fusion:
            fu = cfg.fusion
            fcfg = dataclasses.replace(fu.fusion, modalities=mod)
            st = FusionStage(store, train, None, ["au"], fcfg, fu.loss, audio_norm=norm)   # the demo's AU model: the longest
            def real(st=st):
                return loop_step_seconds(lambda o: fit(st, dataclasses.replace(fu.train, **o)), 2 * S, tmp / f"fu{next(k)}")
            B, T = fu.train.batch_size, fcfg.window
            x = (rnd("fusion", B, T, m["visual_dim"]), rnd("fusion", B, T, m["audio_dim"]), torch.ones(B, T, dtype=torch.bool, device=on["fusion"][0]))
            rows.append(rounds(f"fusion ({mod.replace('_', '+')}), AU model{label}", "train", real,
                               lambda st=st, x=x: bare_step_seconds(st.model, x, **{**on["fusion"][1], "steps": 2 * S}), a.rounds, B))
    load = os.getloadavg()[0]
    print(f"(machine: {os.cpu_count()} cores, load average {load:.1f} at the end; ratio = bare time / real time, median of rounds)")
    return rows


if __name__ == "__main__":
    sys.exit(main())
