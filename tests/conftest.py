"""What the tests of this folder share: the report of checks this machine could not run, the tiny trained run.

Catalogs of small synthetic sets come from `abaw_workbench.synth.synth_catalog` (the demo's quick run uses it too)."""

import pytest


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    "Every skipped test with its reason, at the end: a check the machine could not run is named, not hidden in a count."
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped: return
    terminalreporter.section(f"{len(skipped)} check(s) skipped: what this machine lacks", yellow=True)
    for r in skipped:
        reason = r.longrepr[2] if isinstance(r.longrepr, tuple) else str(r.longrepr)
        terminalreporter.write_line(f"{r.nodeid}: {reason}")


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory):
    "A tiny demo run and its catalog (`demo.tiny_run`), trained once for every test module that predicts with it: (run folder, catalog file)."
    from abaw_workbench.demo import tiny_run
    return tiny_run(tmp_path_factory.mktemp("tiny_run"))
