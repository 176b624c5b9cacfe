"""`abaw ablate` mechanics on a purpose-made probe notebook (no training): a grid with 2 workers in which one run
fails and one exceeds its timeout, resumption, --retry-failed, refusal of a misspelled parameter before anything
runs, a SIGKILLed `abaw ablate` rerun to the same table, and the same grid on a dask.distributed LocalCluster."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import psutil
import pytest

from abaw_workbench.ablate import load_grid, load_results, make_probe_notebook, run_grid, STATUS
from abaw_workbench.synth import synth_catalog

ABAW = Path(sys.executable).parent / "abaw"
TIMEOUT = 15  # seconds per run: a probe run takes 2-5 s (kernel start) on a busy 2-core machine

GRID = f"""notebook: probe.ipynb
description: probe grid - run 2 fails, run 3 hangs
zip:
  - x: [1, 2, 3, 4, 5, 6]
    fail: [false, true, false, false, false, false]
    sleep: [0.0, 0.0, 600.0, 0.0, 0.0, 0.0]
timeout: {TIMEOUT}
"""


def _abaw(*args, cwd, timeout=600):
    return subprocess.run([str(ABAW), "ablate", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _statuses(out):
    return {p.parent.name: json.loads(p.read_text()) for p in (Path(out) / "runs").glob(f"*/{STATUS}")}


def _table(out):
    "The results table without its timing columns (which differ from run to run)."
    ds = load_results(out)
    ds = ds.drop_vars([v for v in ds.data_vars if v == "seconds" or v.startswith("time.")])
    return ds.to_dataframe()


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    d = tmp_path_factory.mktemp("ablate")
    make_probe_notebook(d / "probe.ipynb")
    (d / "grid.yaml").write_text(GRID)
    r = _abaw("grid.yaml", "--workers", 2, "--out", "out", "--no-progress", cwd=d)
    return d, r


def test_failures_are_isolated_and_recorded(grid):
    d, r = grid
    assert r.returncode == 1, r.stderr   # some runs did not finish
    ds = load_results(d / "out")
    st = dict(zip(ds.x.values.tolist(), ds.status.values.tolist()))
    assert st == {1: "done", 2: "failed", 3: "timed_out", 4: "done", 5: "done", 6: "done"}, st
    done = ds.status.values == "done"
    np.testing.assert_allclose(ds["y"].values[done], ds.x.values[done] * 1.0)   # the probe's metric: x * scale + seed
    i = ds.x.values.tolist().index(2)
    assert ds.error_cell.values[i] == 1 and "raise ValueError" in ds.error_source.values[i]
    assert "ValueError: failing on purpose (x=2)" in ds.error.values[i]
    j = ds.x.values.tolist().index(3)
    assert "timeout" in ds.error.values[j] and ds.seconds.values[j] < TIMEOUT + 30
    assert "failing on purpose" in r.stdout and "timed_out" in r.stdout and "cell 1" in r.stdout
    for rid in ds.run.values:   # every run kept its executed notebook
        assert (d / "out" / "runs" / rid / "notebook.ipynb").exists()
    for f in ("results.nc", "results.csv", "results.md", "figures.html"): assert (d / "out" / f).exists()
    md = (d / "out" / "results.md").read_text()
    assert "failed" in md and "timed_out" in md and "| run |" in md


def test_rerun_runs_nothing_and_retry_failed_reruns_exactly_those(grid):
    d, _ = grid
    before = _statuses(d / "out")
    r = _abaw("grid.yaml", "--workers", 2, "--out", "out", "--no-progress", cwd=d)
    assert "6 finished before, 0 to run" in r.stdout, r.stdout
    assert _statuses(d / "out") == before
    r = _abaw("grid.yaml", "--workers", 2, "--out", "out", "--no-progress", "--retry-failed", cwd=d)
    assert "2 to run" in r.stdout, r.stdout
    after = _statuses(d / "out")
    rerun = {k for k in after if after[k]["started"] != before[k]["started"] or after[k]["finished"] != before[k]["finished"]}
    assert rerun == {k for k, v in before.items() if v["status"] != "done"} and len(rerun) == 2
    assert {after[k]["status"] for k in rerun} == {"failed", "timed_out"}   # the probe fails the same way again


def test_misspelled_parameter_refused_before_any_run(tmp_path):
    make_probe_notebook(tmp_path / "probe.ipynb")
    (tmp_path / "bad.yaml").write_text("notebook: probe.ipynb\nparameters: {x: [1, 2], scael: [1.0]}\n")
    r = _abaw("bad.yaml", "--out", "out", cwd=tmp_path)
    assert r.returncode == 1 and "bad.yaml" in r.stderr and "'scael'" in r.stderr, r.stderr
    assert not (tmp_path / "out" / "runs").exists() or not any((tmp_path / "out" / "runs").iterdir())
    (tmp_path / "bad.yaml").write_text("notebook: probe.ipynb\nparameters: {x: [1, '2']}\n")
    r = _abaw("bad.yaml", "--out", "out", cwd=tmp_path)
    assert r.returncode == 1 and "'x': value '2' is not of type int" in r.stderr, r.stderr


def _ours(path):
    "Processes (other than this one) whose command line mentions `path`."
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.info["pid"] != os.getpid() and any(str(path) in a for a in p.info["cmdline"] or []): out.append(p)
    return out


def _cmdline(proc) -> str:
    "A process's command line; empty for one that has just ended (a run finishing as the grid is killed)."
    try: return " ".join(proc.cmdline())
    except (psutil.ZombieProcess, psutil.NoSuchProcess, psutil.AccessDenied): return ""


def test_sigkill_then_rerun_gives_the_table_of_an_uninterrupted_run(tmp_path):
    make_probe_notebook(tmp_path / "probe.ipynb")
    (tmp_path / "grid.yaml").write_text("notebook: probe.ipynb\nparameters: {x: [1, 2]}\nfixed: {sleep: 1.0}\nseeds: 2\n")
    (tmp_path / "system").mkdir()   # its temporary folder: the runs make theirs there
    p = subprocess.Popen([str(ABAW), "ablate", "grid.yaml", "--workers", "2", "--out", "killed", "--no-progress"],
                         cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(tmp_path / "system")})
    t0, tree = time.time(), []
    while p.poll() is None and time.time() - t0 < 300:   # until a run is recorded while another one runs
        tree = psutil.Process(p.pid).children(recursive=True)   # pool workers, papermill, kernels
        if _statuses(tmp_path / "killed") and any("papermill" in _cmdline(c) for c in tree): break
        time.sleep(0.1)   # (the two first runs may end together, before the next ones start)
    assert p.poll() is None, "the grid finished before it could be killed"
    assert any("papermill" in _cmdline(c) for c in tree), "no run in flight"
    p.send_signal(signal.SIGKILL); p.wait()
    # the orphaned workers notice and kill their runs (a run that just ended may still record itself), then exit
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, [_cmdline(c) for c in alive]
    assert not _ours(tmp_path), [p.info["cmdline"] for p in _ours(tmp_path)]   # papermill names the notebook's path
    assert not list((tmp_path / "system").glob("abaw-run-*"))   # the killed runs' temporary folders went with them
    n_finished = len(_statuses(tmp_path / "killed"))
    assert 1 <= n_finished < 4
    for f in (tmp_path / "killed" / "runs").glob("*/*"):   # no half-written record
        assert not f.name.endswith(".tmp"), f
        if f.name == STATUS: json.loads(f.read_text())
    r = _abaw("grid.yaml", "--workers", 2, "--out", "killed", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0 and f"{n_finished} finished before" in r.stdout, r.stdout + r.stderr
    run_grid(tmp_path / "grid.yaml", tmp_path / "straight", workers=2, progress=False)
    a, b = _table(tmp_path / "killed"), _table(tmp_path / "straight")
    assert a.equals(b), (a, b)
    assert (a["status"] == "done").all() and len(a) == 4


def test_the_same_grid_on_a_dask_localcluster(grid):
    distributed = pytest.importorskip("distributed")
    d, _ = grid
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
         distributed.Client(cluster) as client:
        ds = run_grid(d / "grid.yaml", d / "dask", workers=2, executor=client.get_executor(), progress=False)
    local = load_results(d / "out")
    assert ds.status.values.tolist() == local.status.values.tolist()
    assert ds.run.values.tolist() == local.run.values.tolist()
    np.testing.assert_array_equal(ds["y"].values, local["y"].values)
    assert ds.error.values.tolist() == local.error.values.tolist()


def test_grid_expansion_matches_the_run_ids_on_disk(grid):
    d, _ = grid
    assert {r.id for r in load_grid(d / "grid.yaml").runs()} == set(_statuses(d / "out"))


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("grid_file", sorted((ROOT / "ablations").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_grids_match_their_notebooks(grid_file):
    "Every shipped grid names an experiment notebook and parameters of the right types, over at least 2 seeds."
    from abaw_workbench.ablate import check_parameters
    g = load_grid(grid_file)
    check_parameters(g)
    assert g.notebook.parent == ROOT / "nbs" / "experiments" and len(g.seeds) >= 2 and len(g.runs()) >= 4


def test_shipped_grids_cover_the_papers_axes():
    vals = {}
    for f in (ROOT / "ablations").glob("*.yaml"):
        for k, v in load_grid(f).parameters.items(): vals.setdefault(k, set()).update(map(str, v))
    assert {"True", "False"} <= vals["pretrained"]
    assert {"visual", "audio", "audio_visual"} <= vals["modalities"]
    assert {"16", "32", "64", "100"} <= vals["window"]
    assert {"concat", "cross_attention"} <= vals["design"]
    assert {"True", "False"} <= vals["smoothing"] and {"True", "False"} <= vals["thresholds"]
    assert {"0.0", "0.2", "0.4"} <= vals["hard_share"]                                  # the authors' second branch (issue 29)
    assert {"inverse_frequency", "authors", "none"} <= vals["expr_class_weight"]
    assert {"True", "False"} <= vals["au_pos_weight"] and {"ccc", "mse", "both"} <= vals["va_loss"]


def test_a_kernel_that_never_starts_is_killed_at_the_timeout(tmp_path, monkeypatch):
    "papermill waits for a kernel that never answers; the watchdog kills papermill and the kernel process."
    from abaw_workbench.ablate import execute_run
    spec = tmp_path / "jupyter" / "kernels" / "never"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["sleep", "613"], "display_name": "never", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    make_probe_notebook(tmp_path / "probe.ipynb")
    t0 = time.time()
    rec = execute_run(str(tmp_path / "probe.ipynb"), {"x": 1}, str(tmp_path / "run"), timeout=8, kernel="never")
    assert rec["status"] == "timed_out" and time.time() - t0 < 40, rec
    assert json.loads((tmp_path / "run" / STATUS).read_text())["status"] == "timed_out"
    left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "613"]]
    assert not left, "the kernel process outlived its run"


def test_a_hang_after_the_last_cell_loses_nothing(tmp_path):
    """papermill's known hang after the last cell (it waits for a kernel reply that never comes): a run whose record was
    written is done, with a note; a run that hangs before writing its record is timed out."""
    make_probe_notebook(tmp_path / "probe.ipynb")
    (tmp_path / "grid.yaml").write_text("notebook: probe.ipynb\nzip:\n  - x: [1, 2]\n    hang: [true, false]\n"
                                        "    sleep: [0.0, 600.0]\ntimeout: 60\n")
    t0 = time.time()
    r = _abaw("grid.yaml", "--workers", 2, "--out", "out", "--no-progress", "--after-last-cell", 3, cwd=tmp_path)
    ds = load_results(tmp_path / "out")
    st = dict(zip(ds.x.values.tolist(), zip(ds.status.values.tolist(), ds.note.values.tolist())))
    assert st[1][0] == "done" and "3 s after the last cell completed" in st[1][1], st   # killed 3 s after, not at the timeout
    i = ds.x.values.tolist().index(1)
    assert ds.seconds.values[i] < 50 and time.time() - t0 < 300
    assert st[2] == ("timed_out", ""), st
    assert ds["y"].values[i] == 1.0                                           # its record is in the table
    assert r.returncode == 1 and "done, note:" in r.stdout and "timed_out" in r.stdout, r.stdout
    assert "after the last cell" in (tmp_path / "out" / "results.md").read_text()
    rec = json.loads((tmp_path / "out" / "runs" / ds.run.values[i] / STATUS).read_text())
    assert rec["returncode"] != 0 and rec["error"] is None   # papermill was killed; nothing was lost


def test_the_demo_stages_depend_on_the_code_they_run(tmp_path):
    """The method's stages (demo.method_stages, shared by `abaw demo` and the experiment notebooks) are each keyed to
    the package modules they run: a change to finetune.py reruns fine-tuning and later stages, not the data stage."""
    from abaw_workbench.catalog import Catalog
    from abaw_workbench.demo import demo_config, method_stages
    from abaw_workbench.runs import StageRunner, stage_code
    synth_catalog(tmp_path, size=32, images=4, file="cat.yaml")
    fns = {}
    def capture(name, settings, fn):   # the stage's function, not run
        fns[name] = fn; (tmp_path / name).mkdir(exist_ok=True)
        return {}, tmp_path / name
    method_stages(demo_config("tiny"), Catalog.load(tmp_path / "cat.yaml"), StageRunner(tmp_path / "stages"), run=capture,
                  log=lambda *a: None, progress=False)
    code = {k: {m for m in stage_code(f) if m.endswith(".py")} for k, f in fns.items()}
    assert set(code) == {"data", "pretrain", "finetune", "extract", "fusion_visual", "fusion_audio_visual"}
    assert {"annotations.py", "catalog.py"} <= code["data"] and "finetune.py" not in code["data"] | code["pretrain"]
    assert "mae.py" in code["pretrain"] and "finetune.py" in code["finetune"] and "features.py" not in code["finetune"]
    assert "features.py" in code["extract"] and "fusion.py" not in code["extract"]
    assert "fusion.py" in code["fusion_visual"] and "fusion.py" in code["fusion_audio_visual"]
    assert not {"docs.py", "cli.py", "demo.py", "ablate.py", "explore.py"} & set().union(*code.values())
    assert any(k.startswith("demo:method_stages.<locals>.fine") for k in stage_code(fns["finetune"]))   # its own source
