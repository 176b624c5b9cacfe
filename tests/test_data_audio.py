"""Integration of the data and audio layers with the annotation reader and the synthetic data set:
a small synthetic Aff-Wild2 tree, read by `read_split`, served by `FrameDataset` / `WindowDataset`,
and its raw videos' audio turned into per-frame features."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from abaw_workbench.schema import video_slices, base_video, make_dataset

synth = pytest.importorskip("abaw_workbench.synth")
annotations = pytest.importorskip("abaw_workbench.annotations")
from abaw_workbench import audio, data
from abaw_workbench.layout import Layout

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("aff") / "synth"
    synth.synth_affwild2(root, videos=6, frames=60, seed=0, size=64)
    return Layout.of(root)   # readers take a catalog entry or its layout


def test_frames_follow_the_policy(tree):
    ds = annotations.read_split(tree, "train")
    cfg = data.preprocess_config("vit_tiny_patch16_224", img_size=64)
    fd = data.FrameDataset(ds, tree.crops, cfg)
    c = fd.counts
    assert c["used"] + c["no_crop"] + c["no_label"] + c["neither"] == ds.sizes["frame"]
    assert c["no_crop"] == int(((~ds.has_face.values) & data.has_label(data.label_arrays(ds))).sum())
    assert c["no_crop"] <= ds.attrs["n_labelled_without_crop"]
    b = next(iter(data.make_loader(fd, batch_size=16, num_workers=0)))
    assert b["image"].shape == (16, 3, 64, 64) and torch.isfinite(b["image"]).all()
    assert ds.has_face.values[b["index"].numpy()].all()


def test_windows_cover_the_split(tree):
    ds = annotations.read_split(tree, "train")
    cfg = data.preprocess_config("vit_tiny_patch16_224", img_size=64)
    wd = data.WindowDataset(ds, tree.crops, cfg, window=32, stride=32)
    seen = np.zeros(ds.sizes["frame"], int)
    for k in range(len(wd)):
        it = wd[k]
        idx = it["index"][it["valid"]].numpy()
        seen[idx] += 1
        assert (it["face_mask"].numpy()[:len(idx)] == ds.has_face.values[idx]).all()
    assert seen.min() >= 1


def test_audio_of_synthetic_videos(tree, tmp_path):
    import xarray as xr
    ds = xr.concat([annotations.read_split(tree, s) for s in ("train", "validation")], "frame")
    vids = list(video_slices(ds))
    # a raw video without an audio track: the stated rule, not a crash
    p0 = tree.raw_video(vids[0])
    silent = p0.with_name("silent-30-64x64.mp4")
    import av
    with av.open(str(p0)) as src, av.open(str(silent), "w") as dst:
        vs = dst.add_stream("mpeg4", rate=30); vs.width = vs.height = 64; vs.pix_fmt = "yuv420p"
        for i, fr in enumerate(src.decode(video=0)):
            if i == 30: break
            for pk in vs.encode(fr.reformat(64, 64, "yuv420p")): dst.mux(pk)
        for pk in vs.encode(): dst.mux(pk)
    vids.append("silent-30-64x64_left")
    ds = xr.concat([ds, make_dataset(["silent-30-64x64_left"] * 30, np.arange(1, 31))], "frame")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for v in vids:
            sub = ds.isel(frame=video_slices(ds)[v])
            F, m = audio.video_audio_features(tree, v, sub.time.values, tmp_path)
            assert F.shape == (sub.sizes["frame"], len(audio.AUDIO_FEATURE_NAMES))
            assert np.isfinite(F).all()
            p = tree.raw_video(v)
            if p is not None and audio.extract_waveform(p, tmp_path)[2]: assert m.mean() > 0.9
            else: assert not m.any() and not F.any()
    # one cache file per raw video, whatever the number of subjects
    raw = {base_video(v) for v in vids if tree.raw_video(v) is not None}
    assert len(list((tmp_path / "audio").iterdir())) == len(raw)
    assert any(v.endswith(("_left", "_right")) for v in vids[:-1])
