"""The paper's audio encoders, end to end on data we control: a randomly initialised wav2vec2-architecture model
saved in `transformers` format to a temporary folder and named in a temporary catalog, its features extracted
for a short synthetic data set into a feature store beside the librosa ones, and one fusion step trained on them.
Nothing is downloaded (HF_HUB_OFFLINE=1, `local_files_only=True`)."""
import os
os.environ["HF_HUB_OFFLINE"] = "1"   # before transformers is imported: any hub access is an error
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import transformers

from abaw_workbench.annotations import read_split
from abaw_workbench.audio import (AudioConfig, audio_feature_names, encoder_features, encoder_hops, extract_waveform,
                                  audio_encoder_path, load_audio_encoder)
from abaw_workbench.catalog import Catalog
from abaw_workbench.train import read_checkpoint
from abaw_workbench.core import AbawError
from abaw_workbench.features import ExtractConfig, FeatureStore, run_extract
from abaw_workbench.fusion import FuseRunConfig, run_fusion
from abaw_workbench.mae import build_encoder
from abaw_workbench.schema import video_slices
from abaw_workbench.synth import synth_affwild2
from abaw_workbench.temporal import FusionConfig
from abaw_workbench.train import TrainConfig

pytestmark = pytest.mark.filterwarnings("ignore")
D = 32  # the tiny encoder's hidden size


def _strip_audio(src:Path, dst:Path):
    "Copy a video's video stream only (a raw video without an audio track)."
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.dts is None: continue
            p.stream = s; o.mux(p)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("w2v")
    root = synth_affwild2(tmp / "syn", videos=3, frames=30, seed=0, size=64)
    torch.manual_seed(0)
    cfg = transformers.Wav2Vec2Config(hidden_size=D, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                      conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    transformers.Wav2Vec2Model(cfg).save_pretrained(tmp / "w2v")
    (tmp / "cat.yaml").write_text("entries:\n  syn: {kind: affwild2, path: syn}\n"
                                  "  w2v: {kind: checkpoint, format: hf_audio, path: w2v}\n")
    cat = Catalog.load(tmp / "cat.yaml", check_paths=True)
    entry = cat.resolve("syn", "affwild2")
    lay = entry.layout
    used = {lay.raw_video(v) for split in ("train", "validation") for v in video_slices(read_split(entry, split))}
    others = sorted(set(lay.videos.iterdir()) - used)
    assert None not in used and others, "the synthetic data set has raw videos for every split"
    silent = others[0]   # a test video's raw file loses its audio track: its frames must get zeros and mask False
    _strip_audio(silent, tmp / silent.name); (tmp / silent.name).replace(silent)
    xcfg = ExtractConfig(batch_size=16, num_workers=0,
                         audio=AudioConfig(encoder="w2v"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = FeatureStore(run_extract(xcfg, tmp / "store", data=entry, encoder=build_encoder("micro", 64, drop_path=0.0),
                                         cache_dir=cat.cache_dir, progress=False, catalog=cat).path)
    return dict(tmp=tmp, cat=cat, entry=entry, store=store, silent=silent, cfg=xcfg)


def test_store_holds_encoder_features_beside_librosa(setup):
    st = setup["store"]
    na = len(audio_feature_names())
    assert st.meta["audio_dim"] == na + D
    assert st.meta["audio_features"][:na] == audio_feature_names()
    assert st.meta["audio_features"][na:] == [f"w2v_{i}" for i in range(D)]
    assert st.meta["audio"]["encoder"] == "w2v" and len(st.meta["audio_encoder_hash"]) == 16
    for v in st.videos:
        assert st.read(v)["audio"].shape[1] == na + D


def test_features_are_aligned_to_frame_times(setup):
    st, entry, cfg = setup["store"], setup["entry"], setup["cfg"].audio
    lay = entry.layout
    na = len(audio_feature_names())
    path = audio_encoder_path("w2v", setup["cat"])
    checked = 0
    for v in st.videos:
        raw = lay.raw_video(v)
        if raw == setup["silent"]: continue
        r = st.read(v)
        wave, sr, ok = extract_waveform(raw, setup["cat"].cache_dir, 16000)
        assert ok and r["audio_mask"].all()
        want, m = encoder_features(wave, sr, (r["frame_index"] - 1) / 30.0, path, cfg)
        np.testing.assert_allclose(r["audio"][:, na:], want, atol=1e-4)
        # hop-level check for one frame: the mean of the hops centred within +-context/2 of its time
        hops = load_audio_encoder(path)
        h = encoder_hops(wave, hops)
        i = len(r["frame_index"]) // 2
        t = (r["frame_index"][i] - 1) / 30.0
        centres = np.arange(len(h)) * 0.02 + 0.0125
        sel = np.abs(centres - t) <= cfg.context / 2 + 1e-9
        np.testing.assert_allclose(r["audio"][i, na:], h[sel].mean(0), atol=1e-4)
        # different frames see different audio
        assert np.abs(r["audio"][0, na:] - r["audio"][-1, na:]).max() > 1e-3
        checked += 1
    assert checked >= 1


def test_frames_without_audio_are_zero_and_masked(setup):
    st, lay = setup["store"], setup["entry"].layout
    silent = [v for v in st.videos if lay.raw_video(v) == setup["silent"]]
    assert silent, "a video of the store comes from the stripped raw file"
    for v in silent:
        r = st.read(v)
        assert not r["audio_mask"].any() and np.abs(r["audio"]).max() == 0


def test_no_hub_access_and_clear_errors(setup, tmp_path):
    (tmp_path / "cat.yaml").write_text("entries:\n  hub: {kind: checkpoint, format: hf_audio, path: facebook/wav2vec2-base}\n")
    cat = Catalog.load(tmp_path / "cat.yaml")
    with pytest.raises(AbawError, match="does not exist"):   # a hub name is a missing folder, never a download
        audio_encoder_path("hub", cat)
    (tmp_path / "empty").mkdir()
    (tmp_path / "cat.yaml").write_text("entries:\n  empty: {kind: checkpoint, format: hf_audio, path: empty}\n")
    with pytest.raises(AbawError, match="not a transformers model folder"):
        audio_encoder_path("empty", Catalog.load(tmp_path / "cat.yaml"))
    (tmp_path / "empty" / "config.json").write_text((setup["tmp"] / "w2v" / "config.json").read_text())
    with pytest.raises(AbawError, match="cannot load the audio encoder"):   # config without weights
        load_audio_encoder(tmp_path / "empty")
    with pytest.raises(AbawError, match="neither a catalog entry nor a folder"):
        audio_encoder_path("facebook/wav2vec2-base", cat)


def test_one_fusion_step_on_encoder_features(setup):
    st, entry, tmp = setup["store"], setup["entry"], setup["tmp"]
    cfg = FuseRunConfig(per_task=False, postprocess=False,
                        fusion=FusionConfig(modalities="audio_visual", window=16, stride=8, d_model=32, hidden=32, ff=32,
                                            layers=1, heads=2, head_hidden=16),
                        train=TrainConfig(max_steps=1, batch_size=2, lr=1e-3, progress=False, checkpoint_every=100))
    train, val = read_split(entry, "train"), read_split(entry, "validation")
    m = run_fusion(cfg, tmp / "fuse", store=st, labels=(train, val)).metrics
    assert "raw" in m and np.isfinite(list(m["raw"].values())[0])
    ck = read_checkpoint(tmp / "fuse" / "best.pt") if (tmp / "fuse" / "best.pt").exists() else read_checkpoint(tmp / "fuse" / "checkpoint.pt")
    assert ck["model"]["audio_mean"].shape == (len(audio_feature_names()) + D,)
    assert ck["model"]["audio_mean"][-D:].abs().sum() > 0   # the encoder columns were standardised with their own statistics


@pytest.mark.parametrize("which", ["encoder", "librosa"])
def test_fusion_chooses_the_stored_audio_features(setup, which):
    "fusion.audio_features picks the encoder's or the librosa columns of the same store; the saved model reloads reading them."
    from abaw_workbench.checkpoints import load_model
    st, entry, tmp = setup["store"], setup["entry"], setup["tmp"]
    na = len(audio_feature_names())
    cfg = FuseRunConfig(per_task=False, postprocess=False,
                        fusion=FusionConfig(modalities="audio", window=16, stride=8, d_model=32, hidden=32, ff=32,
                                            layers=1, heads=2, head_hidden=16, audio_features=which),
                        train=TrainConfig(max_steps=1, batch_size=2, lr=1e-3, progress=False, checkpoint_every=100))
    train, val = read_split(entry, "train"), read_split(entry, "validation")
    out = tmp / f"fuse_{which}"
    m = run_fusion(cfg, out, store=st, labels=(train, val)).metrics
    assert np.isfinite(list(m["raw"].values())[0])
    cols = list(range(na, na + D)) if which == "encoder" else list(range(na))
    ck = read_checkpoint(out / "best.pt") if (out / "best.pt").exists() else read_checkpoint(out / "checkpoint.pt")
    assert ck["model"]["audio_mean"].shape == (len(cols),)
    net = load_model(out / ("best.pt" if (out / "best.pt").exists() else "checkpoint.pt"))
    assert net.audio_columns == cols and net.audio_dim == na + D


def test_abaw_extract_with_an_encoder_from_the_catalog(setup, tmp_path):
    "`abaw extract ... audio.encoder=w2v` resolves the encoder in the command's catalog."
    import argparse
    from abaw_workbench.features import extract_args, extract_main
    tmp = setup["tmp"]
    torch.manual_seed(0); torch.save(build_encoder("micro", 64, drop_path=0.0).state_dict(), tmp_path / "vit.pt")
    p = argparse.ArgumentParser(); extract_args(p)
    args = p.parse_args(["--catalog", str(tmp / "cat.yaml"), "--dataset", "syn", "--encoder", str(tmp_path / "vit.pt"),
                         "--out", str(tmp_path / "store"), "splits=[train]", "num_workers=0", "audio.encoder=w2v",
                         "audio.encoder_only=true"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert extract_main(args) == 0
    st = FeatureStore(tmp_path / "store")
    assert st.meta["audio_features"] == [f"w2v_{i}" for i in range(D)]
    v = st.videos[0]
    na = len(audio_feature_names())
    np.testing.assert_allclose(st.read(v)["audio"], setup["store"].read(v)["audio"][:, na:], atol=1e-5)
