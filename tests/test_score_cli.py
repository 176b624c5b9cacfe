"""`abaw score` end to end: a subprocess of the installed command on small generated folders,
checked against sklearn's F1 and a direct CCC formula on the same inputs."""
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from abaw_workbench.annotations import write_annotation_file, read_annotation_file

ABAW = Path(sys.executable).parent / "abaw"
VIDEOS = ["1-30-640x360", "video7_left", "video7_right", "22-25-1920x1080"]


def run(*args):
    return subprocess.run([str(ABAW), "score", *map(str, args)], capture_output=True, text=True, timeout=120)


def make(tmp, task, seed=0):
    "Label and prediction folders for `task`; returns (labels dir, preds dir, labels list, preds list)."
    rng = np.random.default_rng(seed)
    L, P = tmp / "labels", tmp / "preds"
    ls, ps = [], []
    for i, v in enumerate(VIDEOS):
        n = 40 + 17 * i
        if task == "au":
            l = rng.integers(0, 2, (n, 12)).astype(float); l[rng.random(n) < 0.2] = np.nan
            p = np.where(rng.random((n, 12)) < 0.7, np.nan_to_num(l), rng.integers(0, 2, (n, 12))).astype(float)
        elif task == "expr":
            l = rng.integers(-1, 8, n); p = np.where(rng.random(n) < 0.5, np.maximum(l, 0), rng.integers(0, 8, n))
        else:
            l = rng.uniform(-1, 1, (n, 2)).round(3); l[rng.random(n) < 0.2] = np.nan
            p = np.clip(np.nan_to_num(l) * 0.6 + rng.normal(0, 0.3, (n, 2)), -1, 1).round(4)
        write_annotation_file(L / f"{v}.txt", task, l); write_annotation_file(P / f"{v}.txt", task, p)
        ls.append(l); ps.append(p)
    return L, P, ls, ps


def ccc(x, y):
    return 2 * np.mean((x - x.mean()) * (y - y.mean())) / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def reference(task, ls, ps):
    l, p = np.concatenate(ls), np.concatenate(ps)
    if task == "au":
        per = [f1_score(l[~np.isnan(l[:, j]), j], p[~np.isnan(l[:, j]), j], zero_division=0) for j in range(12)]
        return float(np.mean(per)), int((~np.isnan(l).all(1)).sum())
    if task == "expr":
        ok = l >= 0
        return f1_score(l[ok], p[ok], labels=range(8), average="macro", zero_division=0), int(ok.sum())
    per = [ccc(p[~np.isnan(l[:, j]), j], l[~np.isnan(l[:, j]), j]) for j in range(2)]
    return float(np.mean(per)), int((~np.isnan(l).all(1)).sum())


@pytest.mark.parametrize("task", ["au", "expr", "va"])
def test_score_matches_reference(tmp_path, task):
    L, P, ls, ps = make(tmp_path, task)
    r = run("--task", task, "--labels", L, "--predictions", P, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    want, frames = reference(task, ls, ps)
    assert abs(res["score"] - want) < 1e-9
    assert res["frames"] == frames and res["videos"] == len(VIDEOS) and res["task"] == task
    assert len(res["per_class"]) == {"au": 12, "expr": 8, "va": 2}[task]


def test_human_output_and_per_video(tmp_path):
    L, P, *_ = make(tmp_path, "expr")
    r = run("--task", "expr", "--labels", L, "--predictions", P, "--per-video")
    assert r.returncode == 0, r.stderr
    assert "EXPR macro F1 over 8 classes" in r.stdout and "video7_left" in r.stdout


def _error(r):
    assert r.returncode != 0
    assert r.stderr.startswith("abaw score: error: ") and "Traceback" not in r.stderr
    return r.stderr


def test_missing_prediction_file(tmp_path):
    L, P, *_ = make(tmp_path, "va")
    (P / "video7_right.txt").unlink()
    assert "video7_right.txt: prediction file missing" in _error(run("--task", "va", "--labels", L, "--predictions", P))


def test_length_mismatch(tmp_path):
    L, P, ls, ps = make(tmp_path, "au")
    write_annotation_file(P / "video7_left.txt", "au", ps[1][:-3])
    err = _error(run("--task", "au", "--labels", L, "--predictions", P))
    assert "video7_left.txt" in err and "frames, but" in err


@pytest.mark.parametrize("text,msg", [
    ("valence,arousal\n0.1,0.2\n0.3,x\n", "line 3: non-numeric value 'x'"),
    ("valence,arousal\n0.1\n", "line 2: expected 2 columns, found 1"),
    ("arousal,valence\n0.1,0.2\n", "line 1: bad header"),
    ("valence,arousal\n0.1,3\n", "line 2: arousal = 3 out of range"),
])
def test_malformed_prediction_file(tmp_path, text, msg):
    L, P, *_ = make(tmp_path, "va")
    (P / "1-30-640x360.txt").write_text(text)
    err = _error(run("--task", "va", "--labels", L, "--predictions", P))
    assert "1-30-640x360.txt" in err and msg in err


def test_missing_prediction_for_a_labelled_frame(tmp_path):
    L, P, ls, ps = make(tmp_path, "expr")
    p = ps[0].copy(); i = int(np.flatnonzero(ls[0] >= 0)[0]); p[i] = -1
    write_annotation_file(P / "1-30-640x360.txt", "expr", p)
    assert f"line {i + 2}: no valid prediction" in _error(run("--task", "expr", "--labels", L, "--predictions", P))


def test_missing_folder(tmp_path):
    assert "labels folder does not exist" in _error(run("--task", "au", "--labels", tmp_path / "nope", "--predictions", tmp_path))


def test_usage_error():
    r = run("--task", "pose", "--labels", "a", "--predictions", "b")
    assert r.returncode == 2 and "invalid choice" in r.stderr
