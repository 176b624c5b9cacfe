"""The device check a lent GPU session runs once (`bench/gpu_run.sh`: the wheels the machine lacks, then
`bench/gpu_check.py`), run here end to end on the CPU in miniature (tiny configuration, small batches, a tiny synthetic
set) and in a simulated lent machine: a Python environment holding only the packages such a machine has
(`gpu_wheels.MACHINE`, `ASSUMED`) and those the project brings it (`gpu_wheels.WHEELS`). An import the wheels do not
cover, or a part of the check that breaks, fails here rather than in the session's few minutes of device time."""
import json, os, re, subprocess, sys, zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from abaw_workbench.synth import synth_catalog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_wheels
from gpu_wheels import canonical


# what a lent machine sends back from $OUT (the device tool's limits): at most 8 files of at most 16 MiB, 64 MiB in all,
# no more than 2 folders down, named in letters, digits, '.', '_' and '-'; a file past them does not come back
RETURNED = dict(files=8, file_bytes=16 * 2**20, total_bytes=64 * 2**20, folders=2, name=re.compile(r"^[A-Za-z0-9._-]+$"))


def returned(out: Path) -> list:
    "What of `out` would not come back from a lent machine (empty: all of it would)."
    r = RETURNED
    size = {p.relative_to(out): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    return [*([f"{len(size)} files: {[str(q) for q in size]}"] if len(size) > r["files"] else []),
            *(f"{q}: {n} bytes" for q, n in size.items() if n > r["file_bytes"]),
            *([f"{sum(size.values())} bytes in all"] if sum(size.values()) > r["total_bytes"] else []),
            *(f"{q}: {len(q.parts) - 1} folders down" for q in size if len(q.parts) - 1 > r["folders"]),
            *(f"{q}: its name" for q in size if not all(r["name"].match(part) for part in q.parts))]


def requirement_closure(names) -> set:
    "The distributions `names` need, with everything they require (their own requirements, no extras), as installed here."
    seen, todo = set(), [canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen: continue
        seen.add(name)
        try: reqs = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError: continue
        todo += [canonical(r.name) for r in map(Requirement, reqs) if not r.marker or r.marker.evaluate({"extra": ""})]
    return seen


def lent_machine(where: Path) -> Path:
    "A Python environment like a lent GPU machine's with the project's wheels installed: links to this one's copies of those packages only."
    keep = requirement_closure(gpu_wheels.MACHINE) | {canonical(n) for n in [*gpu_wheels.ASSUMED, *gpu_wheels.WHEELS, "pip"]}
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = next(where.glob("lib/python3*/site-packages"))
    for name in sorted(keep):
        try: dist = metadata.distribution(name)
        except metadata.PackageNotFoundError: continue
        base = Path(dist.locate_file(""))
        for top in sorted({Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")} - {"__pycache__"}):
            if not top.endswith(".pth") and not (site / top).exists(): (site / top).symlink_to(base / top)
    return where / "bin" / "python"


def fake_wheel(folder: Path, name: str, version: str) -> Path:
    "A minimal pure-Python wheel of a package `name` holding one module."
    mod, info = canonical(name).replace("-", "_"), f"{canonical(name).replace('-', '_')}-{version}.dist-info"
    w = folder / f"{mod}-{version}-py3-none-any.whl"
    files = {f"{mod}/__init__.py": "VALUE = 1\n", f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{k},,\n" for k in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(w, "w") as z:
        for k, v in files.items(): z.writestr(k, v)
    return w


def test_install_takes_only_what_the_machine_lacks_or_has_at_a_rejected_version(tmp_path):
    assert gpu_wheels.needs("x", None, None) and gpu_wheels.needs("fastcore", "1.16.0", "fastcore>=1.12.3,<1.15")
    assert not gpu_wheels.needs("fastcore", "1.14.5", "fastcore>=1.12.3,<1.15") and not gpu_wheels.needs("x", "0.1", None)
    assert gpu_wheels.accepted()["facenet-pytorch"] == "facenet-pytorch==2.5.3"
    wheels = tmp_path / "whl"; wheels.mkdir()
    fake_wheel(wheels, "abaw-gpu-probe", "0.1")
    (wheels / f"numpy-{metadata.version('numpy')}-cp312-cp312-manylinux_2_17_x86_64.whl").write_bytes(b"not opened: kept")
    chosen = gpu_wheels.install(wheels, tmp_path / "site")
    assert [w.name for w in chosen] == ["abaw_gpu_probe-0.1-py3-none-any.whl"]
    assert (tmp_path / "site/abaw_gpu_probe/__init__.py").exists() and not (tmp_path / "site/numpy").exists()


def test_gpu_run_in_a_simulated_lent_machine(tmp_path):
    py = lent_machine(tmp_path / "machine")
    probe = "import importlib.util as u; print([m for m in ('torch', 'fastcore', 'papermill', 'nbdev') if u.find_spec(m)])"
    assert subprocess.run([py, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "['torch', 'fastcore']"
    synth_catalog(tmp_path, frames=32, file="cat.yaml")
    wheels = tmp_path / "whl"; wheels.mkdir(); fake_wheel(wheels, "abaw-gpu-probe", "0.1")
    (wheels / f"fastcore-{metadata.version('fastcore')}-py3-none-any.whl").write_bytes(b"the machine has it (in the simulation)")
    small = ["pretrain.train.batch_size=8", "finetune.train.batch_size=8", "finetune.eval_batch=16", "extract.batch_size=16",
             "fusion.train.batch_size=2", "fusion.fusion.window=16", "fusion.fusion.stride=8", "pretrain.train.num_workers=0",
             "finetune.train.num_workers=0", "extract.num_workers=0"]
    out = tmp_path / "out"
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHON": str(py), "WHEELS": str(wheels),
           "SITE": str(tmp_path / "site"), "OUT": str(out), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    r = subprocess.run(["bash", "bench/gpu_run.sh", "--device", "cpu", "--config", "tiny", "--catalog", str(tmp_path / "cat.yaml"),
                        "--steps", "6", "--rounds", "1", "--mae-batch", "4", "--skip", "ddp", *small],   # ddp: the slow test below
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    setup = (out / "setup.log").read_text()
    assert "abaw-gpu-probe" in setup and "install abaw_gpu_probe-0.1" in setup and "kept" in setup, setup
    rep = json.loads((out / "gpu_check.json").read_text())
    metrics = [row["metric"] for row in rep["stages"]]
    assert metrics[:3] == ["MAE pre-training", "fine-tuning", "fine-tuning validation pass"], metrics
    assert "feature extraction, crops resized in the workers" in metrics and all(row["ratio"] > 0 for row in rep["stages"])
    assert rep["stage_devices"]["finetune"] == "cpu fp32" and rep["mae_official"]["ratio"] > 0
    assert {row["stage"] for row in rep["demo"]["timing"]} >= {"pretrain", "finetune", "extract", "fusion_visual"}
    assert rep["demo"]["measured_on"]["finetune"][0] == "cpu"
    assert rep["predict"]["frames"] > 0 and rep["predict"]["frames_per_s"] > 0
    assert "ddp" not in rep and "=== summary" in (out / "gpu_check.log").read_text()
    paths = rep["paths"]   # fp32 on the CPU: the fused kernel and the compiled model step as the plain path does
    assert paths["dtype"] == "fp32" and paths["tolerance"] == 1e-4 and len(paths["plain"]["losses"]) == paths["steps"] == 4, paths
    assert paths["fused"]["meets"] and paths["compiled"]["meets"] and paths["compiled"]["compile_s"] > 0, paths
    assert "=== summary" in (out / "stdout.log").read_text()
    assert returned(out) == [], returned(out)   # the figures and logs alone: all of them come back


@pytest.mark.slow
def test_ddp_part_in_miniature(tmp_path):
    "The DDP part alone on the CPU: fine-tuning on 1 and on 2 processes under torchrun (gloo), with stage overrides given as for the demo."
    synth_catalog(tmp_path, frames=32, file="cat.yaml")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "bench/gpu_check.py", "--out", str(out), "--device", "cpu", "--config", "tiny",
                        "--catalog", str(tmp_path / "cat.yaml"), "--steps", "4", "--skip", "stages,mae_official,demo,predict,paths",
                        "finetune.train.batch_size=8", "finetune.train.num_workers=0", "fusion.train.batch_size=2"],
                       capture_output=True, text=True, cwd=ROOT, timeout=900,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
                            "TMPDIR": str(tmp_path)})   # torchrun's torchelastic_* folders go with the test's
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    d = json.loads((out / "gpu_check.json").read_text())["ddp"]
    assert d["backend"] == "gloo" and d["1_process_s_per_step"] > 0 and d["2_process_s_per_step"] > 0 and d["speed_up"] > 0, d


@pytest.mark.slow
def test_paper_configuration_in_miniature(tmp_path):
    "What the lent machine runs, `--config paper` (ViT-B/16 at 224 px, windows of 100), on the CPU with small batches: every part but DDP."
    synth_catalog(tmp_path, frames=32, file="cat.yaml")
    small = ["pretrain.train.batch_size=4", "finetune.train.batch_size=4", "finetune.eval_batch=8", "extract.batch_size=8",
             "fusion.train.batch_size=1",   # a 32-frame video makes one window of 100 frames
             "pretrain.train.num_workers=0", "finetune.train.num_workers=0", "extract.num_workers=0"]
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "bench/gpu_check.py", "--out", str(out), "--device", "cpu", "--config", "paper",
                        "--catalog", str(tmp_path / "cat.yaml"), "--steps", "2", "--rounds", "1", "--mae-batch", "2",
                        "--skip", "ddp", *small], capture_output=True, text=True, cwd=ROOT, timeout=1800,
                       env={**os.environ, "OMP_NUM_THREADS": "2", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
                            "TMPDIR": str(tmp_path)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rep = json.loads((out / "gpu_check.json").read_text())
    assert rep["config"] == "paper" and rep["mae_official"]["size"] == "base", rep.get("mae_official")
    assert "feature extraction, crops resized in the workers" in [row["metric"] for row in rep["stages"]]
    assert all(row["ratio"] > 0 for row in rep["stages"]) and rep["predict"]["frames"] > 0
    assert {row["stage"] for row in rep["demo"]["timing"]} >= {"pretrain", "finetune", "extract", "fusion_visual", "fusion_audio_visual"}
    assert rep["paths"]["fused"]["meets"] and rep["paths"]["compiled"]["meets"], rep["paths"]
