"""`bench/gpu_check.py`, the one device check, runs end to end: here on the CPU in miniature (tiny configuration,
small batches, a tiny synthetic set), so that the script a GPU session runs once is known to work before it does."""
import json, subprocess, sys
from pathlib import Path

from abaw_workbench.synth import synth_catalog

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_every_part_on_the_cpu(tmp_path):
    synth_catalog(tmp_path, frames=32, file="cat.yaml")
    small = ["pretrain.train.batch_size=8", "finetune.train.batch_size=8", "finetune.eval_batch=16", "extract.batch_size=16",
             "fusion.train.batch_size=2", "fusion.fusion.window=16", "fusion.fusion.stride=8", "pretrain.train.num_workers=0",
             "finetune.train.num_workers=0", "extract.num_workers=0"]
    r = subprocess.run([sys.executable, str(ROOT / "bench/gpu_check.py"), "--device", "cpu", "--config", "tiny", "--catalog",
                        str(tmp_path / "cat.yaml"), "--steps", "6", "--rounds", "1", "--mae-batch", "4", "--out", str(tmp_path / "out"),
                        *small], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    rep = json.loads((tmp_path / "out/gpu_check.json").read_text())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    metrics = [row["metric"] for row in rep["stages"]]
    assert metrics[:3] == ["MAE pre-training", "fine-tuning", "fine-tuning validation pass"], metrics
    assert "feature extraction, crops resized in the workers" in metrics and all(row["ratio"] > 0 for row in rep["stages"])
    assert rep["stage_devices"]["finetune"] == "cpu fp32" and rep["mae_official"]["ratio"] > 0
    assert {row["stage"] for row in rep["demo"]["timing"]} >= {"pretrain", "finetune", "extract", "fusion_visual"}
    assert rep["demo"]["measured_on"]["finetune"][0] == "cpu"
    assert rep["predict"]["frames"] > 0 and rep["predict"]["frames_per_s"] > 0
    assert "skipped" in rep["ddp"] and "=== summary" in (tmp_path / "out/gpu_check.log").read_text()
