"""`abaw synth` end to end: the Aff-Wild2 layout, determinism, decodable raw videos with audio,
the _left/_right pair, invalid rows, labelled frames without a crop, and usage errors."""
import hashlib, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
ABAW = Path(sys.executable).parent / "abaw"
ARGS = ["--videos", "3", "--frames", "40", "--seed", "1"]
TASK_DIRS = {"au": "AU_Detection_Challenge", "expr": "EXPR_Classification_Challenge", "va": "VA_Estimation_Challenge"}


def _synth(out: Path, *extra):
    r = subprocess.run([str(ABAW), "synth", str(out), *ARGS, *extra], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    return _synth(d / "a"), _synth(d / "b")


def _digest(root: Path) -> dict:
    "sha1 of every file under root, by relative path (the manifest and catalog name the folder, so skip them)."
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "data_catalog.yaml"}


def test_layout(two_runs):
    root = two_runs[0]
    crops = sorted(p.name for p in (root / "cropped_aligned").iterdir())
    assert len(crops) == 3
    for t, d in TASK_DIRS.items():
        for s in ("Train_Set", "Validation_Set"):
            assert (root / "Annotations" / d / s).is_dir()
        lines = (root / f"CVPR_5th_ABAW_{t.upper()}_test_set_sample.txt").read_text().splitlines()
        assert lines[0].startswith("image_location,") and len(lines) > 1
        vid, frame = lines[1].rstrip(",").split("/")
        assert frame == "00001.jpg" and (root / "cropped_aligned" / vid).is_dir()
        assert (root / ".synth" / "test_labels" / d / f"{vid}.txt").is_file()  # hidden test labels
    assert (root / "data_catalog.yaml").is_file() and (root / ".synth" / "manifest.json").is_file()
    # every annotated video has crops named 00001.jpg ...
    for f in (root / "Annotations").rglob("*.txt"):
        assert (root / "cropped_aligned" / f.stem / "00001.jpg").is_file(), f


def test_deterministic(two_runs):
    a, b = two_runs
    da, db = _digest(a), _digest(b)
    assert da.keys() == db.keys()
    same = [k for k in da if k.endswith((".txt", ".jpg", ".json"))]
    assert len(same) > 100
    assert [k for k in same if da[k] != db[k]] == []


def test_raw_video_decodes_with_audio(two_runs):
    import av
    root = two_runs[0]
    vids = sorted((root / "videos").glob("*.mp4"))
    assert len(vids) == 2  # three subjects, two of them a left/right pair in one raw video
    for v in vids:
        with av.open(str(v)) as c:
            assert c.streams.audio, f"{v}: no audio stream"
            n = sum(1 for _ in c.decode(video=0))
        with av.open(str(v)) as c:
            rate = c.streams.audio[0].rate
            wav = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
        assert n == 40
        assert abs(len(wav) / rate - 40 / 30) < 0.2 and np.abs(wav).max() > 0.01


def test_left_right_pair(two_runs):
    from abaw_workbench.schema import base_video
    root = two_runs[0]
    names = [p.name for p in (root / "cropped_aligned").iterdir()]
    left = [n for n in names if n.endswith("_left")]
    assert len(left) == 1 and base_video(left[0]) + "_right" in names
    assert (root / "videos" / f"{base_video(left[0])}.mp4").is_file()


def test_invalid_rows_and_missing_crops(two_runs):
    from abaw_workbench.annotations import read_annotation_file
    root = two_runs[0]
    markers = {"au": "-1", "expr": "-1", "va": "-5"}
    for t, d in TASK_DIRS.items():
        files = list((root / "Annotations" / d).rglob("*.txt"))
        rows = [l for f in files for l in f.read_text().splitlines()[1:]]
        assert any(l.split(",")[0] == markers[t] for l in rows), f"{t}: no invalid row"
    # labelled frames without a crop
    missing = 0
    for f in (root / "Annotations").rglob("*.txt"):
        n = len(read_annotation_file(f, next(t for t, d in TASK_DIRS.items() if d in str(f))))
        have = {int(p.stem) for p in (root / "cropped_aligned" / f.stem).glob("*.jpg")}
        missing += len(set(range(1, n + 1)) - have)
    assert missing > 0


def test_bad_usage_exits_2(tmp_path):
    for argv in (["synth"], ["synth", str(tmp_path / "x"), "--videos", "many"], ["synth", str(tmp_path / "x"), "--bogus"]):
        r = subprocess.run([str(ABAW), *argv], capture_output=True, text=True)
        assert r.returncode == 2, argv
        assert r.stderr.count("\n") == 1


def test_user_errors_exit_1(tmp_path):
    r = subprocess.run([str(ABAW), "synth", str(tmp_path / "x"), "--videos", "2"], capture_output=True, text=True)
    assert r.returncode == 1 and "--videos must be at least 3" in r.stderr
    assert not (tmp_path / "x").exists()  # nothing half-written
    (tmp_path / "y").mkdir(); (tmp_path / "y" / "keep.txt").write_text("x")
    r = subprocess.run([str(ABAW), "synth", str(tmp_path / "y"), *ARGS], capture_output=True, text=True)
    assert r.returncode == 1 and "already exists" in r.stderr and (tmp_path / "y" / "keep.txt").exists()
