"""The stages one by one through the `abaw` command, as the README shows them: pretrain →
finetune → extract → fuse → score, on a very small synthetic set (a few steps each)."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from abaw_workbench.synth import resolve_entry, synth_catalog

ABAW = Path(sys.executable).parent / "abaw"


def run(*args, cwd):
    r = subprocess.run([str(ABAW), *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, f"abaw {' '.join(args)}:\n{r.stderr[-3000:]}"
    return r.stdout


def test_stages_one_by_one(tmp_path):
    synth_catalog(tmp_path, "syn", frames=40, seed=2, faces="faces", data="", file="cat.yaml")
    c = ["--catalog", "cat.yaml"]
    run("pretrain", *c, "--dataset", "faces", "--out", "runs/pretrain", "train.max_steps=2", "train.batch_size=8",
        "train.progress=false", cwd=tmp_path)
    assert (tmp_path / "runs/pretrain/checkpoint.pt").exists()
    out = run("finetune", *c, "--dataset", "syn", "--init", "runs/pretrain/checkpoint.pt", "--out", "runs/finetune",
              "train.max_steps=2", "train.batch_size=8", "train.progress=false", cwd=tmp_path)
    m = json.loads(out.strip().splitlines()[-1])
    assert {"au", "expr", "va", "valence", "arousal", "score"} <= set(m)
    from abaw_workbench.runs import Run
    assert Run.open(tmp_path / "runs/finetune").metrics == m   # the run folder explains itself
    run("extract", *c, "--dataset", "syn", "--encoder", "runs/finetune/best.pt", "--out", "runs/features",
        "num_workers=0", cwd=tmp_path)
    assert len(list((tmp_path / "runs/features/videos").glob("*.nc"))) >= 3
    out = run("fuse", *c, "--dataset", "syn", "--features", "runs/features", "--out", "runs/fuse",
              "fusion.window=16", "fusion.stride=8", "train.max_steps=3", "train.batch_size=4", "train.progress=false",
              cwd=tmp_path)
    m = json.loads(out.strip().splitlines()[-1])
    assert set(m) == {"raw", "postprocessed", "submissions"}
    for t in ("AU", "EXPR", "VA"): assert (tmp_path / f"runs/fuse/submission_{t}.txt").exists()
    # the fusion's validation predictions, written per video in the annotation format, score like the run said
    import xarray as xr
    from abaw_workbench.annotations import write_annotation_file
    from abaw_workbench.schema import prediction_values
    from abaw_workbench.catalog import Catalog
    from abaw_workbench.schema import video_slices
    entry = resolve_entry(Catalog.load(tmp_path / "cat.yaml"), "syn")
    preds = xr.load_dataset(tmp_path / "runs/fuse/predictions_validation.nc", engine="h5netcdf")
    labels_dir = entry.layout.annotation_dir("expr", "validation")
    pred_dir = tmp_path / "pred_expr"
    vals = prediction_values(preds, "expr")
    for v, sl in video_slices(preds).items():
        if (labels_dir / f"{v}.txt").exists(): write_annotation_file(pred_dir / f"{v}.txt", "expr", vals[sl])
    s = json.loads(run("score", "--task", "expr", "--labels", str(labels_dir), "--predictions", str(pred_dir), "--json",
                       cwd=tmp_path).strip().splitlines()[-1])
    assert abs(s["score"] - m["raw"]["expr"]) < 1e-9


def test_named_configurations_for_every_stage(tmp_path):
    "`--config paper|tiny` means for every stage command what it means for `abaw demo`: its section, with the encoder."
    import yaml
    from abaw_workbench.demo import demo_config
    extra = {"pretrain": [], "finetune": [], "extract": ["--encoder", "x.pt", "--out", "f"], "fuse": ["--features", "f"]}
    section = {"pretrain": "pretrain", "finetune": "finetune", "extract": "extract", "fuse": "fusion"}
    for name in ("paper", "tiny"):
        want = demo_config(name)
        for cmd, more in extra.items():
            got = yaml.safe_load(run(cmd, "--config", name, "--print-config", *more, cwd=tmp_path))
            ref = json.loads(json.dumps(getattr(want, section[cmd]).__dict__, default=lambda o: o.__dict__))
            if "train" in ref: ref["train"]["out"] = got["train"]["out"]   # --out's default
            assert got == json.loads(json.dumps(ref, default=list)), (name, cmd)
    got = yaml.safe_load(run("pretrain", "--config", "paper", "--print-config", cwd=tmp_path))
    assert (got["encoder"]["size"], got["encoder"]["img_size"], got["train"]["batch_size"]) == ("base", 224, 256)


@pytest.mark.slow
def test_finetune_and_fuse_under_torchrun(tmp_path):
    """Fine-tuning (the tiny configuration's grid pool) and fusion (with its second branch) on 2 CPU processes under
    torchrun (gloo): every trainable parameter gets its gradient on both ranks, and only rank 0 validates, writes
    and prints."""
    synth_catalog(tmp_path, "syn", frames=40, seed=2, faces=None, data="", file="cat.yaml")
    c = ["--catalog", "cat.yaml", "--dataset", "syn"]
    def torchrun(*args):
        r = subprocess.run([str(ABAW.parent / "torchrun"), "--standalone", "--nproc_per_node=2", str(ABAW), *args],
                           capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)})   # torchelastic_* go with the test's files
        errors = [l for l in r.stderr.splitlines() if "rror" in l and "error_file" not in l]   # torchrun's own report says little
        assert r.returncode == 0, f"torchrun abaw {' '.join(args)}:\n" + "\n".join(errors[-20:])
        lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
        assert len(lines) == 1, r.stdout   # the metrics, printed by rank 0 alone
        return json.loads(lines[0])
    m = torchrun("finetune", *c, "--out", "runs/finetune", "train.max_steps=4", "train.batch_size=8", "train.progress=false")
    from abaw_workbench.runs import Run
    assert Run.open(tmp_path / "runs/finetune").metrics == m
    steps = [json.loads(l)["step"] for l in (tmp_path / "runs/finetune/log.jsonl").read_text().splitlines() if '"loss"' in l]
    assert steps[-1] == 4
    run("extract", *c, "--encoder", "runs/finetune/best.pt", "--out", "runs/features", "num_workers=0", cwd=tmp_path)
    m = torchrun("fuse", *c, "--features", "runs/features", "--out", "runs/fuse", "fusion.window=16", "fusion.stride=8",
                 "train.max_steps=3", "train.batch_size=4", "train.progress=false", "second_branch=true", "hard_share=1.0")
    assert Run.open(tmp_path / "runs/fuse").metrics == m and "second_branch" in m
    assert all((tmp_path / f"runs/fuse/{t}/second/best.pt").exists() for t in ("au", "expr", "va"))   # one model per task, each with its branch
