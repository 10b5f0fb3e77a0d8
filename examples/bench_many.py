"""Benchmark many inputs: one ``daskgif run`` over a glob against one run per input, plain Dask and Prefect 3.

Run::

    python examples/bench_many.py                          # 200 inputs of 27 frames of 128x96
    python examples/bench_many.py --inputs 50 --sequential 10
    python examples/bench_many.py --prefect /tmp/prefect-venv/bin/python   # add Prefect 3 (its own venv)

Every contender writes into a fresh folder and checks that it wrote one clip per
input.  The contenders that start their own processes (the command line, Prefect)
run as a user would start them; the others share one warm 4x1 ``LocalCluster``
started once in this process.  Rows:

* ``daskgif run --url GLOB``: one command, its own 4x1 cluster, every input in
  one computation (cluster start-up included, as a user gets it).
* ``daskgif run, one per input``: a command per input, one after the other, each
  with its own 4x1 cluster: what a user without the glob would do.  Timed over
  the first ``--sequential`` inputs (its rate is steady); the clips/s compare.
* ``dask.compute(*build_graphs(GLOB))``: the API on the warm cluster (a
  shortcut: no process or cluster start-up).
* ``build_graph().compute() per input``: the API one input after the other on
  the warm cluster.
* ``plain Dask``: the same work as hand-written ``dask.delayed`` on the warm
  cluster, every input in one ``dask.compute``: a split task per input, a task
  per frame (the frames' bytes travel through the graph), a combine per input
  (``imageio.mimsave``), as the original example did.
* ``Prefect 3``: with ``--prefect PYTHON`` (a Python with ``prefect`` 3,
  ``imageio`` and ``numpy``): a flow that maps a split task over the inputs, a
  write task over every input's frames and a combine task over the inputs
  (``task.map``, default task runner), over the first ``--sequential`` inputs.

Peak memory: the resident memory of every process a contender used, sampled
every 20 ms (for the rows on the warm cluster: this process and the largest
worker, growth in brackets).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dask
import psutil
from distributed import Client, LocalCluster

import daskgif
from bench_pipeline import Sampler, combine_imageio, make_frames, split_to_frames, write_data, write_one

MB = 2**20

PREFECT_FLOW = '''
import sys
from pathlib import Path
import imageio.v2 as imageio
from prefect import flow, task

@task
def split(path):
    data = Path(path).read_bytes()
    return [part for part in data.split(b"\\n\\n\\n\\n") if part]

@task
def write(frame, path):
    Path(path).write_bytes(frame)
    return path

@task
def combine(paths, out):
    imageio.mimsave(out, [imageio.imread(p) for p in paths], duration=100, loop=0)
    return out

@flow
def clips(inputs, work):
    frames = split.map(inputs).result()
    for path, parts in zip(inputs, frames):
        name = Path(path).stem
        (Path(work) / name).mkdir()
        written = write.map(parts, [f"{work}/{name}/frame_{i:02d}.gif" for i in range(len(parts))])
        combine.submit(written, f"{work}/{name}.gif").result()

if __name__ == "__main__":
    clips(sys.argv[2:], sys.argv[1])
'''


class TreeSampler(threading.Thread):
    """The peak resident memory of a process and of each of its descendants, sampled every 20 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peaks: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in procs:
                try:
                    self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), proc.memory_info().rss)
                except psutil.Error:
                    pass

    def summary(self) -> tuple[int, int]:
        """The peaks of the process itself and of its largest descendant."""
        others = [rss for pid, rss in self.peaks.items() if pid != self.root.pid]
        return self.peaks.get(self.root.pid, 0), max(others, default=0)


def run_command(argv: list[str], cwd: Path) -> tuple[float, tuple[int, int]]:
    """Run *argv* in *cwd*; return its wall time and its processes' peak memory; raise if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    sampler.done.set()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv[:4])}... exited {proc.returncode}:\n{out[-2000:]}\n{err[-2000:]}")
    return elapsed, sampler.summary()


def mb(peaks: tuple[int, int]) -> str:
    return f"{peaks[0] / MB:.0f} / {peaks[1] / MB:.0f}"


def clips_in(folder: Path) -> int:
    return len(list(folder.glob("*.gif")))


def plain_dask(inputs: list[Path], work: Path) -> None:
    """Every input as hand-written delayed calls, all in one compute: split, a task per frame, combine."""
    clips = []
    for path in inputs:
        folder = work / path.stem
        folder.mkdir()
        frames = dask.delayed(split_to_frames)(str(path))
        count = len(split_to_frames(str(path)))  # the graph's shape needs the count, as dynamic mapping would not
        writes = [dask.delayed(write_one)(i, frames[i], str(folder)) for i in range(count)]
        clips.append(dask.delayed(combine_imageio)(writes, str(work / f"{path.stem}.gif")))
    dask.compute(*clips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=200, help="input files (default 200)")
    parser.add_argument("--frames", type=int, default=27, help="frames per input (default 27)")
    parser.add_argument("--size", default="128x96", help="frame size (default 128x96)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes of 1 thread (default 4)")
    parser.add_argument("--sequential", type=int, default=20,
                        help="inputs timed for the one-process-per-input rows and Prefect (default 20)")
    parser.add_argument("--prefect", default=None, help="a Python with prefect 3, imageio and numpy")
    parser.add_argument("--dir", default=None, help="where the data and the outputs go (default: the temporary folder)")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    daskgif_cmd = [sys.executable, "-m", "daskgif", "run", "--workers", str(args.workers),
                   "--threads-per-worker", "1"]
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, dask {dask.__version__}, daskgif "
          f"{daskgif.__version__}; {args.inputs} inputs of {args.frames} frames of {width}x{height}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        source = root / "in"
        source.mkdir()
        sets = [make_frames(args.frames, width, height, seed=seed) for seed in range(4)]
        for i in range(args.inputs):
            frames = sets[i % len(sets)]
            write_data(source / f"clip{i:04d}.img", frames[i % len(frames):] + frames[:i % len(frames)])
        inputs = sorted(source.glob("*.img"))
        pattern = str(source / "*.img")
        rows: list[tuple[str, int, float, str]] = []

        def fresh() -> Path:
            return Path(tempfile.mkdtemp(dir=root, prefix="w-"))

        # the rows that start their own processes come first, while no cluster of ours takes memory or cores
        work = fresh()
        elapsed, memory = run_command([*daskgif_cmd, "--url", pattern], work)
        assert clips_in(work) == args.inputs, clips_in(work)
        rows.append(("daskgif run --url GLOB (own cluster)", args.inputs, elapsed, mb(memory)))
        shutil.rmtree(work)

        few = inputs[:args.sequential]
        work, total, peak = fresh(), 0.0, (0, 0)
        for path in few:
            elapsed, memory = run_command([*daskgif_cmd, "--url", str(path), "--out", f"{path.stem}.gif",
                                           "--frames-dir", f"frames/{path.stem}", "--data-file",
                                           f"data/{path.name}"], work)
            total, peak = total + elapsed, (max(peak[0], memory[0]), max(peak[1], memory[1]))
        assert clips_in(work) == len(few)
        rows.append(("daskgif run, one per input (own cluster each)", len(few), total, mb(peak)))
        shutil.rmtree(work)

        if args.prefect:  # its ephemeral API server may take over its default 20 s to start on a busy machine
            os.environ.update(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300",
                              PREFECT_SERVER_ANALYTICS_ENABLED="false")
            work = fresh()
            flow = root / "prefect_flow.py"
            flow.write_text(PREFECT_FLOW)
            run_command([args.prefect, str(flow), str(work), *map(str, few)], work)  # once untimed: its setup
            shutil.rmtree(work)
            work = fresh()
            elapsed, memory = run_command([args.prefect, str(flow), str(work), *map(str, few)], work)
            assert clips_in(work) == len(few)
            rows.append(("Prefect 3 task.map (its own process)", len(few), elapsed, mb(memory)))
            shutil.rmtree(work)

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            sampler = Sampler(list(client.run(os.getpid).values()), interval=0.02)
            sampler.start()

            def measured(label: str, count: int, func) -> None:
                work = fresh()
                sampler.reset()
                start = time.perf_counter()
                func(work)
                elapsed = time.perf_counter() - start
                assert clips_in(work) == count, (label, clips_in(work))
                rows.append((label, count, elapsed, f"{sampler.client / MB:.0f} (+{sampler.client_growth / MB:.0f})"
                             f" / {sampler.worker / MB:.0f} (+{sampler.worker_growth / MB:.0f})"))
                shutil.rmtree(work)

            def one_by_one(work: Path) -> None:
                for path in inputs:
                    daskgif.build_graph(url=str(path), out=str(work / f"{path.stem}.gif"),
                                        data_file=str(work / "data" / path.name),
                                        frames_dir=str(work / "frames" / path.stem)).compute()

            def together(work: Path) -> None:
                graphs = daskgif.build_graphs(pattern, out=str(work / "{name}.gif"),
                                              data_file=str(work / "data" / "{name}.img"),
                                              frames_dir=str(work / "frames" / "{name}"))
                assert all(result.ok for result in dask.compute(*graphs))

            measured("plain Dask (warm cluster)", len(inputs), lambda work: plain_dask(inputs, work))  # warms imports
            measured("plain Dask (warm cluster)", len(inputs), lambda work: plain_dask(inputs, work))
            rows.pop(-2)
            measured("dask.compute(*build_graphs(GLOB)) (warm cluster)", len(inputs), together)
            measured("build_graph().compute() per input (warm cluster)", len(inputs), one_by_one)
            sampler.stop.set()

    rate = {label: count / elapsed for label, count, elapsed, _ in rows}
    print(f"\n{'contender':<52} {'inputs':>6} {'time s':>8} {'clips/s':>8}  peak MB: main / largest other")
    for label, count, elapsed, memory in rows:
        print(f"{label:<52} {count:>6} {elapsed:8.2f} {rate[label]:8.2f}  {memory}")
    print("\nratios of clips/s (goals: the glob >= 5x one run per input; build_graphs faster than plain Dask):")
    pairs = [("daskgif run --url GLOB (own cluster)", "daskgif run, one per input (own cluster each)"),
             ("daskgif run --url GLOB (own cluster)", "Prefect 3 task.map (its own process)"),
             ("dask.compute(*build_graphs(GLOB)) (warm cluster)", "plain Dask (warm cluster)"),
             ("dask.compute(*build_graphs(GLOB)) (warm cluster)", "build_graph().compute() per input (warm cluster)")]
    for faster, slower in pairs:
        if faster in rate and slower in rate:
            print(f"  {faster} / {slower}: {rate[faster] / rate[slower]:.1f}x")


if __name__ == "__main__":
    main()
