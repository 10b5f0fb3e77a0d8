"""How much scheduler memory the runs page (``daskgif.dashboard``) costs, and how long it takes to answer.

Rows:

``real``
    A real 10,000-frame run (tiny frames, every 1,000th unreadable and
    skipped) on a ``LocalCluster`` whose scheduler preloads the page.  Its
    messages are then taken from the scheduler's event log and fed again to a
    fresh model under ``tracemalloc``: the model's own growth.
``plain``
    The same run's shape, synthetic: 10,000 successes in 40 messages.
``all failed``
    10,000 frames that all fail, each with its own message: the worst case of
    one run, 10,000 frame records (``daskgif.dashboard.max-frame-records``).
``100k, half failed``
    100,000 frames, 50,000 failing: the records stop at the bound.
``20 runs worst``
    ``daskgif.dashboard.max-runs`` (20) worst-case runs: the whole bound.

For each: messages, the model's memory growth (``tracemalloc``), the same
with each run's cached JSON answer, and the time
to build the run's JSON answer (the page asks once a second), the first time
and again (unchanged: cached)::

    python examples/bench_dashboard.py [--frames 10000] [--skip-real]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from daskgif.views.runs import Runs

GOAL_MB = 20


def frames_messages(run: str, total: int, failed_every: int = 0, batch: int = 250, distinct: bool = True) -> list:
    """The messages of one run of *total* frames, in batches, one frame in *failed_every* failing."""
    now = time.time()
    msgs = [{"kind": "run", "run": run, "state": "Running", "time": now,
             "parameters": {"url": "https://example.com/all-images.img", "out": "clip.gif"}, "out": "clip.gif"},
            {"kind": "map", "run": run, "name": "write-frame", "total": total}]
    for step in ("fetch", "split"):
        msgs.append({"kind": "step", "run": run, "name": step, "state": "Success", "attempts": 1, "start": now,
                     "end": now + 0.1, "message": "", "index": None, "duration": 0.1})
    for first in range(0, total, batch):
        indices = range(first, min(first + batch, total))
        bad = [i for i in indices if failed_every and i % failed_every == 0]
        records = [{"name": "write-frame", "state": "Failed", "attempts": 3, "start": now, "end": now + 0.01,
                    "message": f"OSError: cannot write frames/frame_{i:05d}.gif: No space left on device"
                    if distinct else "OSError: No space left on device", "index": i, "duration": 0.01}
                   for i in bad]
        msgs.append({"kind": "frames", "run": run, "name": "write-frame", "busy": 0.5, "start": now, "end": now + 1,
                     "counts": {k: v for k, v in (("Success", len(indices) - len(bad)), ("Failed", len(bad))) if v},
                     "records": records})
    msgs.append({"kind": "run", "run": run, "state": "Failed" if failed_every else "Success", "time": now + 2,
                 "message": "task 'write-frame' (frame 0) failed after 3 attempts" if failed_every else ""})
    return msgs


def measure(name: str, messages: list, runs: int = 1) -> dict:
    """Feed *messages* to a fresh model under tracemalloc; time one JSON answer of the last run."""
    encoded = sum(len(json.dumps(m)) for m in messages)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    model = Runs(max_runs=20, max_records=10000)
    for msg in messages:
        model.add(msg)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    run = next(reversed(model.runs.values()))
    # Each run's JSON answer is kept once built (until its next message): count them all.
    answers = sum(len(r.detail_json()) for r in list(model.runs.values())[:-1])
    run._cache = None
    start = time.perf_counter()
    answer = run.detail_json()
    answer_s = time.perf_counter() - start
    start = time.perf_counter()
    run.detail_json()
    again_s = time.perf_counter() - start
    start = time.perf_counter()
    json.dumps(model.to_dict())
    list_s = time.perf_counter() - start
    return {"row": name, "runs": len(model.runs), "messages": len(messages), "message MB": encoded / 2**20,
            "records": sum(len(r.records) for r in model.runs.values()), "model MB": growth / 2**20,
            "per run MB": growth / 2**20 / runs, "+answers MB": (growth + answers + len(answer)) / 2**20 / runs, "run.json ms": answer_s * 1e3,
            "again ms": again_s * 1e3, "run.json KB": len(answer) / 1024,
            "runs.json ms": list_s * 1e3}


def real_run(total: int) -> tuple[list, dict]:
    """Run a *total*-frame pipeline on a LocalCluster with the page; return its messages and figures."""
    import distributed
    import psutil

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from frames import image_data, make_gif

    import daskgif

    tiny = [make_gif(8, 8, seed=i) for i in range(16)]
    frames = [b"GIF89a" + bytes(30) if i % 1000 == 999 else tiny[i % 16] for i in range(total)]
    with tempfile.TemporaryDirectory() as tmp, \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                     scheduler_kwargs={"preload": ["daskgif.dashboard"]}) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        Path(tmp, "src.img").write_bytes(image_data(frames))
        rss = psutil.Process().memory_info().rss  # the LocalCluster's scheduler lives in this process
        graph = daskgif.build_graph(url=f"{tmp}/src.img", data_file=f"{tmp}/data.img", out=f"{tmp}/clip.gif",
                                    frames_dir=f"{tmp}/frames", on_error="skip", retry_delay=0)
        start = time.perf_counter()
        result = graph.compute(scheduler=client)
        seconds = time.perf_counter() - start
        time.sleep(0.5)
        rss = psutil.Process().memory_info().rss - rss
        messages = [msg for _, msg in cluster.scheduler.get_events("daskgif")]
        plugin = cluster.scheduler.plugins["daskgif-dashboard"]
        run = plugin.runs.runs[graph.run]
        return messages, {"frames": len(result.frames) + run.counts.get("Skipped", 0), "seconds": seconds,
                          "counts": run.counts, "process RSS growth MB": rss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--skip-real", action="store_true", help="only the synthetic rows")
    args = parser.parse_args()
    rows = []
    if not args.skip_real:
        messages, figures = real_run(args.frames)
        print(f"real run: {figures['frames']} frames in {figures['seconds']:.1f} s, counts {figures['counts']}, "
              f"{len(messages)} messages; the whole process (client + scheduler + graph) grew "
              f"{figures['process RSS growth MB']:.1f} MB RSS")
        rows.append(measure(f"real {args.frames}", messages))
    n = args.frames
    rows.append(measure(f"plain {n}", frames_messages("plain", n)))
    rows.append(measure(f"all failed {n}", frames_messages("failed", n, failed_every=1)))
    rows.append(measure("100k, half failed", frames_messages("half", 100_000, failed_every=2)))
    rows.append(measure("20 runs worst", [m for i in range(20) for m in frames_messages(f"r{i}", n, 1)], runs=20))
    columns = list(rows[0])
    print(" | ".join(f"{c:>17}" if i == 0 else f"{c:>12}" for i, c in enumerate(columns)))
    for row in rows:
        print(" | ".join(f"{v:>17}" if i == 0 else f"{v:>12.2f}" if isinstance(v, float) else f"{v!s:>12}"
                         for i, v in enumerate(row.values())))
    print("(distributed's own event log also keeps the topic's last distributed.admin.low-level-log-length "
          "messages: see 'message MB')")
    worst = max(row["+answers MB"] for row in rows)
    print(f"largest growth per run, its cached answer included: {worst:.2f} MB (goal < {GOAL_MB} MB): {'ok' if worst < GOAL_MB else 'OVER'}")


if __name__ == "__main__":
    main()
