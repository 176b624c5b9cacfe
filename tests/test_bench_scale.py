"""`bench/bench_scale.py --videos 40`: the Aff-Wild2-sized benchmark at a size CI runs, checking its own figures
(the data set it built, the stages' frame counts, the eval_frames subsample, streamed windows equal to windows
read into memory, fusion streaming at >= 0.85 of its bare step)."""
import json, subprocess, sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_scale.py"


def test_bench_scale_40_videos(tmp_path):
    # 9 rounds, not the default 5: the ratio is the median over rounds, and one round on 2 shared cores ranges 0.72-1.24;
    # with 5 a run of unchanged code once read 0.79 (9 rounds cost about 10 s more)
    r = subprocess.run([sys.executable, str(BENCH), "--videos", "40", "--rounds", "9", "--tmp", str(tmp_path)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, f"bench_scale.py --videos 40 failed:\n{r.stdout[-4000:]}\n{r.stderr[-3000:]}"
    checks = [l for l in r.stdout.splitlines() if l.startswith("check: ")]
    assert len(checks) == 8 and all(l.endswith(": ok") for l in checks), "\n".join(checks)
    rows = {d["metric"]: d for d in map(json.loads, (l for l in r.stdout.splitlines() if l.startswith('{"bench"')))}
    loop = next(d for m, d in rows.items() if m.startswith("fusion loop streaming"))
    assert loop["ratio"] >= 0.85 and loop["target"] == ">= 0.85"
    for stage in ("read", "finetune", "extract", "fusion"):   # every stage's peak, measured in its own process
        assert rows[f"{stage}: peak memory (its imports: the baseline)"]["value"] >= rows[f"{stage}: peak memory (its imports: the baseline)"]["baseline"] > 0
    assert not list(tmp_path.iterdir()), "the benchmark's data set was not removed"
