"""What the browser tests share: JupyterLab on loopback for a copy of a notebook, headless Debian Chromium through
playwright, the notebook opened and run once its kernel is idle, screenshots of failures.

Recipe and pitfalls: ../shared/docs/browser-testing.md.
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "abaw-browser-test"
SHOTS = ROOT / ".cache" / "browser-screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def lab_settings(d: Path):
    "Lab settings for the test: the project's (no news pop-up), autosave off, every cell rendered (no windowing)."
    shutil.copytree(ROOT / "lab" / "user-settings", d)
    for plugin, values in {"docmanager-extension/plugin": {"autosave": False},
                           "notebook-extension/tracker": {"windowingMode": "none"}}.items():
        p = d / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        p.parent.mkdir(parents=True, exist_ok=True); p.write_text(json.dumps(values))


@contextmanager
def jupyter_lab(notebook: Path, env: dict | None = None, tmp: Path | None = None):
    "JupyterLab serving a copy of `notebook` (kernel environment: ours plus `env`); yields (url, notebook name)."
    tmp = Path(tmp or tempfile.mkdtemp(prefix="abaw-lab-"))
    (tmp / "root").mkdir(exist_ok=True); shutil.copy(notebook, tmp / "root" / Path(notebook).name)
    lab_settings(tmp / "settings")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp), **(env or {})}
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--ip", "127.0.0.1", f"--port={port}", "--no-browser",
           "--allow-root", f"--ServerApp.root_dir={tmp / 'root'}", f"--IdentityProvider.token={TOKEN}",
           f"--LabApp.user_settings_dir={tmp / 'settings'}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None"]
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp / "root")
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=1); break
            except OSError:
                if proc.poll() is not None: raise RuntimeError(f"jupyter lab exited: {(tmp / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url, Path(notebook).name
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def shot(pg, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    try: pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    except Exception: pass


@contextmanager
def notebook_page(url: str, name: str, ready: list, shot_name: str = "setup"):
    "A Chromium page with the notebook open and run (after its kernel is idle), once every selector of `ready` is attached."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        pg = browser.new_page(viewport={"width": 1600, "height": 1400})
        pg.abaw_errors = []
        pg.on("pageerror", lambda e: pg.abaw_errors.append(str(e)))
        try:
            pg.goto(f"{url}/lab/tree/{name}?token={TOKEN}&reset")
            pg.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                                 " && window.jupyterapp.shell.currentWidget.sessionContext"
                                 " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                                 " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                                 " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                                 timeout=60_000)
            pg.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            for sel in ready: pg.wait_for_selector(sel, state="attached", timeout=90_000)
        except Exception:
            shot(pg, shot_name); raise
        try: yield pg
        finally: browser.close()


def output_stderr(pg) -> list:
    "The text of the notebook's stderr outputs."
    return pg.evaluate("() => Array.from(document.querySelectorAll('.jp-OutputArea-output[data-mime-type=\"application/vnd.jupyter.stderr\"]')).map(e => e.textContent)")
