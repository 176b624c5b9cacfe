"""No lost work, and the same result on more machines.

- A pre-training run killed with SIGKILL after a checkpoint, then started again with the same
  command, ends with exactly the weights of a run that was never interrupted.
- (slow) The same run on 2 CPU processes under torchrun (gloo, sharded batches) ends with the
  weights of the 1-process run with the same global batch.
"""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def make_faces(root, n=32, size=64):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        im = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 255, 3)))
        ImageDraw.Draw(im).ellipse([8, 4, size - 8, size - 4], fill=tuple(int(c) for c in rng.integers(100, 255, 3)))
        im.save(root / f"{i:03d}.png")


@pytest.fixture
def catalog(tmp_path):
    make_faces(tmp_path / "faces")
    cat = tmp_path / "data_catalog.yaml"
    cat.write_text("entries:\n  faces: {kind: image_folder, path: faces}\n")
    return cat


def command(catalog, out, steps, *extra):
    return ["pretrain", "--catalog", str(catalog), "--dataset", "faces", "--config", "tiny", "--out", str(out),
            "encoder.img_size=64", "train.batch_size=8", f"train.max_steps={steps}", "train.checkpoint_every=2",
            "train.log_every=1", "train.blr=5e-3", "train.warmup_steps=2", "train.progress=false", "train.seed=7", *extra]


def weights(out):
    return torch.load(Path(out) / "checkpoint.pt", map_location="cpu", weights_only=True)


def test_killed_run_resumes_to_the_same_weights(catalog, tmp_path):
    steps = 16
    full = subprocess.run([str(BIN / "abaw"), *command(catalog, tmp_path / "full", steps)], env=ENV, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr

    out = tmp_path / "killed"
    ckpt = out / "checkpoint.pt"

    def kill_after_next_checkpoint():
        "Start the run; SIGKILL it as soon as it has written a new checkpoint."
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        p = subprocess.Popen([str(BIN / "abaw"), *command(catalog, out, steps)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        while p.poll() is None and time.time() - t0 < 300:
            if ckpt.exists() and ckpt.stat().st_mtime_ns != before: break
            time.sleep(0.005)
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait() == -signal.SIGKILL
        return weights(out)["step"]

    first = kill_after_next_checkpoint()
    done = kill_after_next_checkpoint()  # killed twice, the second time after resuming
    assert 2 <= first < done < steps, (first, done)  # killed in the middle of the run

    again = subprocess.run([str(BIN / "abaw"), *command(catalog, out, steps)], env=ENV, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert f"resuming {out / 'checkpoint.pt'} at step {done}/{steps}" in again.stderr
    a, b = weights(tmp_path / "full"), weights(out)
    assert a["step"] == b["step"] == steps
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]: assert torch.equal(a["model"][k], b["model"][k]), k
    for k, v in a["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])
    logged = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == list(range(1, steps + 1))
    full_log = [json.loads(l) for l in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in logged if "loss" in r] == [r["loss"] for r in full_log if "loss" in r]
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind


@pytest.mark.slow
def test_two_processes_match_one(catalog, tmp_path):
    steps = 6
    one = subprocess.run([str(BIN / "abaw"), *command(catalog, tmp_path / "one", steps)], env=ENV, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", str(BIN / "abaw"),
                          *command(catalog, tmp_path / "two", steps)], env={**ENV, "TMPDIR": str(tmp_path)},   # torchelastic_* go with the test's files
                         capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert b["step"] == steps and len(b["rng"]) == 2
    for k in a["model"]: torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5, msg=k)
    la = [json.loads(l)["loss"] for l in (tmp_path / "one" / "log.jsonl").read_text().splitlines() if '"loss"' in l]
    lb = [json.loads(l)["loss"] for l in (tmp_path / "two" / "log.jsonl").read_text().splitlines() if '"loss"' in l]
    np.testing.assert_allclose(la, lb, rtol=1e-4)
