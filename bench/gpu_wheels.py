"""The wheels a lent GPU machine lacks for this workbench: downloaded here, installed there (standard library only).

A lent GPU machine (../shared/docs/gpu.md) has PyTorch's stack in its `python3` (3.12) but not every package the
workbench imports, and it reaches no package registry. So:

    .venv/bin/python bench/gpu_wheels.py download .whl  # here: into .whl/ (git-ignored), named in the run's `carry`
    python3 bench/gpu_wheels.py install .whl /tmp/site  # there, before anything imports the workbench;
    export PYTHONPATH=/tmp/site:$PWD                    # then `python3 bench/gpu_check.py --out $OUT`

Run `download` with the project's environment: it takes the versions installed there, the ones the tests ran.
(`bench/gpu_run.sh` does the part that runs there.) `install` installs a wheel only where the machine lacks its
package or has a version that `settings.ini` does not accept, so nothing the machine's PyTorch stack relies on is
shadowed. `tests/test_gpu_check.py` runs `gpu_run.sh` in a simulated lent machine (the packages below and nothing
else), so an import added to the workbench that these wheels do not bring fails a test here, not the GPU session.
"""
import argparse, configparser, re, subprocess, sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What the lent machine's python3 has, with what those packages require (gpu.md, "What is there").
MACHINE = ["torch", "torchvision", "timm", "numpy", "scipy", "scikit-learn", "pandas", "xarray", "h5py", "pyyaml", "tqdm",
           "psutil", "opencv-python-headless", "safetensors", "transformers"]
# Not named there but present: gpu.md's wheels (the first part of WHEELS) were enough for `abaw demo` on it, and these
# are what those wheels require beyond MACHINE (librosa's numba, pooch's requests). The device tool's list of the
# machines' packages (its KINDS.md, read there on 2026-11-17, the same image for the H100 and the H200) holds every one
# of MACHINE and ASSUMED and none of WHEELS.
ASSUMED = ["numba", "llvmlite", "lazy-loader", "msgpack", "requests", "urllib3", "certifi", "charset-normalizer"]
# What this project brings: gpu.md's list, then what the workbench imports since that list was made.
WHEELS = ["av", "plotly", "librosa", "soundfile", "soxr", "audioread", "pooch", "decorator", "h5netcdf", "platformdirs", "cffi",
          "pycparser", "fastcore", "facenet-pytorch"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
CARRY_MIB = 64   # what a `run` call's carry may hold in all


def canonical(name: str) -> str: return re.sub(r"[-_.]+", "-", name).lower()


def accepted() -> dict:
    "The project's requirement for each package `settings.ini` names (canonical name -> requirement string)."
    ini = configparser.ConfigParser(); ini.read(ROOT / "settings.ini")
    reqs = ini["DEFAULT"]["requirements"].split() + ini["DEFAULT"]["dev_requirements"].split()
    return {canonical(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]): r for r in reqs}


def pinned(name: str, want: dict) -> str:
    "The version of `name` installed beside this script (the one the tests here ran), else what settings.ini accepts."
    try: return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError: return want.get(canonical(name), name)


def download(folder: Path, python: str = "3.12") -> list:
    "Download WHEELS for a Linux x86-64 CPython `python` into `folder`, at the versions of the interpreter running this."
    want = accepted()
    reqs = [pinned(n, want) for n in WHEELS]
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", python,
                    "--implementation", "cp", *plat, "-d", str(folder), *reqs], check=True)
    files = sorted(folder.glob("*.whl"))
    mib = sum(f.stat().st_size for f in files) / 2**20
    print(f"{len(files)} wheels, {mib:.1f} MiB in {folder}" + (f": over the {CARRY_MIB} MiB a run's carry holds" if mib > CARRY_MIB else ""))
    if mib > CARRY_MIB: sys.exit(1)
    return files


def needs(name: str, have: str|None, requirement: str|None) -> bool:
    "Whether a package present at version `have` (None: absent) must be installed to meet `requirement`."
    if have is None: return True
    if not requirement: return False
    try: from packaging.requirements import Requirement
    except ImportError: return False   # no way to compare versions: the machine's own package is kept
    return not Requirement(requirement).specifier.contains(have, prereleases=True)


def install(folder: Path, target: Path) -> list:
    "Install the wheels in `folder` that this interpreter lacks (or has at a version the project rejects) into `target`."
    want, chosen = accepted(), []
    wheels = sorted(folder.glob("*.whl"))
    if not wheels: sys.exit(f"{folder}: no wheels (run `.venv/bin/python bench/gpu_wheels.py download {folder}` where PyPI is reachable)")
    for w in wheels:
        name = canonical(w.name.split("-")[0])
        try: have = metadata.version(name)
        except metadata.PackageNotFoundError: have = None
        use = needs(name, have, want.get(name))
        print(f"{name:<18} machine: {have or '-':<12} {'install ' + w.name if use else 'kept'}")
        if use: chosen.append(w)
    if chosen:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target),
                        *map(str, chosen)], check=True)
    return chosen


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="here: download the wheels into FOLDER")
    d.add_argument("folder", type=Path); d.add_argument("--python", default="3.12", help="the lent machine's Python (gpu.md: 3.12)")
    i = sub.add_parser("install", help="on the lent machine: install the wheels it lacks from FOLDER into TARGET")
    i.add_argument("folder", type=Path); i.add_argument("target", type=Path)
    a = ap.parse_args(argv)
    if a.cmd == "download": a.folder.mkdir(parents=True, exist_ok=True); download(a.folder, a.python)
    else: install(a.folder, a.target)


if __name__ == "__main__":
    main()
