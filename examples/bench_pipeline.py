"""Benchmark the whole pipeline, honestly: every contender writes into a fresh folder, round by round.

Run::

    python examples/bench_pipeline.py                  # 27, 1,000 and 10,000 frames; 3 rounds
    python examples/bench_pipeline.py --quick          # 1 round; 27 and 1,000 frames only
    python examples/bench_pipeline.py --only 27        # one set: 27, 1000 or 10000
    python examples/bench_pipeline.py --only million   # 100,000 and 1,000,000 frames of 1x1: memory
    python examples/bench_pipeline.py --only fixed     # the fixed cost: 27 frames, 9 runs, per-step medians
    python examples/bench_pipeline.py --only perframe  # the per-frame cost: slope 2,000 -> 10,000 frames of 64x64
    python examples/bench_pipeline.py --workers 8      # worker processes of the cluster (default 4)
    python examples/bench_pipeline.py --dir /dev/shm   # outputs in memory: no disk noise
    python examples/bench_pipeline.py --only month --runs 10000   # a month of schedules: memory per process

The data is generated: 27 frames of 500x375 (about 2 MB, the shape of the original
``all-images.img``), and 1,000 and 10,000 frames of 64x64 (27 distinct images,
repeated).  Everything runs in this one process, on one ``LocalCluster`` (4
worker processes of 1 thread, like the original example), started once.

Contenders, interleaved round by round (floor, original, plain, daskgif, ...);
each writes into a new temporary folder every round:

* ``I/O floor``: one loop that copies the data file, writes every frame file
  and writes the clip's bytes once: what any method must at least do.
* ``original``: the original example's method in this process: split by the
  delimiter, write every frame, decode each with imageio, ``imageio.mimsave``.
* ``plain dask.delayed``: that flow by hand, one task per frame; the frames'
  bytes travel through the graph, as in the original.
* ``daskgif``: ``build_graph(url=<data file>, ...).compute()`` on the cluster
  (warm): fetch copies the data file into the fresh folder, as a user's run does.
* ``daskgif, data file already there``: the same, with the data file fetched
  into the fresh folder beforehand (untimed), so the run's fetch is skipped.
* ``daskgif, rerun in place``: the same graph again on the last round's
  folder: frames and data file already there (identical frames are not rewritten).

Medians of the rounds (min-max).  Peak memory is the resident memory of this
process (the client, which also hosts the scheduler) and of the largest worker,
sampled every 10 ms with psutil while the contender ran, and in brackets its
growth during the run (resident memory is seldom given back, so the absolute
peak also shows what an earlier contender left behind).  For daskgif the run's
own states say where its time went (per step, and what is left: submitting
the graph, scheduling, the fan-out's round trip, events).

``--only fixed``: the 27-frame run on the warm cluster, data file already there (fetched beforehand,
untimed, with its source record, so the run's fetch is skipped), 9 runs (``--rounds``, at least 7), each
in a fresh folder, interleaved with the I/O floor and the Dask floor (the run's graph with nothing in its
tasks: fetch, split, map-frames launching as many tasks as daskgif's batches, combine): the median run,
the median of each part of its breakdown, and the CPU time of the decode check alone.
``--only perframe``: 2,000 and 10,000 frames of 64x64 (decode validation on, as by default), daskgif and
the I/O floor interleaved, 3 rounds: the cost per frame is the slope between the two counts (the fixed
cost cancels), daskgif's over the floor's, and the decode check's CPU per frame beside them.

``--only million``: 100,000 and then 1,000,000 frames of 1x1 through daskgif on
a 2-worker cluster, frames on local disk: the time per frame, each process's
peak memory, and the client's growth from 100,000 to 1,000,000 frames.

``--only month``: ``--runs`` scheduled runs of the embedded sample (32 tiny frames), back to back, each
contender in a process of its own, on its own cluster as ``daskgif run`` starts it (a worker per core, the
scheduler in that process):
``daskgif`` (``run_schedule`` on one cluster), ``plain`` (plain Dask of the same shape: fetch, split, 4 frame
writes, combine, as ``dask.delayed``) and ``cli`` (``daskgif run``'s own cluster, recycled every
``--recycle`` runs).  Every process's RSS at runs 10, 100, 300, 1,000, 3,000, 10,000, ... and its growth
after run 100; ``--types N`` also lists the N object types grown most in each process.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import dask
import imageio.v2 as imageio
import numpy as np
import psutil
from distributed import Client, LocalCluster
from PIL import Image

import daskgif
from daskgif import storage
from daskgif.codec import check_decodes
from daskgif.core.fanout import batches
from daskgif.gif.encode import encode_gif
from daskgif.gif.parse import parse_gif
from daskgif.gif.split import split_bytes

DELIMITER = b"\n\n\n\n"
SETS = {"27": (27, 500, 375), "1000": (1000, 64, 64), "10000": (10_000, 64, 64)}


def make_frames(count: int, width: int, height: int, distinct: int = 27, seed: int = 0) -> list[bytes]:
    """Return *count* photographic-looking GIF frames (Pillow, 256 colours), cycling through *distinct* images."""
    rnd = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(min(count, distinct)):
        phase = i / max(distinct, 1) * 2 * np.pi
        rgb = np.stack([
            127 + 120 * np.sin(x / 23 + phase), 127 + 120 * np.cos(y / 17 - phase), 127 + 120 * np.sin((x + y) / 31),
        ], axis=-1) + rnd.normal(0, 2, (height, width, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(rgb, 0, 255).astype("uint8")).quantize(256).save(buf, format="GIF")
        frames.append(buf.getvalue())
    return [frames[i % len(frames)] for i in range(count)]


def write_data(path: Path, frames: list[bytes]) -> None:
    with open(path, "wb") as f:
        f.writelines(frame + DELIMITER for frame in frames)


# ---- memory: this process and the cluster's workers, sampled in a thread ---------------------

class Sampler(threading.Thread):
    """Sample the resident memory of this process and of *pids* every *interval* seconds; keep the peaks."""

    def __init__(self, pids: list[int], interval: float = 0.01):
        super().__init__(daemon=True)
        self.me = psutil.Process()
        self.workers = [psutil.Process(pid) for pid in pids]
        self.interval = interval
        self.stop = threading.Event()
        self.reset()

    def reset(self) -> None:
        """Start new peaks: ``client`` and ``worker`` (the largest worker), and their growth since now.

        Resident memory is seldom given back to the system, so an absolute peak
        also shows what an earlier contender left; the growth is this run's own.
        """
        self.base = {p.pid: self._rss(p) for p in (self.me, *self.workers)}
        self.client, self.worker = self.base[self.me.pid], max([0] + [self.base[p.pid] for p in self.workers])
        self.client_growth = self.worker_growth = 0

    @staticmethod
    def _rss(p: psutil.Process) -> int:
        try:
            return p.memory_info().rss
        except psutil.Error:
            return 0

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            rss = self._rss(self.me)
            self.client = max(self.client, rss)
            self.client_growth = max(self.client_growth, rss - self.base[self.me.pid])
            for p in self.workers:
                rss = self._rss(p)
                self.worker = max(self.worker, rss)
                self.worker_growth = max(self.worker_growth, rss - self.base[p.pid])


# ---- the contenders --------------------------------------------------------------------------

def floor(data_file: Path, work: Path, spans: list, clip: bytes) -> None:
    """The I/O any method does: copy the data file, write every frame file, write the clip once."""
    copy = work / "image-data.img"
    shutil.copyfile(data_file, copy)
    data = copy.read_bytes()
    frames = work / "frames"
    frames.mkdir()
    for s in spans:
        with open(frames / f"frame_{s.index:02d}.gif", "wb") as f:
            f.write(data[s.offset:s.offset + s.length])
    (work / "clip.gif").write_bytes(clip)


def original(data_file: Path, work: Path) -> None:
    """The original example in one process: split, write each frame, decode each with imageio, mimsave."""
    data = data_file.read_bytes()
    paths = []
    for i, span in enumerate(split_bytes(data)):
        path = work / f"frame_{i:02d}.gif"
        path.write_bytes(data[span.offset:span.offset + span.length])
        paths.append(path)
    imageio.mimsave(work / "clip.gif", [imageio.imread(p) for p in paths], duration=100, loop=0)


def split_to_frames(data_file: str) -> list[bytes]:
    data = Path(data_file).read_bytes()
    return [data[s.offset:s.offset + s.length] for s in split_bytes(data)]


def write_one(i: int, frame: bytes, work: str) -> str:
    path = os.path.join(work, f"frame_{i:02d}.gif")
    with open(path, "wb") as f:
        f.write(frame)
    return path


def combine_imageio(paths: list[str], out: str) -> str:
    imageio.mimsave(out, [imageio.imread(p) for p in paths], duration=100, loop=0)
    return out


def plain_dask(client: Client, data_file: Path, work: Path) -> None:
    """The same flow by hand with dask.delayed: one task per frame, the frames' bytes in the graph."""
    frames = client.submit(split_to_frames, str(data_file), pure=False).result()
    writes = [dask.delayed(write_one)(i, frame, str(work)) for i, frame in enumerate(frames)]
    dask.delayed(combine_imageio)(writes, str(work / "clip.gif")).compute()


def _nothing(value: Any = None) -> Any:
    return value


def _fan_out_nothing(spans: Any, batches: int) -> list:
    from distributed import wait, worker_client

    with worker_client() as client:  # as map-frames launches its batches
        futures = [client.submit(_nothing, i, pure=False) for i in range(batches)]
        wait(futures)
        return client.gather(futures)


def dask_floor(batches: int) -> None:
    """A daskgif run's graph with nothing in its tasks: fetch -> split -> map-frames (launching *batches*
    tasks from a task) -> combine.  What Dask itself costs for the shape, before any work."""
    step = dask.delayed(_nothing, pure=False)
    step(dask.delayed(_fan_out_nothing, pure=False)(step(step()), batches)).compute()


def decode_check_cpu(data_file: Path) -> float:
    """The CPU seconds of the decode check of every frame of *data_file*, in this process: what
    ``daskgif.validate: decode`` costs at least, on one core."""
    data = data_file.read_bytes()
    frames = [(data[s.offset:s.offset + s.length], s) for s in split_bytes(data)]
    parsed = [parse_gif(frame) for frame, _ in frames]  # a run parses each frame anyway: not the check's
    start = time.thread_time()
    for (frame, span), info in zip(frames, parsed):
        check_decodes(frame, index=span.index, offset=span.offset, info=info)
    return time.thread_time() - start


def place_data(data_file: Path, work: Path) -> None:
    """Fetch *data_file* into *work* as a run does, with the record of its source: the next run's fetch is
    skipped (a copy without the record would be fetched again)."""
    storage.fetch_file(str(data_file), str(work / "image-data.img"))


def daskgif_run(data_file: Path, work: Path) -> daskgif.Result:
    """``build_graph(...).compute()``: fetch copies *data_file* into *work*, unless it is there already."""
    return daskgif.build_graph(url=str(data_file), data_file=str(work / "image-data.img"),
                               out=str(work / "clip.gif"), frames_dir=str(work / "frames")).compute()


# ---- measuring -------------------------------------------------------------------------------

def describe(times: list[float]) -> str:
    return f"{statistics.median(times):8.3f} s ({min(times):.3f}-{max(times):.3f})"


def breakdown(result: daskgif.Result, called: float, wall: float) -> str:
    """Where a daskgif run's time went, from its states: the steps, the hops between them, the client's share.

    *called* is the ``time.time()`` at which ``compute()`` was called, *wall* its duration.
    """
    states = result.states
    steps = {name: states[name].duration or 0.0 for name in ("fetch", "split", "map-frames", "combine")}
    frames = states["write-frame"]
    inside = result.finished - result.started
    parts = [f"compute() to the first task {(result.started - called) * 1e3:.0f} ms"]
    parts += [f"{name} {t * 1e3:.0f}" for name, t in steps.items()]
    parts.append(f"(write-frame batches: {(frames.end - frames.start) * 1e3:.0f} wall, {frames.busy * 1e3:.0f} "
                 f"busy; fan-out round trip {(steps['map-frames'] - (frames.end - frames.start)) * 1e3:.0f})")
    parts.append(f"hops between the steps {(inside - sum(steps.values())) * 1e3:.0f}")
    parts.append(f"last task to compute() returning {(called + wall - result.finished) * 1e3:.0f} ms")
    return ", ".join(parts)


def parts(result: daskgif.Result, called: float, wall: float) -> dict[str, float]:
    """The breakdown of :func:`breakdown` as numbers, in seconds."""
    states = result.states
    steps = {name: states[name].duration or 0.0 for name in ("fetch", "split", "map-frames", "combine")}
    frames = states["write-frame"]
    return {"wall": wall, "compute() to the first task": result.started - called, **steps,
            "write-frame batches (wall)": frames.end - frames.start,
            "fan-out round trip": steps["map-frames"] - (frames.end - frames.start),
            "hops between the steps": result.finished - result.started - sum(steps.values()),
            "last task to compute() returning": called + wall - result.finished}


def fixed(root: Path, rounds: int, threads: int) -> None:
    """The fixed cost: the 27-frame run, data file already there, fresh folders; median run and parts,
    against the I/O floor and Dask's own floor for the graph's shape (interleaved)."""
    data_file = root / "fixed.img"
    write_data(data_file, make_frames(*SETS["27"]))
    spans = split_bytes(data_file.read_bytes())
    warm = root / "fixed-warm"
    warm.mkdir()
    daskgif_run(data_file, warm)
    dask_floor(len(batches(spans, "auto", threads)))
    clip = (warm / "clip.gif").read_bytes()
    found: dict[str, list[float]] = {}
    floors, dask_floors, decodes = [], [], []
    for _ in range(rounds):
        work = Path(tempfile.mkdtemp(dir=root, prefix="f-"))
        start = time.perf_counter()
        floor(data_file, work, spans, clip)
        floors.append(time.perf_counter() - start)
        start = time.perf_counter()
        dask_floor(len(batches(spans, "auto", threads)))
        dask_floors.append(time.perf_counter() - start)
        decodes.append(decode_check_cpu(data_file))
        work = Path(tempfile.mkdtemp(dir=root, prefix="w-"))
        place_data(data_file, work)  # untimed: the run's fetch is skipped
        called, start = time.time(), time.perf_counter()
        result = daskgif_run(data_file, work)
        for name, t in parts(result, called, time.perf_counter() - start).items():
            found.setdefault(name, []).append(t)
    wall, shape = statistics.median(found["wall"]), statistics.median(dask_floors)
    print(f"\nfixed cost: 27 frames of 500x375, data file already there, {rounds} runs, fresh folders")
    print(f"  I/O floor    {describe(floors)}")
    print(f"  Dask floor   {describe(dask_floors)}   the same graph with nothing in its tasks")
    print(f"  daskgif      {describe(found.pop('wall'))}   {wall / shape:.1f}x the Dask floor, "
          f"{(wall - shape) * 1e3:.0f} ms above it")
    print(f"  the decode check of the 27 frames alone: {statistics.median(decodes) * 1e3:.0f} ms of CPU on one core")
    print("  medians of the parts: " + ", ".join(f"{name} {statistics.median(ts) * 1e3:.0f} ms"
                                                for name, ts in found.items()))


def perframe(root: Path, rounds: int, counts: tuple[int, int] = (2000, 10_000)) -> None:
    """The per-frame cost: the slope between two frame counts, daskgif and the floor interleaved."""
    sets = {}
    for count in counts:
        data_file = root / f"perframe-{count}.img"
        write_data(data_file, make_frames(count, 64, 64))
        warm = root / f"perframe-{count}-warm"
        warm.mkdir()
        daskgif_run(data_file, warm)
        sets[count] = (data_file, split_bytes(data_file.read_bytes()), (warm / "clip.gif").read_bytes())
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for count, (data_file, spans, clip) in sets.items():
            for name in ("floor", "daskgif"):
                work = Path(tempfile.mkdtemp(dir=root, prefix="p-"))
                start = time.perf_counter()
                if name == "floor":
                    floor(data_file, work, spans, clip)
                else:
                    daskgif_run(data_file, work)
                times.setdefault((name, count), []).append(time.perf_counter() - start)
                shutil.rmtree(work, ignore_errors=True)
    a, b = counts
    print(f"\nper-frame cost: {a:,} and {b:,} frames of 64x64, decode validation on, {rounds} rounds, interleaved")
    slopes = {}
    for name in ("floor", "daskgif"):
        ta, tb = statistics.median(times[name, a]), statistics.median(times[name, b])
        slopes[name] = (tb - ta) / (b - a)
        print(f"  {name:<8} {a:,}: {describe(times[name, a])}   {b:,}: {describe(times[name, b])}   "
              f"slope {slopes[name] * 1e3:.4f} ms/frame")
    print(f"  daskgif/floor per frame (slope) {slopes['daskgif'] / slopes['floor']:.1f}, at {b:,} frames "
          f"{statistics.median(times['daskgif', b]) / statistics.median(times['floor', b]):.1f}")
    decode = decode_check_cpu(sets[b][0]) / b
    print(f"  the decode check alone: {decode * 1e3:.4f} ms of CPU per frame on one core, "
          f"{decode / slopes['floor']:.1f}x the floor's slope")


def run_set(label: str, count: int, width: int, height: int, rounds: int, root: Path, client: Client,
            sampler: Sampler, contenders: list[str]) -> None:
    data_file = root / f"{label}.img"
    write_data(data_file, make_frames(count, width, height))
    spans = split_bytes(data_file.read_bytes())
    print(f"\n{count:,} frames of {width}x{height}, {data_file.stat().st_size / 1e6:.1f} MB; "
          f"{rounds} round(s), interleaved", flush=True)
    warm = root / f"{label}-warm"
    warm.mkdir()
    daskgif_run(data_file, warm)  # warms the workers' imports; its clip is the floor's to write
    clip = (warm / "clip.gif").read_bytes()
    funcs = {
        "I/O floor": lambda work: floor(data_file, work, spans, clip),
        "original": lambda work: original(data_file, work),
        "plain dask.delayed": lambda work: plain_dask(client, data_file, work),
        "daskgif": lambda work: daskgif_run(data_file, work),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    peaks: dict[str, tuple[int, ...]] = {}
    last: dict[str, tuple] = {}
    for r in range(rounds):
        for name in contenders:
            work = Path(tempfile.mkdtemp(dir=root, prefix="w-"))
            if name == "daskgif, data file already there":
                place_data(data_file, work)  # untimed: the run's fetch is skipped
                func = lambda work=work: daskgif_run(data_file, work)  # noqa: E731
            else:
                func = lambda work=work, f=funcs[name]: f(work)  # noqa: E731
            sampler.reset()
            called, start = time.time(), time.perf_counter()
            out = func()
            elapsed = time.perf_counter() - start
            times[name].append(elapsed)
            seen = (sampler.client, sampler.client_growth, sampler.worker, sampler.worker_growth)
            peaks[name] = tuple(max(a, b) for a, b in zip(peaks.get(name, (0, 0, 0, 0)), seen))
            if name.startswith("daskgif"):
                if name in last:
                    shutil.rmtree(last[name][0], ignore_errors=True)
                last[name] = (work, out[-1] if isinstance(out, tuple) else out, called, elapsed)
            else:
                shutil.rmtree(work, ignore_errors=True)
    if "daskgif" in last:  # rerun in place: the last round's folder, everything already there
        work = last["daskgif"][0]
        times["daskgif, rerun in place (frames already there)"] = rerun = []
        for _ in range(rounds):
            sampler.reset()
            start = time.perf_counter()
            daskgif_run(data_file, work)
            rerun.append(time.perf_counter() - start)
        peaks["daskgif, rerun in place (frames already there)"] = (sampler.client, sampler.client_growth,
                                                                   sampler.worker, sampler.worker_growth)
    print(f"  {'contender':<48} {'median (min-max)':<28} {'client MB (growth)':>18} {'worker MB (growth)':>18}")
    for name, ts in times.items():
        c, cg, w, wg = (v / 2**20 for v in peaks[name])
        print(f"  {name:<48} {describe(ts):<28} {f'{c:.0f} (+{cg:.0f})':>18} {f'{w:.0f} (+{wg:.0f})':>18}")
    med = {name: statistics.median(ts) for name, ts in times.items()}
    ratios = []
    if "daskgif" in med and "original" in med:
        ratios.append(f"daskgif/original {med['daskgif'] / med['original']:.3f}")
    if "daskgif" in med and "plain dask.delayed" in med:
        ratios.append(f"plain/daskgif {med['plain dask.delayed'] / med['daskgif']:.1f}")
    if "daskgif" in med and "I/O floor" in med:
        ratios.append(f"daskgif/floor {med['daskgif'] / med['I/O floor']:.1f}")
    print("  ratios of medians: " + ", ".join(ratios))
    for name in ("daskgif", "daskgif, data file already there"):
        if name in last:
            work, result, called, wall = last[name]
            print(f"  where the time went ({name}, last round, {wall * 1e3:.0f} ms): {breakdown(result, called, wall)}")


def million(root: Path, counts: list[int]) -> None:
    """1x1 frames through daskgif on a 2-worker cluster: time per frame, every process's peak memory, and the
    size of the run's ``--json`` object and history line."""
    from daskgif.ops.schedule import ScheduledRun

    frame = encode_gif(1, 1, bytes(6), bytes(1))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        sampler = Sampler(list(client.run(os.getpid).values()))
        sampler.start()
        print(f"\n{'frames':>9} {'time s':>8} {'ms/frame':>9} {'client MB':>10} {'worker MB':>10} {'json kB':>8} "
              f"{'history kB':>10}")
        base = last = None
        for count in counts:
            data_file = root / f"million-{count}.img"
            with open(data_file, "wb") as f:
                f.writelines(frame + DELIMITER for _ in range(count))
            work = root / f"million-{count}"
            work.mkdir()
            place_data(data_file, work)  # untimed: the run's fetch is skipped
            sampler.reset()
            start = time.perf_counter()
            result = daskgif_run(data_file, work)
            elapsed = time.perf_counter() - start
            client_peak, worker_peak = sampler.client, sampler.worker
            size = len(json.dumps(ScheduledRun(1, start, start, start, True, result).to_json()))  # --json
            line = len(json.dumps(ScheduledRun(1, start, start, start, True, result).to_record()))  # history
            assert result.ok and len(result.frames) == count
            base = client_peak if base is None else base
            last = client_peak
            print(f"{count:>9,} {elapsed:8.1f} {elapsed / count * 1e3:9.3f} {client_peak / 2**20:10.0f} "
                  f"{worker_peak / 2**20:10.0f} {size / 1e3:8.1f} {line / 1e3:10.1f}", flush=True)
            shutil.rmtree(work, ignore_errors=True)
            data_file.unlink()
        print(f"client peak growth {counts[0]:,} -> {counts[-1]:,} frames: {(last - base) / 2**20:.0f} MB")
        sampler.stop.set()


# ---- a month of schedules: every process's memory over many scheduled runs --------------------

MB = 2**20


def rss_of(client: Client) -> dict[str, int]:
    """Resident memory of this process (client and scheduler) and of each of *client*'s workers."""
    workers = client.run(lambda: psutil.Process().memory_info().rss)
    return {"client+scheduler": psutil.Process().memory_info().rss,
            **{f"worker {i}": rss for i, (_, rss) in enumerate(sorted(workers.items()))}}


def object_counts() -> collections.Counter:
    """Live objects of this process by type, after a full collection."""
    gc.collect()
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def plain_fetch(url: str, data_file: str) -> str:
    if not os.path.exists(data_file):
        shutil.copyfile(url, data_file)
    return data_file


def plain_split(data_file: str, parts: int) -> list[list[tuple[int, bytes]]]:
    data = Path(data_file).read_bytes()
    frames = [(i, data[s.offset:s.offset + s.length]) for i, s in enumerate(split_bytes(data))]
    return [frames[i::parts] for i in range(parts)]


def plain_write(frames: list[tuple[int, bytes]], folder: str) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    for i, frame in frames:
        write_one(i, frame, folder)
    return [os.path.join(folder, f"frame_{i:02d}.gif") for i, _ in frames]


def plain_combine(paths: list[list[str]], out: str) -> str:
    with open(out, "wb") as f:
        for path in sorted(p for group in paths for p in group):
            f.write(Path(path).read_bytes())
    return out


def plain_graph(url: str, work: Path, parts: int = 4) -> Any:
    """Plain Dask of a daskgif run's shape: fetch, split, *parts* frame writes, combine, as ``dask.delayed``."""
    data_file = dask.delayed(plain_fetch, pure=False)(url, str(work / "image-data.img"))
    groups = dask.delayed(plain_split, nout=parts, pure=False)(data_file, parts)
    writes = [dask.delayed(plain_write, pure=False)(groups[i], str(work / "frames")) for i in range(parts)]
    return dask.delayed(plain_combine, pure=False)(writes, str(work / "clip.gif"))


def month(root: Path, runs: int, contenders: list[str], recycle: int | None, types: int,
          table_to: str | None = None) -> None:
    """Scheduled runs of the embedded sample, back to back: every process's RSS at checkpoints, growth after 100.

    Each contender runs in a process of its own (none reuses memory another freed), on its own cluster, the
    one ``daskgif run`` starts (scheduler in that process, runs page preloaded); ``cli`` is the schedule of
    ``daskgif run``'s own cluster, recycled every *recycle* runs (``daskgif.schedule.recycle-every``).
    """
    from daskgif.ops.cluster import connect
    from daskgif.ops.schedule import run_schedule
    from daskgif.pipeline.sample import sample_path

    marks = sorted({n for n in (10, 100, 300, 1000, 2000, 3000, 5000, 10_000, 30_000, 100_000) if n <= runs} | {runs})
    table: dict[str, dict[int, dict[str, int]]] = {}
    if len(contenders) > 1:
        for name in contenders:
            saved = root / f"{name}.json"
            subprocess.run([sys.executable, __file__, "--only", "month", "--runs", str(runs), "--contenders", name,
                            "--types", str(types), "--dir", str(root), "--table-to", str(saved),
                            *(["--recycle", str(recycle)] if recycle else [])], check=True)
            table[name] = {int(n): seen for n, seen in json.loads(saved.read_text()).items()}
        contenders = []
    for name in contenders:
        table[name] = seen = {}
        counts: dict[int, tuple] = {}
        current: dict[str, Any] = {}
        starts: list[float] = []
        closes: list[float] = []
        start = time.perf_counter()

        @contextlib.contextmanager
        def cluster() -> Any:
            began = time.perf_counter()
            with connect(preload=("daskgif.dashboard",)) as client:
                current["client"] = client
                starts.append(time.perf_counter() - began)
                yield client
                began = time.perf_counter()
            closes.append(time.perf_counter() - began)

        def sample(number: int, client: Client) -> None:
            if number in marks:
                gc.collect()
                seen[number] = rss_of(client)
                if types and number in (100, marks[-1]):
                    counts[number] = (object_counts(), client.run(object_counts))
                print(f"  {name}: run {number:,} at {time.perf_counter() - start:.0f} s; MB "  # as it goes: a long
                      + ", ".join(f"{p} {v / MB:.1f}" for p, v in seen[number].items()), flush=True)  # run may not end

        work = root / name
        work.mkdir()
        params = {"data_file": str(work / "image-data.img"), "out": str(work / "clip.gif")}
        with dask.config.set({"daskgif.schedule.recycle-every": recycle} if name == "cli" and recycle else {}), \
                contextlib.ExitStack() as stack:
            client = None if name == "cli" else stack.enter_context(cluster())
            if name == "plain":
                for number in range(1, runs + 1):
                    client.compute(plain_graph(sample_path(), work)).result()
                    sample(number, client)
            else:
                def on_result(run: Any) -> None:
                    assert run.ok, run.message
                    sample(run.number, current["client"])

                run_schedule(params, every=0.001, max_runs=runs, client=client, on_result=on_result, keep=1,
                             cluster=cluster if client is None else None, history=str(work / "history.jsonl"))
        took = time.perf_counter() - start
        print(f"{name}: {runs:,} runs in {took:.0f} s, {took / runs * 1e3:.0f} ms per run; {len(starts)} cluster(s), "
              f"a start {statistics.median(starts):.2f} s, a close {statistics.median(closes):.2f} s (medians)")
        if len(counts) == 2:
            (before, before_workers), (after, after_workers) = counts[100], counts[marks[-1]]
            for where, grown in [("client+scheduler", after - before)] + [
                    (f"worker {addr}", after_workers[addr] - before_workers.get(addr, collections.Counter()))
                    for addr in sorted(after_workers)]:
                print(f"  objects grown in {where}, run 100 -> {marks[-1]:,}: "
                      + ", ".join(f"{t} +{n}" for t, n in grown.most_common(types)))
    if table_to:
        Path(table_to).write_text(json.dumps(table[contenders[0]]))
        return
    first = min(marks, key=lambda n: (n < 100, n))  # run 100, or the first mark when there are fewer runs
    print(f"\nresident memory (MB) after run N; growth after run {first:,}")
    print(f"  {'contender':<10}{'process':<18}" + "".join(f"{f'run {n:,}':>12}" for n in marks) + f"{'growth':>10}")
    for name, seen in table.items():
        for process in seen[marks[-1]]:
            row = [seen[n].get(process, 0) / MB for n in marks]
            growth = (seen[marks[-1]][process] - seen[first][process]) / MB
            print(f"  {name:<10}{process:<18}" + "".join(f"{v:>12.1f}" for v in row) + f"{growth:>+10.1f}"
                  + ("" if growth <= 20 else "  over the 20 MB goal"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 round; the 27- and 1,000-frame sets only")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per contender (default 3)")
    parser.add_argument("--only", choices=[*SETS, "speed", "million", "month", "fixed", "perframe"], default="speed")
    parser.add_argument("--workers", type=int, default=4, help="worker processes of 1 thread")
    parser.add_argument("--contenders", default=None,
                        help="comma-separated names among: floor, original, plain, daskgif, there")
    parser.add_argument("--million", default="100000,1000000", help="frame counts of --only million")
    parser.add_argument("--runs", type=int, default=1000, help="scheduled runs of --only month")
    parser.add_argument("--recycle", type=int, default=None,
                        help="--only month: cli recycles its cluster every N runs (default daskgif.schedule.recycle-every)")
    parser.add_argument("--types", type=int, default=0, help="--only month: the N object types grown most")
    parser.add_argument("--table-to", default=None, help=argparse.SUPPRESS)  # --only month: one contender's table
    parser.add_argument("--dir", default=None, help="where the data and the outputs go (default: the temporary "
                        "folder); /dev/shm takes the disk's noise out of the figures")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    if args.only == "month":
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            return month(Path(tmp), args.runs, (args.contenders or "daskgif,plain,cli").split(","), args.recycle,
                         args.types, args.table_to)
    names = {"floor": "I/O floor", "original": "original", "plain": "plain dask.delayed", "daskgif": "daskgif",
             "there": "daskgif, data file already there"}
    contenders = [names[n] for n in (args.contenders or ",".join(names)).split(",")]
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, dask {dask.__version__}, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        print(f"data and outputs in {root.parent}")
        if args.only == "million":
            million(root, [int(n) for n in args.million.split(",")])
            return
        sets = list(SETS) if args.only == "speed" else [args.only] if args.only in SETS else []
        if args.quick and args.only == "speed":
            sets = ["27", "1000"]
        start = time.perf_counter()
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            print(f"LocalCluster of {args.workers} worker processes x 1 thread: started in "
                  f"{time.perf_counter() - start:.2f} s (in no figure)")
            sampler = Sampler(list(client.run(os.getpid).values()))
            sampler.start()
            if args.only == "fixed":
                fixed(root, max(args.rounds or 9, 7), args.workers)
                sets = []
            elif args.only == "perframe":
                perframe(root, rounds)
                sets = []
            for label in sets:
                run_set(label, *SETS[label], rounds, root, client, sampler, contenders)
            sampler.stop.set()


if __name__ == "__main__":
    main()
