"""Fault injection through the `abaw` command: bad files, bad checkpoints, kills at random moments,
permissions, a full disk, faults inside DataLoader workers (issue 14; the policy is the table
"The fault policy" in nbs/00_core.ipynb).

For every fault: exit code 1, the last line of stderr is one `abaw CMD: error: ...` line naming
the file, no traceback, and nothing already written lost or corrupted. Most cases call
`cli.main` in this process (fast); kills, other users and mounts use subprocesses."""
import json, os, random, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from abaw_workbench.cli import main
from abaw_workbench.synth import synth_catalog

ABAW = Path(sys.executable).parent / "abaw"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["encoder.size=micro", "encoder.img_size=32", "train.batch_size=4", "train.progress=false", "eval_batch=16"]


def cli(capsys, *args):
    "Run `abaw ARGS` in this process: (exit code, stdout, stderr)."
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def cli_usage(capsys, *args):
    "Run `abaw ARGS` expecting a usage error (argparse exits 2)."
    with pytest.raises(SystemExit) as e: main([str(a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def one_line_error(rc, err, cmd, *names):
    "Exit 1, the error is the last stderr line, names every `names`, and no traceback was printed."
    assert rc == 1, (rc, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"abaw {cmd}: error: "), err[-2000:]
    for n in names: assert str(n) in last, (n, last)
    assert len(last) < 1000
    return last


def subprocess_error(r, cmd, *names):
    return one_line_error(r.returncode, r.stderr, cmd, *names)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "A tiny synthetic set, a short fine-tuning run (its best.pt) and a feature store, made once."
    d = tmp_path_factory.mktemp("faults")
    synth_catalog(d, "syn", seed=4, size=32, faces=None, data="", file="cat.yaml")
    r = subprocess.run([str(ABAW), "finetune", "--catalog", d / "cat.yaml", "--dataset", "syn", "--out", d / "ft", *TINY,
                        "train.max_steps=2"], env=ENV, capture_output=True, text=True, cwd=d)
    assert r.returncode == 0, r.stderr[-3000:]
    return d


def copy_set(world, tmp_path):
    "A private copy of the data set and a catalog pointing at it (for tests that damage files)."
    shutil.copytree(world / "syn", tmp_path / "syn", symlinks=True)
    (tmp_path / "cat.yaml").write_text("cache_dir: cache\nentries:\n  syn: {kind: affwild2, path: syn}\n")
    return tmp_path / "cat.yaml", tmp_path / "syn"


def a_crop(syn, split="Validation_Set"):
    "A crop file of a video annotated in `split`."
    ann = next((syn / "Annotations" / "VA_Estimation_Challenge" / split).glob("*.txt"))
    return sorted((syn / "cropped_aligned" / ann.stem).glob("*.jpg"))[3]


# -- bad files ----------------------------------------------------------------------------------------

def test_corrupt_validation_crop_in_a_worker_keeps_the_training_steps(world, tmp_path, capsys):
    cat, syn = copy_set(world, tmp_path)
    crop = a_crop(syn)
    good = crop.read_bytes()
    crop.write_bytes(good[:len(good) // 3])  # cut short
    args = ["finetune", "--catalog", cat, "--dataset", "syn", "--out", tmp_path / "run", *TINY, "train.max_steps=3",
            "train.num_workers=1", "train.log_every=1"]
    last = one_line_error(*cli(capsys, *args)[::2], "finetune", crop)
    assert "cannot decode image" in last and "replace or delete it" in last
    ck = torch.load(tmp_path / "run/checkpoint.pt", weights_only=True)
    assert ck["step"] == 3 and ck["eval_pending"]  # the training steps before the failed evaluation are kept
    crop.write_bytes(good)
    rc, out, err = cli(capsys, *args)
    assert rc == 0, err[-2000:]
    assert "resuming" in err and "score" in json.loads(out.strip().splitlines()[-1])


def test_text_file_named_jpg_in_extraction_worker(world, tmp_path, capsys):
    cat, syn = copy_set(world, tmp_path)
    crop = a_crop(syn, "Train_Set")
    crop.write_text("frame,valence,arousal\n")
    last = one_line_error(*cli(capsys, "extract", "--catalog", cat, "--dataset", "syn", "--encoder", world / "ft/best.pt",
                                "--out", tmp_path / "store", "num_workers=1", "splits=[train]")[::2], "extract", crop)
    assert "not an image file" in last
    assert json.loads((tmp_path / "store/store.json").read_text())["dataset"] == "syn"  # the store is intact


@pytest.mark.parametrize("kind", ["header_only", "folder", "dangling_link", "cr_only_bad_header"])
def test_annotation_faults_are_named(world, tmp_path, capsys, kind):
    cat, syn = copy_set(world, tmp_path)
    d = syn / "Annotations" / "VA_Estimation_Challenge" / "Train_Set"
    f = next(d.glob("*.txt"))
    if kind == "header_only": f.write_text("valence,arousal\n"); want = "only a header"
    elif kind == "folder": f = d / "extra.txt"; f.mkdir(); want = "is a folder"
    elif kind == "dangling_link": f = d / "extra.txt"; f.symlink_to(tmp_path / "gone.txt"); want = "link to a missing file"
    else: f.write_bytes(b"valence;arousal" + b";0.5;0.5" * 40000); want = "bad header"
    last = one_line_error(*cli(capsys, "finetune", "--catalog", cat, "--dataset", "syn", "--out", tmp_path / "r",
                                *TINY)[::2], "finetune", f, want)
    assert not (tmp_path / "r").exists()


def test_video_without_crops_folder_is_a_counted_warning(world, tmp_path):
    cat, syn = copy_set(world, tmp_path)
    video = next((syn / "Annotations" / "VA_Estimation_Challenge" / "Train_Set").glob("*.txt")).stem
    shutil.rmtree(syn / "cropped_aligned" / video)
    from abaw_workbench.annotations import read_split, split_summary
    from abaw_workbench.catalog import Catalog
    ds = read_split(Catalog.load(cat)["syn"], "train")
    assert ds.attrs["n_videos_without_crops"] == 1 and video in split_summary(ds)


@pytest.mark.parametrize("kind", ["latin1", "duplicate", "unset_var", "folder"])
def test_bad_catalog(tmp_path, capsys, kind):
    cat = tmp_path / "cat.yaml"
    if kind == "latin1": cat.write_bytes("entries:\n  x: {kind: run, path: r\xe9sultats}\n".encode("latin-1")); want = "not UTF-8"
    elif kind == "duplicate": cat.write_text("entries:\n  x: {kind: run, path: a}\n  x: {kind: run, path: b}\n"); want = "given twice"
    elif kind == "unset_var":
        os.environ.pop("ABAW_FAULTS_UNSET", None)
        cat.write_text("entries:\n  x: {kind: run, path: $ABAW_FAULTS_UNSET/r}\n"); want = "$ABAW_FAULTS_UNSET is not set"
    else: cat.mkdir(); want = "not found"
    one_line_error(*cli(capsys, "catalog", "--catalog", cat)[::2], "catalog", cat if kind != "unset_var" else cat.name, want)


def test_config_not_utf8(world, tmp_path, capsys):
    cfg = tmp_path / "ft.yaml"
    cfg.write_bytes("# r\xe9glages\nsize: micro\n".encode("latin-1"))
    one_line_error(*cli(capsys, "finetune", "--catalog", world / "cat.yaml", "--dataset", "syn", "--config", cfg,
                        "--out", tmp_path / "r")[::2], "finetune", cfg, "not UTF-8")


def test_damaged_audio_cache_entry_is_rebuilt(world, tmp_path, capsys):
    cat, syn = copy_set(world, tmp_path)
    args = ["extract", "--catalog", cat, "--dataset", "syn", "--encoder", world / "ft/best.pt", "num_workers=0",
            "splits=[validation]"]
    rc, _, err = cli(capsys, *args, "--out", tmp_path / "s1")
    assert rc == 0, err[-2000:]
    entries = sorted((tmp_path / "cache/audio").glob("*.npy"))
    assert entries
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    rc, _, err = cli(capsys, *args, "--out", tmp_path / "s2")
    assert rc == 0 and "damaged audio cache entry" in err and "Traceback" not in err, err[-2000:]
    import xarray as xr
    for v in (tmp_path / "s1/videos").glob("*.nc"):
        a, b = xr.load_dataset(v, engine="h5netcdf"), xr.load_dataset(tmp_path / "s2/videos" / v.name, engine="h5netcdf")
        assert a.identical(b), v


# -- bad checkpoints ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def other_size(world):
    "A checkpoint of another model size, under a file name with ' #' and ': ' (valid on POSIX, not valid YAML)."
    from abaw_workbench.mae import build_encoder
    p = world / "odd #1: tiny.pt"
    torch.save({"model": build_encoder("tiny", 32).state_dict()}, p)
    return p


def test_init_of_another_size_is_refused_with_shapes(world, other_size, tmp_path, capsys):
    last = one_line_error(*cli(capsys, "finetune", "--catalog", world / "cat.yaml", "--dataset", "syn", "--init", other_size,
                               "--out", tmp_path / "r", *TINY, "train.max_steps=1")[::2], "finetune", other_size)
    assert "checkpoint tensor(s) the model has no place for" in last and "--allow-partial-init" in last
    rc, _, err = cli(capsys, "finetune", "--catalog", world / "cat.yaml", "--dataset", "syn", "--init", other_size,
                     "--allow-partial-init", "--out", tmp_path / "r", *TINY, "train.max_steps=1")
    assert rc == 0 and "WARNING: partial load (allowed)" in err, err[-2000:]


def test_extract_checkpoint_faults(world, tmp_path, capsys):
    "The encoder's model is rebuilt from the file; weights that do not fill it are refused, naming the shapes."
    base = ["extract", "--catalog", world / "cat.yaml", "--dataset", "syn", "--out", tmp_path / "s"]
    rc, _, err = cli_usage(capsys, *base)
    assert rc == 2 and "--encoder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    from abaw_workbench.mae import build_encoder
    sd = build_encoder("micro", 32).state_dict()
    bad = tmp_path / "one_bad_tensor.pt"
    torch.save({"model": {**sd, "blocks.2.mlp.fc1.weight": torch.zeros(10, 192)}}, bad)
    one_line_error(*cli(capsys, *base, "--encoder", bad)[::2], "extract", bad, "blocks.2.mlp.fc1.weight (10, 192) vs model (768, 192)")
    holes = tmp_path / "missing_tensors.pt"
    torch.save({"model": {k: v for k, v in sd.items() if not k.startswith("blocks.3.")}}, holes)
    one_line_error(*cli(capsys, *base, "--encoder", holes)[::2], "extract", holes, "blocks.3.")
    empty = tmp_path / "empty.pt"; empty.write_bytes(b"")
    one_line_error(*cli(capsys, *base, "--encoder", empty)[::2], "extract", empty, "cannot read checkpoint")
    assert not (tmp_path / "s").exists()  # nothing written for a refused encoder


@pytest.mark.parametrize("kind", ["empty", "truncated", "other_model"])
def test_bad_checkpoint_on_resume(world, tmp_path, capsys, kind):
    run = tmp_path / "r"
    shutil.copytree(world / "ft", run)
    ck = run / "checkpoint.pt"
    if kind == "empty": ck.write_bytes(b"")
    elif kind == "truncated": ck.write_bytes(ck.read_bytes()[:5000])
    else:
        c = torch.load(ck, weights_only=True)
        c["model"]["encoder.pos_embed"] = torch.zeros(1, 17, 192)
        torch.save(c, ck)
    before = (run / "best.pt").read_bytes()
    last = one_line_error(*cli(capsys, "finetune", "--catalog", world / "cat.yaml", "--dataset", "syn", "--out", run, *TINY,
                               "train.max_steps=2")[::2], "finetune", ck)
    if kind == "other_model": assert "encoder.pos_embed (1, 17, 192) vs model (1, 5, 192)" in last
    assert (run / "best.pt").read_bytes() == before  # nothing already written is touched


# -- kills at random moments ----------------------------------------------------------------------

def _step(folder):
    "The step of a run folder's checkpoint (0: none yet)."
    try: return int(torch.load(folder / "checkpoint.pt", weights_only=True)["step"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError): return 0


def test_kills_at_random_moments(world, tmp_path):
    """Two SIGKILLs at random moments of training (seeded; each after the run wrote a checkpoint beyond the last kill's),
    then a clean finish that resumes: the weights of an unbroken run, no temporary file left."""
    steps = 12
    args = [str(ABAW), "finetune", "--catalog", str(world / "cat.yaml"), "--dataset", "syn", *TINY, "drop_path=0.3",
            "head_dropout=0.3", f"train.max_steps={steps}", "train.checkpoint_every=1", "train.eval_every=6", "train.seed=1"]
    full = subprocess.run(args + ["--out", str(tmp_path / "full")], env=ENV, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr[-2000:]
    rng = random.Random(14)
    out, killed_at = tmp_path / "killed", []
    for _ in range(2):
        p = subprocess.Popen(args + ["--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0, seen = time.time(), max(killed_at, default=0)
        while p.poll() is None and _step(out) <= seen and time.time() - t0 < 120: time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.2))   # a random moment after that checkpoint: a step, an evaluation, a write
        p.send_signal(signal.SIGKILL); p.wait()
        killed_at.append(_step(out))
    assert 0 < killed_at[0] < killed_at[1] < steps, killed_at   # both kills landed in training, after progress
    again = subprocess.run(args + ["--out", str(out)], env=ENV, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming {out / 'checkpoint.pt'} at step {killed_at[1]}/{steps}" in again.stderr, again.stderr[-2000:]
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (tmp_path / "full", out))
    for k in a["model"]: assert torch.equal(a["model"][k], b["model"][k]), k
    assert json.loads((out / "metrics.json").read_text()) == json.loads((tmp_path / "full/metrics.json").read_text())
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_stale_tmp_of_a_dead_writer_is_removed(world, tmp_path, capsys):
    run = tmp_path / "r"
    shutil.copytree(world / "ft", run)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (run / f".checkpoint.pt.{dead}-abc.tmp").write_bytes(b"half a checkpoint")
    rc, _, err = cli(capsys, "finetune", "--catalog", world / "cat.yaml", "--dataset", "syn", "--out", run, *TINY, "train.max_steps=2")
    assert rc == 0, err[-2000:]
    assert not list(run.glob(".*.tmp"))


def test_generated_folders_are_not_private(world):
    umask = os.umask(0); os.umask(umask)
    assert (world / "syn").stat().st_mode & 0o777 == 0o777 & ~umask


# -- permissions, a file for a folder, a full disk -----------------------------------------------

def test_output_folder_is_a_file(world, tmp_path, capsys):
    f = tmp_path / "notafolder"; f.write_text("keep me\n")
    one_line_error(*cli(capsys, "finetune", "--catalog", world / "cat.yaml", "--dataset", "syn", "--out", f / "run", *TINY,
                        "train.max_steps=1")[::2], "finetune", f, "a file stands where a folder is expected")
    assert f.read_text() == "keep me\n"


def _mount_namespace() -> list:
    "A command prefix giving a process a mount namespace of its own where it may mount a tmpfs (as root, else as a user namespace's root)."
    for prefix in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        r = subprocess.run([*prefix, "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d"'], capture_output=True, text=True)
        if r.returncode == 0: return prefix
    pytest.skip(f"cannot mount a tmpfs, not even in a user namespace ({r.stderr.strip()[-200:] or 'unshare failed'}): "
                "the fault needs a small or read-only file system")


def in_small_fs(fs, opts, args, after=""):
    "Run `abaw ARGS` in its own mount namespace with a tmpfs mounted at `fs` (`opts`), then the shell lines `after` there."
    script = f'mount -t tmpfs -o {opts} tmpfs "$0" || exit 99; "$@"; rc=$?; {after}\nexit $rc'
    fs.mkdir(parents=True, exist_ok=True)
    return subprocess.run([*_mount_namespace(), "sh", "-c", script, str(fs), str(ABAW), *map(str, args)],
                          capture_output=True, text=True, env=ENV)


def test_read_only_output_folder(world, tmp_path):
    ro = tmp_path / "ro"
    r = in_small_fs(ro, "ro,size=1m", ["finetune", "--catalog", world / "cat.yaml", "--dataset", "syn", "--out", ro / "run",
                                        *TINY, "train.max_steps=1"])
    subprocess_error(r, "finetune", ro / "run", "read-only")


def test_disk_full(world, tmp_path):
    small = tmp_path / "small"
    r = in_small_fs(small, "size=1m", ["finetune", "--catalog", world / "cat.yaml", "--dataset", "syn", "--out", small / "run",
                                        *TINY, "train.max_steps=1"],
                    after=f'echo "== config"; cat "{small}/run/config.json"; echo "== files"; ls -a "{small}/run"')
    last = subprocess_error(r, "finetune", "the disk is full")
    assert str(small / "run") in last
    config, files = r.stdout.split("== config", 1)[1].split("== files")
    assert json.loads(config)["max_steps"] == 1                      # written before: intact
    assert not [f for f in files.split() if f.endswith(".tmp")], files   # no temporary file left


def test_unreadable_catalog_for_another_user(tmp_path):
    if os.geteuid() != 0 or not shutil.which("setpriv"): pytest.skip("needs root and setpriv to act as another user")
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="abaw-faults-"))  # pytest's own folders are private to root: nobody could not even look
    d.chmod(0o755)
    cat = d / "cat.yaml"
    cat.write_text("entries:\n  x: {kind: run, path: r}\n"); cat.chmod(0o600)
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(ABAW), "--version"],
                           capture_output=True, text=True, env=ENV)
    if probe.returncode: pytest.skip(f"the abaw command does not run as nobody here ({probe.stderr.strip()[-200:]})")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(ABAW), "catalog", "--catalog", str(cat)],
                       capture_output=True, text=True, env=ENV)
    shutil.rmtree(d)
    subprocess_error(r, "catalog", cat, "not readable")


def test_extraction_killed_at_a_random_moment_resumes_to_the_same_store(world, tmp_path):
    args = [str(ABAW), "extract", "--catalog", str(world / "cat.yaml"), "--dataset", "syn", "--encoder", str(world / "ft/best.pt"),
            "num_workers=0", "batch_size=8"]
    full = subprocess.run(args + ["--out", str(tmp_path / "full")], env=ENV, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr[-2000:]
    p = subprocess.Popen(args + ["--out", str(tmp_path / "killed")], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.Random(6).uniform(2.0, 4.0))
    p.send_signal(signal.SIGKILL); p.wait()
    again = subprocess.run(args + ["--out", str(tmp_path / "killed")], env=ENV, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    import xarray as xr
    names = sorted(v.name for v in (tmp_path / "full/videos").glob("*.nc"))
    assert names and names == sorted(v.name for v in (tmp_path / "killed/videos").glob("*.nc"))
    for n in names:
        a = xr.load_dataset(tmp_path / "full/videos" / n, engine="h5netcdf")
        b = xr.load_dataset(tmp_path / "killed/videos" / n, engine="h5netcdf")
        assert a.identical(b), n
    assert not list((tmp_path / "killed").rglob(".*.tmp"))


def _children(pid):
    "Process ids whose parent is `pid` (from /proc)."
    kids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit(): continue
        try: stat = (d / "stat").read_text()
        except OSError: continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid: kids.append(int(d.name))
    return kids


def test_a_killed_loader_worker_is_one_line(world, tmp_path):
    "A DataLoader worker killed (as the out-of-memory killer would) ends the command with one line, the store intact."
    if not Path("/proc/self/stat").exists(): pytest.skip("needs /proc to find the worker process")
    p = subprocess.Popen([str(ABAW), "extract", "--catalog", str(world / "cat.yaml"), "--dataset", "syn", "--encoder",
                          str(world / "ft/best.pt"), "--out", str(tmp_path / "store"), "num_workers=1", "batch_size=1"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0, killed = time.time(), None
    while p.poll() is None and time.time() - t0 < 120 and killed is None:
        kids = _children(p.pid)
        if kids and (tmp_path / "store/store.json").exists():
            time.sleep(0.3)
            os.kill(kids[0], signal.SIGKILL); killed = kids[0]
        time.sleep(0.02)
    out, err = p.communicate(timeout=120)
    if killed is None: pytest.skip("the extraction ended before its worker could be killed")
    one_line_error(p.returncode, err, "extract", "worker process died", "num_workers")
    json.loads((tmp_path / "store/store.json").read_text())
