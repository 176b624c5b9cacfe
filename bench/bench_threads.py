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

    python bench/bench_threads.py [--rounds 2] [--steps 6]
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
    from abaw_workbench.finetune import FrameModel
    from abaw_workbench.mae import build_encoder
    net = FrameModel(build_encoder("micro", 112, drop_path=0.1), ["au", "expr", "va"], pool="grid", grid_dim=32)
    x = (torch.randn(32, 3, 112, 112),)
print(json.dumps({"s": bare_step_seconds(net, x, steps=steps, warmup=2)}))
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    a = ap.parse_args(argv)
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
