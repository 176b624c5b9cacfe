"""`abaw predict` on a folder at scale (issue 26): two videos, a photo of several faces and a corrupt file, run with
`--workers 2` (the corrupt one reported, the others done), run again (every file skipped), and on a dask
`LocalCluster` with `--scheduler` (the same outputs); and the explorer's scrubber on a photo's result, each face a frame.

The models: a tiny synthetic-trained run (`demo.tiny_run`); the faces: scikit-image's astronaut photograph.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from abaw_workbench.cli import main as abaw

pytestmark = pytest.mark.timeout(600)


def astro_video(path, n, shift, audio=True):
    import cv2
    from skimage import data as skdata
    from abaw_workbench.video import write_video
    photo = skdata.astronaut()
    frames = []
    for i in range(n):
        s = 0.4 + 0.004 * i
        M = np.array([[s, 0, 70 + shift + i - s * 225], [0, s, 70 - s * 120]], np.float32)
        frames.append(cv2.warpAffine(photo, M, (176, 144), flags=cv2.INTER_AREA, borderValue=(90, 100, 110)))
    sr = 16000
    tone = (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(n / 15 * sr)) / sr)).astype(np.float32)
    write_video(path, frames, fps=15, audio=(tone, sr) if audio else None)


def group_photo(path):
    "Three copies of the astronaut photograph side by side: scaled, the middle one mirrored."
    import cv2
    from PIL import Image
    from skimage import data as skdata
    photo = skdata.astronaut()
    parts = [cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA) for side in (240, 180, 140)]
    parts[1] = parts[1][:, ::-1]
    Image.fromarray(np.concatenate([np.pad(p, ((0, 240 - len(p)), (0, 0), (0, 0)), constant_values=90) for p in parts], 1)).save(path)


@pytest.fixture(scope="module")
def setup(tiny_trained_run, tmp_path_factory):
    "The tiny run, and a folder: two videos, a photo, a corrupt file."
    run_dir, cat = tiny_trained_run
    tmp = tmp_path_factory.mktemp("predict_folders")
    media = tmp / "media"; media.mkdir()
    astro_video(media / "talk.mp4", 20, 0)
    astro_video(media / "walk.mp4", 16, 20, audio=False)
    group_photo(media / "group.jpg")
    (media / "broken.mp4").write_bytes((media / "talk.mp4").read_bytes()[:1500])
    return tmp, run_dir, cat


def predict(tmp, run_dir, cat, out, *extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # (the run is synthetic-trained: predict warns)
        return abaw(["predict", str(tmp / "media"), "--run", str(run_dir), "--catalog", str(cat), "--out", str(tmp / out),
                     "--device", "cpu", *extra])


def summary(tmp, out):
    return pd.read_csv(tmp / out / "summary.csv", keep_default_na=False).set_index("video")


@pytest.fixture(scope="module")
def workers_run(setup):
    tmp, run_dir, cat = setup
    return predict(tmp, run_dir, cat, "pool", "--workers", "2")


def test_workers_report_the_corrupt_file_and_do_the_rest(setup, workers_run, capsys):
    tmp, _, _ = setup
    assert workers_run == 1                                        # a file failed...
    s = summary(tmp, "pool")
    assert list(s.index) == ["broken", "group", "talk", "walk"]
    assert "broken.mp4" in s.error["broken"] and (s.error.drop("broken") == "").all()   # ...the others are done
    assert (s.frames["talk"], s.frames["walk"], s.frames["group"], s.tracks["group"]) == (20, 16, 1, 3)
    assert s.face_share[["talk", "walk", "group"]].astype(float).min() > 0.9
    static = xr.load_dataset(tmp / "pool" / "predictions" / "static.nc", engine="h5netcdf")
    assert sorted(set(static.video.values)) == ["group", "talk", "walk"] and static.sizes["frame"] == 20 + 16 + 3
    assert (tmp / "pool" / "overlay" / "group.jpg").is_file() and (tmp / "pool" / "summary.md").is_file()


def test_rerun_skips_every_file(setup, workers_run, capsys):
    tmp, run_dir, cat = setup
    before = {p: p.stat().st_mtime_ns for p in (tmp / "pool").rglob("*.nc")}
    capsys.readouterr()
    assert predict(tmp, run_dir, cat, "pool", "--workers", "2") == 1   # (the corrupt file's error stays reported)
    assert "4 file(s): 4 finished before" in capsys.readouterr().out
    parts = {p: t for p, t in before.items() if "parts" in p.parts or "tracks" in p.parts}
    assert parts and all(p.stat().st_mtime_ns == t for p, t in parts.items())   # nothing predicted again


def test_scheduler_gives_the_same_outputs(setup, workers_run):
    from dask.distributed import LocalCluster
    tmp, run_dir, cat = setup
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert predict(tmp, run_dir, cat, "dask", "--scheduler", cluster.scheduler_address) == 1
    a, b = summary(tmp, "pool"), summary(tmp, "dask")
    cols = ["kind", "frames", "face_share", "tracks", "note"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert "broken.mp4" in b.error["broken"]
    for m in ("static", "fusion_visual", "fusion_audio_visual"):
        pa, pb = (xr.load_dataset(tmp / o / "predictions" / f"{m}.nc", engine="h5netcdf") for o in ("pool", "dask"))
        assert (pa.video.values == pb.video.values).all() and (pa.frame_index.values == pb.frame_index.values).all()
        for v in ("au", "va", "expr_prob", "box", "landmarks"):
            np.testing.assert_allclose(pa[v].values, pb[v].values, atol=1e-4)


def test_scrubber_opens_a_photo_each_face_a_frame(setup):
    from abaw_workbench.catalog import Catalog
    from abaw_workbench.predict import PredictConfig, predict_paths
    from abaw_workbench.runs import Run
    from abaw_workbench.widgets import VideoScrubber
    tmp, run_dir, cat = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predict_paths(tmp / "media" / "group.jpg", run_dir, tmp / "photo", PredictConfig(device="cpu"), catalog=Catalog.load(cat), log=lambda *a: None)
    run = Run.open(tmp / "photo")
    assert run.models == ["static"] and list(run.manifest["frames"]["images"]) == ["group"]
    sc = VideoScrubber(run)
    assert (sc.video, sc.slider.min, sc.slider.max) == ("group", 1, 3)
    shown = []
    for k in (1, 2, 3):
        sc.show(frame_index=k)
        shown.append(sc.image.value)
        assert sc.image.value == sc.cache.get("group", k) and sc.image.value[:2] == b"\xff\xd8"   # the face's view, as a JPEG
    assert len(set(shown)) == 3 and run.frames.image("group", 2).shape[0] < 240                # three faces, each its own view
