"""Each experiment notebook of nbs/experiments/ runs once, through `abaw_workbench.ablate.run_grid`, on a tiny synthetic
data set (6 videos of 40 frames at 32 px, micro encoder, a few steps per stage), and writes its record. The fusion
grid's two runs (in parallel) share every stage before fusion: the encoder is fine-tuned once."""
import json, os
from pathlib import Path

import numpy as np
import pytest

from abaw_workbench.ablate import load_results, run_grid
from abaw_workbench.synth import synth_catalog

ROOT = Path(__file__).resolve().parent.parent
EXP = ROOT / "nbs" / "experiments"
TINY = ["encoder.img_size=32",
        "pretrain.train.max_steps=2", "pretrain.train.batch_size=8", "finetune.train.max_steps=2",
        "finetune.train.batch_size=8", "finetune.eval_batch=64", "fusion.train.max_steps=2", "fusion.train.batch_size=4",
        "extract.num_workers=0", "extract.batch_size=64"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("experiments")
    synth_catalog(d, "tiny", videos=6, frames=40, size=32, faces="tiny_faces", images=24, file="cat.yaml")
    old = {k: os.environ.get(k) for k in ("ABAW_CATALOG", "OMP_NUM_THREADS")}
    os.environ.update(ABAW_CATALOG=str(d / "cat.yaml"), OMP_NUM_THREADS="1")   # the kernels inherit it
    yield d
    for k, v in old.items():
        if v is None: os.environ.pop(k, None)
        else: os.environ[k] = v


def _grid(d, name, notebook, body, fixed=""):
    f = d / f"{name}.yaml"
    f.write_text(f"notebook: {EXP / notebook}\ntimeout: 600\nfixed:\n  dataset: tiny\n  faces: tiny_faces\n"
                 f"  overrides: {json.dumps(TINY)}\n{fixed}{body}")
    return f


def _check_record(run_dir, models):
    rec = json.loads((run_dir / "record.json").read_text())
    assert {"parameters", "metrics", "timing", "code", "catalog"} <= set(rec)
    assert set(rec["metrics"]) == set(models)
    for m in rec["metrics"].values():
        for k in ("au", "expr", "va", "valence", "arousal", "score"): assert -1 <= m[k] <= 1
        assert {"postprocessed", "postprocessed_cv", "selected"} <= set(m)
        assert "settings" in m["postprocessed"]
    assert "tiny" in rec["catalog"] and rec["catalog"]["tiny"]["synth"]["videos"] == 6
    assert set(rec["code"]) == {"commit", "dirty"} and rec["timing"]["total"] > 0
    for st in rec["stages"].values():   # every stage folder it read, with the code version that computed it
        assert Path(st["folder"]).is_dir() and set(st["code"]) == {"commit", "dirty"}
    assert (run_dir / "notebook.ipynb").exists()
    return rec


def test_temporal_fusion_grid_shares_the_encoder(env):
    g = _grid(env, "fusion", "temporal_fusion.ipynb", "parameters: {design: [concat, cross_attention]}\n",
              fixed="  window: 16\n  stride: 8\n")
    ds = run_grid(g, env / "fusion_out", workers=2, progress=False)
    assert ds.status.values.tolist() == ["done", "done"], ds.error.values
    stages = env / "cache" / "stages"
    count = {s: len(list(stages.glob(f"{s}-*"))) for s in ("data", "pretrain", "finetune", "extract")}
    count["fusion"] = len(list(stages.glob("fusion_audio_visual-*")))   # the demo's stage names (demo.method_stages)
    assert count == {"data": 1, "pretrain": 1, "finetune": 1, "extract": 1, "fusion": 2}, count
    for rid in ds.run.values: _check_record(env / "fusion_out" / "runs" / rid, ["fusion"])
    assert np.isfinite(ds["fusion.selected.score"].values).all() and "design" in ds.coords
    assert (env / "fusion_out" / "results.md").exists()


def test_second_branch_and_loss_choices_reach_the_fusion_stage(env):
    "The notebook's second-branch and loss parameters configure the fusion stage; the record holds the first branch beside the mixed model."
    g = _grid(env, "branch", "temporal_fusion.ipynb", "parameters: {second_branch: [true], va_loss: [mse], expr_class_weight: [authors]}\n",
              fixed="  window: 16\n  stride: 8\n  hard_share: 0.5\n  au_pos_weight: false\n")
    ds = run_grid(g, env / "branch_out", workers=1, progress=False)
    assert ds.status.values.tolist() == ["done"], ds.error.values
    rec = _check_record(env / "branch_out" / "runs" / ds.run.values[0], ["fusion", "fusion_first_branch"])
    cfg = json.loads((Path(rec["stages"]["fusion"]["folder"]) / "run.json").read_text())["config"]
    assert (cfg["second_branch"], cfg["hard_share"]) == (True, 0.5)
    assert (cfg["loss"]["va_loss"], cfg["loss"]["expr_class_weight"], cfg["loss"]["au_pos_weight"]) == ("mse", "authors", False)
    assert np.isfinite(ds["fusion_first_branch.score"].values).all()


def test_static_finetune_runs_and_reuses_the_cache(env):
    g = _grid(env, "static", "static_finetune.ipynb", "")
    ds = run_grid(g, env / "static_out", workers=1, progress=False)
    assert ds.status.values.tolist() == ["done"], ds.error.values
    rec = _check_record(env / "static_out" / "runs" / ds.run.values[0], ["static"])
    assert rec["parameters"]["pool"] == "grid"


def test_mae_pretraining_comparison(env):
    g = _grid(env, "mae", "mae_pretraining.ipynb", "parameters: {pretrained: [true, false]}\n")
    ds = run_grid(g, env / "mae_out", workers=2, progress=False)
    assert ds.status.values.tolist() == ["done", "done"], ds.error.values
    recs = {bool(p): _check_record(env / "mae_out" / "runs" / r, ["static"]) for r, p in zip(ds.run.values, ds.pretrained.values)}
    assert "pretrain" in recs[True]["stages"] and "pretrain" not in recs[False]["stages"]
    assert "tiny_faces" in recs[True]["catalog"] and "tiny_faces" not in recs[False]["catalog"]


def test_pretraining_study_probes_each_encoder_once(env):
    "No pre-training, synthetic faces, in-domain crops: three encoders, three probes (shared by seeds), label-scarce fine-tuning."
    g = env / "study.yaml"   # `faces` varies here: not through _grid, which fixes it
    g.write_text(f"notebook: {EXP / 'pretraining.ipynb'}\ntimeout: 600\nfixed:\n  dataset: tiny\n  overrides: {json.dumps(TINY)}\n"
                 "  train_videos: 0.5\n  probe_every: 2\nzip:\n  - pretrain_epochs: [0, 1, 1]\n    faces: [tiny_faces, tiny_faces, tiny]\n"
                 "seeds: 2\n")
    ds = run_grid(g, env / "study_out", workers=2, progress=False)
    assert (ds.status.values == "done").all(), ds.error.values
    recs = [json.loads((env / "study_out" / "runs" / r / "record.json").read_text()) for r in ds.run.values.ravel()]
    for rec in recs:
        assert set(rec["metrics"]) == {"static", "probe"}
        for pool in ("avg", "grid3"):
            p = rec["metrics"]["probe"][pool]
            assert set(p) == {"au", "expr", "va", "score"} and all(-1 <= v <= 1 for v in p.values()), p
    stages = env / "cache" / "stages"
    assert len(list(stages.glob("probe-*"))) == 3                          # one per encoder, not one per seed
    pre = {rec["parameters"]["faces"]: rec["stages"].get("pretrain") for rec in recs if rec["parameters"]["pretrain_epochs"]}
    assert pre["tiny"]["folder"] != pre["tiny_faces"]["folder"]            # in-domain pre-training is its own encoder
    ft = json.loads((Path(recs[0]["stages"]["finetune"]["folder"]) / "run.json").read_text())
    assert ft["config"]["train_videos"] == 0.5
