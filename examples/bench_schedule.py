"""Memory over a long schedule: does any process grow from run to run?

Run::

    python examples/bench_schedule.py              # 1,000 runs
    python examples/bench_schedule.py --runs 200   # quicker

The cluster ``daskgif run`` starts (2 worker processes; the scheduler lives in
this process), one schedule of back-to-back runs of the embedded
sample with history and a fresh output folder per run, as ``daskgif run --every``
does.  After every run the resident memory of this process (client and
scheduler) and of each worker is sampled; the table compares run 20 (caches
warm) with the last run.  Goal: no process grows by more than 5 MB.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
from pathlib import Path

import psutil
import daskgif
from daskgif.ops.cluster import connect
from daskgif.ops.schedule import run_schedule

MB = 2**20


def worker_rss() -> int:
    return psutil.Process().memory_info().rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--warm", type=int, default=20, help="the run after which growth is measured")
    args = parser.parse_args()
    me = psutil.Process()
    samples: list[dict[str, int]] = []
    with tempfile.TemporaryDirectory() as folder, \
            connect(workers=2, preload=("daskgif.dashboard",)) as client:  # the cluster ``daskgif run`` starts
        root = Path(folder)

        def params(number: int) -> dict:
            return {"data_file": str(root / "image-data.img"), "out": str(root / f"run{number % 3}" / "clip.gif")}

        def sample(run) -> None:
            assert run.ok, run.message
            gc.collect()
            samples.append({"client+scheduler": me.memory_info().rss,
                            **{f"worker {i}": rss for i, rss in enumerate(client.run(worker_rss).values())}})

        runs = run_schedule(params, every=0.001, max_runs=args.runs, client=client, history=str(root / "h.jsonl"),
                            on_result=sample, keep=args.warm + 1)
    assert all(r.ok for r in runs)
    warm, last = samples[args.warm - 1], samples[-1]
    per_run = statistics.median(r.duration for r in runs)
    print(f"{len(samples)} runs of {len(runs[0].result.frames)} frames, median {per_run * 1000:.0f} ms per run "
          f"(daskgif {daskgif.__version__})")
    print(f"{'process':<18}{'after run ' + str(args.warm):>16}{'after run ' + str(len(samples)):>18}{'growth':>10}")
    for name in warm:
        growth = (last[name] - warm[name]) / MB
        print(f"{name:<18}{warm[name] / MB:>13.1f} MB{last[name] / MB:>15.1f} MB{growth:>+8.1f} MB"
              f"{'' if growth <= 5 else '  over the 5 MB goal'}")


if __name__ == "__main__":
    main()
