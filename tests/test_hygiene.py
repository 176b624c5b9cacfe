"""Repository hygiene: notebooks are the source of truth, so CI fails when they are unclean,
when the package or README is out of sync with them, or when they carry saved widget state."""
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
BIN = Path(sys.executable).parent
MAX_OUTPUT_BYTES = 300_000  # outputs are documentation; keep them small


def notebooks():
    return sorted(p for p in NBS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _copy_project(tmp: Path) -> Path:
    shutil.copy(ROOT / "settings.ini", tmp / "settings.ini")
    shutil.copytree(NBS, tmp / "nbs", ignore=shutil.ignore_patterns(".ipynb_checkpoints", ".last_checked"))
    return tmp


def _run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout}\n{r.stderr}"


def test_notebooks_are_clean(tmp_path):
    "nbdev_clean would change nothing (cell metadata, execution counts, ids in reprs)."
    tmp = _copy_project(tmp_path)
    _run([BIN / "nbdev_clean"], tmp)
    dirty = [str(p.relative_to(ROOT)) for p in notebooks()
             if p.read_bytes() != (tmp / p.relative_to(ROOT)).read_bytes()]
    assert not dirty, f"notebooks not clean (run `make export` or nbdev_clean): {', '.join(dirty)}"


def test_package_in_sync_with_notebooks(tmp_path):
    "nbdev_export would change nothing in abaw_workbench/ (no hand edits, no stale modules)."
    tmp = _copy_project(tmp_path)
    (tmp / "abaw_workbench").mkdir()
    shutil.copy(ROOT / "abaw_workbench" / "__init__.py", tmp / "abaw_workbench" / "__init__.py")
    _run([BIN / "nbdev_export"], tmp)
    ours = {p.relative_to(ROOT / "abaw_workbench") for p in (ROOT / "abaw_workbench").rglob("*.py")}
    theirs = {p.relative_to(tmp / "abaw_workbench") for p in (tmp / "abaw_workbench").rglob("*.py")}
    problems = [f"abaw_workbench/{p}: not exported by any notebook" for p in sorted(ours - theirs)]
    problems += [f"abaw_workbench/{p}: missing (run nbdev_export)" for p in sorted(theirs - ours)]
    problems += [f"abaw_workbench/{p}: differs from its notebook (edit the notebook, or run nbdev_update, then nbdev_export)"
                 for p in sorted(ours & theirs)
                 if (ROOT / "abaw_workbench" / p).read_bytes() != (tmp / "abaw_workbench" / p).read_bytes()]
    assert not problems, "package out of sync with notebooks:\n" + "\n".join(problems)


def test_readme_in_sync_with_index():
    "README.md is generated from nbs/index.ipynb."
    from abaw_workbench.docs import render_readme
    assert (ROOT / "README.md").read_text(encoding="utf-8") == render_readme(ROOT), \
        "README.md out of sync with nbs/index.ipynb (run `make export` or `abaw docs --readme-only`)"


def test_readme_opens_with_the_two_commands():
    head = "\n".join((ROOT / "README.md").read_text().splitlines()[:12])
    assert "make demo" in head and "make test" in head


@pytest.mark.parametrize("nb", notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_has_no_saved_widget_state_or_large_outputs(nb):
    d = json.loads(nb.read_text(encoding="utf-8"))
    assert "widgets" not in d.get("metadata", {}), f"{nb.relative_to(ROOT)}: saved widget state in metadata (clear it)"
    assert d.get("metadata", {}).get("kernelspec", {}).get("name") == "python3", \
        f"{nb.relative_to(ROOT)}: kernelspec must be python3 (else JupyterLab asks for a kernel)"
    for i, c in enumerate(d["cells"]):
        size = len(json.dumps(c.get("outputs", [])))
        assert size <= MAX_OUTPUT_BYTES, f"{nb.relative_to(ROOT)}: cell {i} has {size} bytes of outputs (limit {MAX_OUTPUT_BYTES})"


def test_no_paired_text_files_in_nbs():
    stray = [str(p.relative_to(ROOT)) for p in NBS.rglob("*.py") if ".ipynb_checkpoints" not in p.parts]
    assert not stray, f"paired/stray .py files in nbs/ (notebooks are the source): {stray}"


MAX_CELL_LINES, MAX_MEDIAN_CELL_LINES = 60, 12  # fastcore's notebooks: one definition per export cell, about 10 lines


def export_cells():
    "(notebook, cell index, lines without `#|` directives) of every `#| export` / `#| exporti` code cell."
    out = []
    for nb in notebooks():
        for i, c in enumerate(json.loads(nb.read_text(encoding="utf-8"))["cells"]):
            lines = "".join(c["source"]).splitlines()
            if c["cell_type"] != "code" or not any(l.replace(" ", "").startswith("#|export") for l in lines if l.startswith("#|")): continue
            out.append((str(nb.relative_to(ROOT)), i, sum(not l.strip().startswith("#|") for l in lines)))
    return out


def test_export_cells_are_fastcore_sized():
    "Issue 27: no export cell over 60 lines, median at most 12 (one definition per export cell, methods in `@patch` cells)."
    import statistics
    cells = export_cells()
    long = [f"{nb} cell {i}: {n} lines" for nb, i, n in sorted(cells, key=lambda r: -r[2]) if n > MAX_CELL_LINES]
    median = statistics.median(n for *_, n in cells)
    assert not long and median <= MAX_MEDIAN_CELL_LINES, \
        (f"export cells: median {median} lines (limit {MAX_MEDIAN_CELL_LINES}); over {MAX_CELL_LINES} lines:\n" + "\n".join(long))
