"""What the tests of this folder share: the report of checks this machine could not run.

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
