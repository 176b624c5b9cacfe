"""The `abaw` command as a user runs it: exit codes and one-line messages."""
import subprocess, sys
from pathlib import Path

import pytest

ABAW = Path(sys.executable).parent / "abaw"


def run(*args, **kw):
    return subprocess.run([str(ABAW), *args], capture_output=True, text=True, **kw)


def test_help_lists_every_stage_that_works():
    from abaw_workbench.cli import COMMANDS, available_commands
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("catalog", "synth", "pretrain", "finetune", "extract", "fuse", "score", "demo"):
        assert f"  {cmd} " in r.stdout
    for cmd in set(COMMANDS) - set(available_commands()): assert f"  {cmd} " not in r.stdout, cmd


def test_every_listed_command_has_help():
    from abaw_workbench.cli import available_commands
    for cmd in available_commands():
        r = run(cmd, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"usage: abaw {cmd}"), (cmd, r.stderr)


def test_bad_usage_exits_2_with_one_line():
    for args in (["nonsense"], ["catalog", "--no-such-flag"]):
        r = run(*args)
        assert r.returncode == 2, args
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def test_user_error_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "data_catalog.yaml"
    bad.write_text("entries:\n  x: {kind: bogus, path: a}\n")
    r = run("catalog", "--catalog", str(bad))
    assert r.returncode == 1
    assert r.stderr == "abaw catalog: error: data_catalog.yaml: entry 'x': key 'kind': unknown kind 'bogus' (one of affwild2, image_folder, checkpoint, feature_store, run)\n"


def test_catalog_check_reports_missing_inputs(tmp_path):
    cat = tmp_path / "data_catalog.yaml"
    cat.write_text("entries:\n  w: {kind: checkpoint, path: nope.pth}\n  r: {kind: run, path: runs/x}\n")
    r = run("catalog", "--catalog", str(cat))
    assert r.returncode == 0 and "missing" in r.stdout and "not written" in r.stdout
    r = run("catalog", "--catalog", str(cat), "--check")
    assert r.returncode == 1 and "w" in r.stderr


def test_catalog_from_another_directory_uses_env(tmp_path):
    cat = tmp_path / "c.yaml"
    cat.write_text("entries:\n  r: {kind: run, path: runs/x}\n")
    r = run("catalog", cwd=tmp_path, env={"ABAW_CATALOG": str(cat), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and str(tmp_path / "runs" / "x") in r.stdout
