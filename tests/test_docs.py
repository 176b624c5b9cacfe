"""The documentation site: built from nbs/ into a temporary folder, then checked as a reader would meet it:
every notebook has a page, links and anchors resolve, nothing is loaded from the network, a failing cell
fails the build, and a tutorial's plotly figure draws in headless Chromium with the network cut off."""
import json, re, subprocess
from pathlib import Path

import pytest

from abaw_workbench.core import AbawError
from abaw_workbench.docs import build_docs, check_site, page_url

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"  # screenshots of failed browser checks (git-ignored)


def _git_status():
    r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The project's site, built once for this module; building it must leave tracked files alone."
    before, readme = _git_status(), (ROOT / "README.md").read_bytes()
    out = tmp_path_factory.mktemp("docs") / "site"
    build_docs(out, ROOT)
    assert (ROOT / "README.md").read_bytes() == readme, "building the docs rewrote README.md"
    assert _git_status() == before, "building the docs changed tracked files"
    return out


def _notebooks():
    return sorted(p.relative_to(NBS) for p in NBS.rglob("*.ipynb")
                  if not any(x.startswith((".", "_")) for x in p.relative_to(NBS).parts))


def test_every_notebook_has_a_page_but_experiments(site):
    missing, extra = [], []
    for nb in _notebooks():
        page = site / page_url(nb)
        if nb.parts[0] == "experiments":
            if page.exists(): extra.append(str(nb))
        elif not page.exists(): missing.append(f"{nb} -> {page_url(nb)}")
    assert not missing, f"notebooks without a page: {missing}"
    assert not extra, f"experiment notebooks with a page: {extra}"


def test_links_anchors_and_offline_assets(site):
    assert check_site(site) == []


def test_pages_reference_no_external_script_stylesheet_or_font(site):
    "A second, blunt look at the raw text of every tag that loads something (check_site parses the HTML)."
    tag = re.compile(r"<(script|link|img|iframe|source)\b[^>]*>", re.I)
    remote = re.compile(r"(src|href)\s*=\s*[\"']?(https?:)?//", re.I)
    bad = [f"{f.relative_to(site)}: {m.group(0)[:120]}" for f in site.rglob("*.html")
           for m in tag.finditer(f.read_text(encoding="utf-8")) if remote.search(m.group(0))]
    bad += [f"{f.relative_to(site)}: url(...) or @import" for f in site.rglob("*.css")
            if re.search(r"@import|url\(\s*[\"']?(https?:)?//", f.read_text(encoding="utf-8"))]
    assert not bad, bad


def test_structure_of_the_site(site):
    home = (site / "index.html").read_text(encoding="utf-8")
    for group in ("Tutorials", "Explanation", "Reference"):
        assert f"<h2>{group}</h2>" in home, f"sidebar has no {group} group"
    assert (site / "assets/plotly.min.js").stat().st_size > 1_000_000
    assert not list(site.rglob("plotly*.js"))[1:], "plotly.js copied more than once"
    metrics = (site / "metrics.html").read_text(encoding="utf-8")
    assert '<section class="api"><h3 id="au_f1">' in metrics, "no reference entry for metrics.au_f1"
    assert "one threshold, a sequence of 12, or a dict by AU name" in metrics, "parameter comments missing from the table"
    assert "#| export" not in metrics and "#| hide" not in metrics
    index = (site / "assets/search-index.js").read_text(encoding="utf-8")
    entries = json.loads(index.removeprefix("window.ABAW_SEARCH_INDEX = ").rstrip().removesuffix(";"))
    assert any(e["u"] == "metrics.html#au_f1" for e in entries)


def _nb(*cells):
    return {"cells": [dict(c, metadata={}, **({"outputs": c.get("outputs", []), "execution_count": None} if c["cell_type"] == "code" else {}))
                      for c in cells],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _write(path: Path, nb):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb), encoding="utf-8")


def _mini_project(tmp: Path) -> Path:
    _write(tmp / "nbs/index.ipynb", _nb({"cell_type": "markdown", "source": "# Home\n\nSee [the tour](tutorials/01_tour.ipynb)."}))
    _write(tmp / "nbs/tutorials/01_tour.ipynb", _nb({"cell_type": "markdown", "source": "# Tour\n\n## Start"}))
    _write(tmp / "nbs/explanation/why.ipynb", _nb({"cell_type": "markdown", "source": "# Why\n\nBack to [the tour](../tutorials/01_tour.ipynb#start)."}))
    _write(tmp / "nbs/experiments/grid.ipynb", _nb({"cell_type": "code", "source": "x = 1"}))
    return tmp


def test_new_notebooks_are_picked_up_by_folder(tmp_path):
    root = _mini_project(tmp_path)
    _write(root / "nbs/tutorials/05_new.ipynb", _nb({"cell_type": "markdown", "source": "# A new tutorial"}))
    build_docs(root / "site", root)
    site = root / "site"
    assert (site / "tutorials/new.html").exists() and (site / "explanation/why.html").exists()
    assert not (site / "experiments").exists()
    home = (site / "index.html").read_text()
    assert home.index("<h2>Tutorials</h2>") < home.index("A new tutorial") < home.index("<h2>Explanation</h2>")
    assert check_site(site) == []


def test_a_failing_cell_fails_the_build_naming_the_notebook(tmp_path):
    root = _mini_project(tmp_path)
    _write(root / "nbs/tutorials/02_broken.ipynb", _nb(
        {"cell_type": "markdown", "source": "# Broken"},
        {"cell_type": "code", "source": "1 / 0", "outputs": [
            {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": []}]}))
    with pytest.raises(AbawError, match=r"tutorials/02_broken\.ipynb: cell 1 has an error output \(ZeroDivisionError"):
        build_docs(root / "site", root)


def test_broken_links_are_found(tmp_path):
    root = _mini_project(tmp_path)
    _write(root / "nbs/explanation/why.ipynb", _nb({"cell_type": "markdown", "source": "# Why\n\n[gone](../tutorials/01_tour.ipynb#nowhere), [missing](nope.ipynb)"}))
    build_docs(root / "site", root)
    problems = check_site(root / "site")
    assert any("#nowhere" in p for p in problems) and any("nope.ipynb" in p for p in problems), problems


def test_the_build_refuses_to_empty_a_foreign_folder(tmp_path):
    root = _mini_project(tmp_path)
    (root / "mine").mkdir(); (root / "mine/keep.py").write_text("x = 1")
    with pytest.raises(AbawError, match="not written by `abaw docs`"):
        build_docs(root / "mine", root)
    assert (root / "mine/keep.py").exists()
    (root / "old").mkdir(); (root / "old/stale.html").write_text("<p>old</p>")  # an earlier build, without the marker
    build_docs(root / "old", root)
    assert not (root / "old/stale.html").exists() and (root / "old/index.html").exists()


# --- the pages in a real browser, offline -------------------------------------------------------------

def _plotly_tutorials(site):
    return sorted(p for p in (site / "tutorials").glob("*.html") if "plotly-graph-div" in p.read_text(encoding="utf-8"))


def test_tutorial_plotly_figures_render_offline_in_chromium(site):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: `make browser` (apt-get install chromium) installs it"
    from playwright.sync_api import sync_playwright
    pages = _plotly_tutorials(site)
    assert pages, "no tutorial page holds a plotly figure"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            blocked = []
            def route(r):
                if r.request.url.startswith(("file:", "data:", "blob:")): r.continue_()
                else: blocked.append(r.request.url); r.abort()
            ctx.route("**/*", route)
            page = ctx.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            for f in pages:
                shot = ARTIFACTS / f"docs-{f.stem}.png"
                try:
                    page.goto(f.as_uri())
                    n = page.locator(".plotly-graph-div").count()
                    page.wait_for_function(f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {n}", timeout=20_000)
                    drawn = page.evaluate("""() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d =>
                        (d._fullData || []).length > 0 && d.querySelectorAll('.trace, .point, path.js-line, .heatmaplayer image').length > 0)""")
                    assert all(drawn), f"{f.name}: figures without drawn traces: {drawn}"
                    assert not errors, f"{f.name}: script errors: {errors}"
                    assert not blocked, f"{f.name}: requested the network: {blocked}"
                except Exception:
                    page.screenshot(path=str(shot), full_page=True)
                    raise AssertionError(f"{f.name}: plotly figure not rendered offline (screenshot: {shot})")
            # search works from file:// too
            page.goto((site / "index.html").as_uri())
            page.fill("#search", "concordance")
            page.wait_for_selector("#search-results li a", timeout=5_000)
            href = page.locator("#search-results li a").first.get_attribute("href")
            assert href and not href.startswith("http"), href
        finally:
            browser.close()


def test_maths_renders_as_mathml_in_chromium(site):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: `make browser` installs it"
    from playwright.sync_api import sync_playwright
    pages = sorted(p for p in site.rglob("*.html") if "<math" in p.read_text(encoding="utf-8"))
    assert pages, "no page holds maths"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "data:")) else r.abort())
            page.goto(pages[0].as_uri())
            w = page.evaluate("() => Math.max(...Array.from(document.querySelectorAll('math')).map(m => m.getBoundingClientRect().width))")
            if not w > 5:
                ARTIFACTS.mkdir(exist_ok=True); page.screenshot(path=str(ARTIFACTS / "docs-maths.png"), full_page=True)
            assert w > 5, f"{pages[0].name}: MathML not laid out (widest <math> {w}px)"
        finally:
            browser.close()
