"""`abaw demo` end to end on a very small synthetic set (a few steps per stage): the contract
(metrics.json keys, predictions, report), stage caching and --force. The full-size demo and its
quality targets are exercised by `make demo`."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from abaw_workbench.synth import synth_catalog

ABAW = Path(sys.executable).parent / "abaw"
FAST = ["pretrain.train.max_steps=2", "pretrain.train.batch_size=8",
        "finetune.train.max_steps=2", "finetune.train.batch_size=8",
        "fusion.train.max_steps=3", "fusion.train.batch_size=4", "fusion.fusion.window=16", "fusion.fusion.stride=8",
        "extract.num_workers=0"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    synth_catalog(d, frames=40, images=24, file="cat.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    def run(*extra):
        r = subprocess.run([str(ABAW), "demo", "--catalog", str(d / "cat.yaml"), "--out", str(d / "run"), *extra, *FAST],
                           capture_output=True, text=True, env=env, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout + r.stderr
    return d, run, run()


def test_outputs_follow_the_contract(demo):
    d, _, out = demo
    m = json.loads((d / "run" / "metrics.json").read_text())
    assert list(m) == ["static", "fusion_visual", "fusion_audio_visual", "timing"]
    timing = m.pop("timing")
    stages = [r["stage"] for r in timing]
    for st in ("data", "pretrain", "finetune", "extract", "fusion_visual", "fusion_audio_visual"): assert st in stages, st
    train = [r for r in timing if r["part"] == "training" or r["part"].startswith("training (")]
    assert len(train) == 4 and all(r["items"] and r["ratio"] and r["bare_per_second"] > 0 for r in train), train
    assert "validation" in [r["part"] for r in timing if r["stage"] == "finetune"]
    for v in m.values():
        for k in ("au", "expr", "va", "valence", "arousal"):
            assert isinstance(v[k], float) and -1 <= v[k] <= 1
    import xarray as xr
    for name in m:
        p = xr.load_dataset(d / "run" / "predictions" / f"{name}_validation.nc", engine="h5netcdf")
        assert {"au", "expr", "va", "has_face"} <= set(p.data_vars) and "video" in p.coords
    html = (d / "run" / "report.html").read_text()
    assert "Plotly.newPlot" in html and "data:image/png;base64" in html and "EXPR confusion" in html
    assert "tuned on other videos" in html   # the honest post-processing figure is in the report's table
    assert "total" in out and "fusion_audio_visual" in out and "bare per s" in out   # the timing table is printed


def test_the_run_folder_opens(demo):
    "`Run.open` on the demo's folder: every model's predictions, the labels, the models themselves, the frames."
    from abaw_workbench.runs import Run
    from abaw_workbench.tasks import FrameModel
    from abaw_workbench.temporal import FusionNet
    d, _, _ = demo
    run = Run.open(d / "run")
    assert (run.kind, run.models) == ("demo", ["static", "fusion_visual", "fusion_audio_visual"])
    assert run.metrics["fusion_audio_visual"]["va"] == json.loads((d / "run" / "metrics.json").read_text())["fusion_audio_visual"]["va"]
    assert run.predictions().sizes["frame"] == run.labels.sizes["frame"]
    assert isinstance(run.load_model("static"), FrameModel)
    nets = run.load_model("fusion_audio_visual")
    assert set(nets) == {"au", "expr", "va"} and all(isinstance(n, FusionNet) for n in nets.values())
    v, fi = str(run.labels.video.values[0]), int(run.labels.frame_index.values[0])
    assert run.frames.image(v, fi).shape[2] == 3


def test_rerun_skips_finished_stages_and_force_reruns_from_a_stage(demo):
    d, run, _ = demo
    timing = json.loads((d / "run" / "metrics.json").read_text())["timing"]
    out = run()
    assert out.count("skipped") == 6, out
    # nothing ran: the bare limits are those measured when the stages ran (calibration.json), not measured again
    assert json.loads((d / "run" / "metrics.json").read_text())["timing"] == timing
    out = run("--force", "fusion_visual")
    assert "fusion_visual: running" in out and "fusion_audio_visual: running" in out
    assert "finetune: finished before" in out


def test_a_moved_run_folder_is_reused(demo):
    "Cached stages are found by folder, not by the paths stored when they ran: a moved run folder still works."
    import shutil
    d, _, _ = demo
    shutil.move(d / "run", d / "moved")
    r = subprocess.run([str(ABAW), "demo", "--catalog", str(d / "cat.yaml"), "--out", "moved", *FAST], cwd=d,
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (r.stdout + r.stderr).count("skipped") == 6 and (d / "moved" / "metrics.json").exists()
    from abaw_workbench.runs import Run
    assert Run.open(d / "moved").load_model("static") is not None   # the manifest's paths are relative to the folder


@pytest.mark.slow
def test_paper_config_runs_one_step_per_stage_on_cpu(tmp_path):
    "`--config paper` (ViT-B/16 at 224 px, windows of 100) constructs and trains one step of every stage on CPU."
    synth_catalog(tmp_path, images=8, file="cat.yaml")
    one = ["pretrain.train.max_steps=1", "pretrain.train.batch_size=2", "finetune.train.max_steps=1",
           "finetune.train.batch_size=2", "fusion.train.max_steps=1", "fusion.train.batch_size=1",
           "extract.batch_size=16", "extract.num_workers=0"]
    r = subprocess.run([str(ABAW), "demo", "--config", "paper", "--catalog", str(tmp_path / "cat.yaml"),
                        "--out", str(tmp_path / "run"), *one], capture_output=True, text=True, timeout=1800,
                       env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stderr[-3000:]
    import torch
    from abaw_workbench.features import FeatureStore
    st = FeatureStore(next((tmp_path / "run").glob("extract-*")) / "store")
    assert st.meta["visual_dim"] == 768 and st.meta["model"]["args"]["encoder"]["img_size"] == 224   # read from the checkpoint
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()).keys() == {"static", "fusion_visual", "fusion_audio_visual", "timing"}


def test_second_branch_reports_both_branches(demo):
    "`fusion.second_branch=true` reruns the fusion stages only; metrics.json, the run and the report hold each first branch beside its mixed model."
    d, _, _ = demo
    folder = d / "moved" if (d / "moved").exists() else d / "run"   # after test_a_moved_run_folder_is_reused
    before = json.loads((folder / "metrics.json").read_text())
    r = subprocess.run([str(ABAW), "demo", "--catalog", str(d / "cat.yaml"), "--out", str(folder), *FAST,
                        "fusion.second_branch=true", "fusion.hard_share=0.5"],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (r.stdout + r.stderr).count("skipped") == 4
    m = json.loads((folder / "metrics.json").read_text())
    assert list(m) == ["static", "fusion_visual_first_branch", "fusion_visual", "fusion_audio_visual_first_branch", "fusion_audio_visual", "timing"]
    for mod in ("visual", "audio_visual"):   # the first branch is the model trained without the second branch
        assert {k: m[f"fusion_{mod}_first_branch"][k] for k in ("au", "expr", "va")} == {k: before[f"fusion_{mod}"][k] for k in ("au", "expr", "va")}
    from abaw_workbench.runs import Run
    run = Run.open(folder)
    assert run.models == ["static", "fusion_visual_first_branch", "fusion_visual", "fusion_audio_visual_first_branch", "fusion_audio_visual"]
    assert all(n.second is not None for n in run.load_model("fusion_audio_visual").values())
    assert all(n.second is None for n in run.load_model("fusion_audio_visual_first_branch").values())
    assert "fusion_audio_visual_first_branch" in (folder / "report.html").read_text()
    second = [r for r in m["timing"] if r["part"].startswith("second branch: training")]   # its time has a row of its own
    assert [r["stage"] for r in second] == ["fusion_visual", "fusion_audio_visual"] and all(r["items"] > 0 for r in second), m["timing"]
