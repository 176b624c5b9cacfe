"""A corrected data set goes wherever a data set goes: `export_corrected` writes it from a run's corrections, then
`abaw finetune --dataset NAME` and `abaw demo --dataset NAME` train on it by name, unchanged, and read the corrected labels
(a few steps each, on a very small fixture). `abaw score` on its files, and the exact score change that planted flips
explain, are tested in nbs/15a_curate.ipynb."""
import os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from abaw_workbench.catalog import add_entry
from abaw_workbench.curate import Curation, export_corrected
from abaw_workbench.explore import fixture_run
from abaw_workbench.runs import Run
from abaw_workbench.schema import EXPR_NAMES

ABAW = Path(sys.executable).parent / "abaw"
ENV = {**os.environ, "OMP_NUM_THREADS": "2"}


def abaw(*args, cwd=None):
    r = subprocess.run([str(ABAW), *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    "A fixture run whose first planted EXPR flip is corrected to Surprise, exported as the catalog entry 'fixed'."
    d = tmp_path_factory.mktemp("curated")
    run = fixture_run(d / "fx", videos=4, frames=60)
    video, first, last = run.config["fixture"]["flips"][0][:3]
    Curation.of(run).correct(video, range(first, last + 1), expr="Surprise")
    cat = d / "fx" / "catalog.yaml"
    add_entry(cat, "faces", {"kind": "image_folder", "path": "faces", "synth": {"images": 16, "seed": 1, "size": 112}})
    changed = export_corrected(run, d / "fixed", "fixed", cat, log=lambda *a: None)   # `abaw curate export` is tested in 15a_curate
    assert changed["expr"] == last - first + 1, changed
    return cat, (video, first, last)


def _expr(run_folder, video, first, last):
    lab = Run.open(run_folder).labels
    m = (lab.video.values == video) & (lab.frame_index.values >= first) & (lab.frame_index.values <= last)
    return lab.expr.values[m].tolist()


def test_finetune_trains_on_the_corrected_set(corrected, tmp_path):
    cat, (video, first, last) = corrected
    abaw("finetune", "--dataset", "fixed", "--catalog", cat, "--out", tmp_path / "ft", "train.max_steps=2", "train.batch_size=8",
         "train.progress=false", "train.num_workers=0")
    assert _expr(tmp_path / "ft", video, first, last) == [EXPR_NAMES.index("Surprise")] * (last - first + 1)


@pytest.mark.slow
def test_demo_runs_on_the_corrected_set(corrected, tmp_path):
    cat, (video, first, last) = corrected
    abaw("demo", "--dataset", "fixed", "--faces", "faces", "--catalog", cat, "--out", tmp_path / "demo",
         "pretrain.train.max_steps=2", "pretrain.train.batch_size=8", "finetune.train.max_steps=2", "finetune.train.batch_size=8",
         "fusion.train.max_steps=3", "fusion.train.batch_size=4", "fusion.fusion.window=16", "fusion.fusion.stride=8",
         "extract.num_workers=0", "finetune.train.num_workers=0", "pretrain.train.num_workers=0")
    assert _expr(tmp_path / "demo", video, first, last) == [EXPR_NAMES.index("Surprise")] * (last - first + 1)
