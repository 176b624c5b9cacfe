"""Thread settings on a quiet and on a busy machine: what `abaw`'s thread policy buys.

A bare training step of two of the demo's models (the fusion network, 32 windows x 32 frames of
1,568-d features; the fine-tuning ViT at 112 px, batch 32) is timed in a fresh process for each
setting: torch threads (1, or one per core) x OpenMP waiting (libgomp's default, which spins up to
300,000 times at every barrier; a short spin, GOMP_SPINCOUNT=1000; or OMP_WAIT_POLICY=PASSIVE, which
sleeps at once) x machine state (alone, or beside a competing process:
a 2-thread torch matrix-multiply loop, like a second training job or a busy laptop). Settings are
run in interleaved order and each figure is the median of the rounds' per-step medians.

`abaw` itself uses one thread per core with the short spin (unless the environment sets
`OMP_NUM_THREADS`, `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT`); this table is the evidence for that choice.

A second table (`--only between`) shows the rest of the policy: what numpy work *between* forwards does to
them, as in feature extraction, where each video's audio features (librosa and scipy, numpy's OpenBLAS)
are computed between encoder batches. A fresh process per setting times 30 forwards of the demo's
encoder (micro ViT, 112 px, batch 64), once back to back and once with one video's audio features
(7 s of sound) after every third batch, for OpenBLAS's default spin after a call (2^28 cycles) or a short
one (OPENBLAS_THREAD_TIMEOUT=4), and glibc's default of returning freed memory at once or keeping it
(`abaw_workbench.cli._keep_freed_memory`). The ratio is the forwards' time back to back / between audio work.

    python bench/bench_threads.py [--rounds 2] [--steps 6] [--only threads|between]
"""
import argparse, itertools, json, os, statistics, subprocess, sys, time

CHILD = r"""
import sys, time, json, torch
threads, model, steps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
from abaw_workbench.train import bare_step_seconds
torch.manual_seed(0)
if model == "fusion":
    from abaw_workbench.temporal import FusionConfig, FusionNet
    net = FusionNet(1568, 138, ["au"], FusionConfig(window=32, modalities="audio_visual"))
    x = (torch.randn(32, 32, 1568), torch.randn(32, 32, 138), torch.ones(32, 32, dtype=torch.bool))
else:
    from abaw_workbench.tasks import FrameModel
    from abaw_workbench.mae import build_encoder
    net = FrameModel(build_encoder("micro", 112, drop_path=0.1), ["au", "expr", "va"], pool="grid", grid_dim=32)
    x = (torch.randn(32, 3, 112, 112),)
print(json.dumps({"s": bare_step_seconds(net, x, steps=steps, warmup=2)}))
"""

BETWEEN = r"""
import sys, time, json, resource
import numpy as np
if sys.argv[1] == "keep": from abaw_workbench.cli import _keep_freed_memory   # the import sets nothing the parent did not
import torch
from abaw_workbench.audio import audio_features
from abaw_workbench.tasks import FrameModel
from abaw_workbench.mae import build_encoder
torch.manual_seed(0)
net = FrameModel(build_encoder("micro", 112, drop_path=0.0), tasks=()).eval()
x, rng = torch.randn(64, 3, 112, 112), np.random.default_rng(0)
sr, t = 16000, np.arange(7 * 16000) / 16000
wave = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(t)) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
def forwards(between):
    s, flt = 0.0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.inference_mode():
        for i in range(30):
            if between and i % 3 == 0: audio_features(wave, sr, np.arange(210) / 30)
            t0 = time.perf_counter(); net.features(x); s += time.perf_counter() - t0
    return s, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt
forwards(True)
r = {k: [] for k in ("alone", "between", "faults")}
for _ in range(2):
    a, _f = forwards(False); b, f = forwards(True)
    r["alone"].append(a); r["between"].append(b); r["faults"].append(f)
print(json.dumps({k: float(np.median(v)) for k, v in r.items()}))
"""

COMPETITOR = r"""
import torch
torch.set_num_threads(2)
a = torch.randn(1024, 1024)
while True: a = (a @ a).clamp_(-1, 1)
"""


def step_time(threads, policy, model, steps):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"): env.pop(k, None)
    if policy == "passive": env["OMP_WAIT_POLICY"] = "PASSIVE"
    if policy == "spin1000": env["GOMP_SPINCOUNT"] = "1000"
    r = subprocess.run([sys.executable, "-c", CHILD, str(threads), model, str(steps)], env=env, capture_output=True, text=True)
    if r.returncode: raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])["s"]


def between_forwards(blas, memory):
    "Forwards back to back and with audio features between them, in a fresh process (OpenBLAS spin `blas`, memory policy `memory`)."
    env = {**os.environ, "GOMP_SPINCOUNT": "1000", "OPENBLAS_THREAD_TIMEOUT": "28" if blas == "default" else "4"}
    env.pop("OMP_NUM_THREADS", None); env.pop("OMP_WAIT_POLICY", None)
    r = subprocess.run([sys.executable, "-c", BETWEEN, memory], env=env, capture_output=True, text=True)
    if r.returncode: raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main_between(rounds):
    settings = list(itertools.product(("default", "short"), ("default", "keep")))
    res = {}
    for _ in range(rounds):
        for s in settings: res.setdefault(s, []).append(between_forwards(*s))
    print(f"{'OpenBLAS spin':<15}{'freed memory':<14}{'alone s':>9}{'between s':>11}{'ratio':>7}{'faults':>9}   (30 forwards, micro ViT at 112 px, batch 64)")
    rows = []
    for blas, mem in settings:
        al, bt, fl = (statistics.median(r[k] for r in res[(blas, mem)]) for k in ("alone", "between", "faults"))
        print(f"{blas:<15}{mem:<14}{al:>9.2f}{bt:>11.2f}{al / bt:>7.2f}{fl:>9.0f}")
        rows.append(dict(bench="threads", metric=f"forwards between audio work, OpenBLAS spin {blas}, freed memory {mem}",
                         value=round(bt, 3), unit="s / 30 forwards", baseline=round(al, 3), ratio=round(al / bt, 3),
                         target="abaw's policy (short, keep): ratio close to 1"))
    print("(abaw's policy: OpenBLAS spin short, freed memory kept; faults: page faults of the forwards between audio work)")
    for r in rows: print(json.dumps(r))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--only", choices=("threads", "between"), default=None)
    a = ap.parse_args(argv)
    if a.only != "threads": main_between(a.rounds)
    if a.only == "between": return 0
    cores = len(os.sched_getaffinity(0))
    settings = list(itertools.product(("fusion", "finetune"), (1, cores), ("default", "spin1000", "passive")))
    res = {}
    for state in ("alone", "busy"):
        comp = None
        if state == "busy":
            comp = subprocess.Popen([sys.executable, "-c", COMPETITOR], env={**os.environ, "OMP_NUM_THREADS": "2"})
            time.sleep(3)
        try:
            for _ in range(a.rounds):
                for s in settings: res.setdefault((state,) + s, []).append(step_time(s[1], s[2], s[0], a.steps))
        finally:
            if comp: comp.kill(); comp.wait()
    print(f"{'model':<10}{'threads':>8}  {'OMP wait':<9}{'alone s/step':>14}{'busy s/step':>13}{'busy/alone':>12}")
    rows = []
    for model, th, pol in settings:
        al, bu = (statistics.median(res[(st, model, th, pol)]) for st in ("alone", "busy"))
        print(f"{model:<10}{th:>8}  {pol:<9}{al:>14.3f}{bu:>13.3f}{bu / al:>12.2f}")
        rows.append(dict(bench="threads", metric=f"{model}, {th} threads, OMP wait {pol}, busy", value=round(bu, 4), unit="s/step",
                         baseline=round(al, 4), ratio=round(al / bu, 3), target="graceful: busy close to 2x alone at most"))
    print(f"(busy: beside a 2-thread torch matmul loop; {cores} cores; abaw's policy: {cores} threads, spin1000)")
    for r in rows: print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
