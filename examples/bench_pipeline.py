"""Benchmark the whole pipeline against the original method and a hand-written Dask version.

Run::

    python examples/bench_pipeline.py            # all sets, 5 warm repetitions
    python examples/bench_pipeline.py --quick    # 3 repetitions, no 10,000-frame memory run
    python examples/bench_pipeline.py --only scaling --workers 1,8,16   # on a 16-core machine

Contenders, all on the same ``LocalCluster`` (4 worker processes x 1 thread,
like the original example) and the same data file, in one process:

* ``original``: the original example's method in one process: split the file,
  write every frame, decode each with imageio, ``imageio.mimsave`` the GIF.
* ``plain-dask``: that flow written by hand with ``dask.delayed``, one task per
  frame (the frames' bytes travel through the graph, as in the original).
* ``daskgif``: ``build_graph(...).compute()`` with the data file already there
  (fetch is skipped: the graph run only).

Then the memory run: 1,000 and 10,000 frames of 500x375 through ``daskgif run
--workers 4`` in a fresh process (cluster start included in the time), sampling
every 10 ms the resident memory of that process (the client, which hosts the
scheduler) and of every worker process it starts.

Last, the scaling run: PNG frames, which each task must convert to GIF (CPU-bound
work), on clusters of 1, 2, ... workers.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dask
import imageio.v2 as imageio
import numpy as np
import psutil
from distributed import Client, LocalCluster
from PIL import Image

import daskgif
from daskgif.split import split_bytes

DELIMITER = b"\n\n\n\n"


def make_frames(count: int, width: int, height: int, distinct: int, seed: int = 0) -> list[bytes]:
    """Return *count* GIF frames (Pillow-encoded, 256 colours), cycling through *distinct* images."""
    rnd = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(min(count, distinct)):
        phase = i / max(distinct, 1) * 2 * np.pi
        rgb = np.stack([
            127 + 120 * np.sin(x / 23 + phase), 127 + 120 * np.cos(y / 17 - phase), 127 + 120 * np.sin((x + y) / 31),
        ], axis=-1) + rnd.normal(0, 12, (height, width, 3))
        image = Image.fromarray(np.clip(rgb, 0, 255).astype("uint8")).quantize(256)
        buf = io.BytesIO()
        image.save(buf, format="GIF")
        frames.append(buf.getvalue())
    return [frames[i % len(frames)] for i in range(count)]


def write_data(path: Path, frames: list[bytes]) -> None:
    with open(path, "wb") as f:
        f.writelines(frame + DELIMITER for frame in frames)


# ---- the original method, one process -------------------------------------------------------

def original(data_file: Path, work: Path) -> None:
    data = data_file.read_bytes()
    paths = []
    for i, span in enumerate(split_bytes(data)):
        path = work / f"frame_{i:02d}.gif"
        path.write_bytes(data[span.offset:span.offset + span.length])
        paths.append(path)
    imageio.mimsave(work / "clip.gif", [imageio.imread(p) for p in paths], duration=100, loop=0)


# ---- the same flow written by hand with dask.delayed, one task per frame ----------------------

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
    frames = client.submit(split_to_frames, str(data_file), pure=False).result()
    writes = [dask.delayed(write_one)(i, frame, str(work)) for i, frame in enumerate(frames)]
    dask.delayed(combine_imageio)(writes, str(work / "clip.gif")).compute()


# ---- daskgif ---------------------------------------------------------------------------------

def run_daskgif(data_file: Path, work: Path) -> None:
    result = daskgif.build_graph(data_file=str(data_file), out=str(work / "clip.gif"), frames_dir=str(work)).compute()
    assert result.ok


def timed(func, *args, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func(*args)
        times.append(time.perf_counter() - start)
    return times


def peak_rss(command: list[str], interval: float = 0.01) -> dict[str, int]:
    """Run *command* and return the peak resident memory of it and of each process it starts."""
    peaks: dict[str, int] = {}
    with tempfile.TemporaryFile() as log:
        proc = psutil.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        while proc.poll() is None:
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    cmdline = " ".join(p.cmdline())
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                if p is proc:
                    name = "client+scheduler"
                elif "spawn_main" in cmdline:
                    name = f"worker {p.pid}"
                elif "resource_tracker" in cmdline:
                    name = "resource tracker"
                else:
                    name = p.name()
                peaks[name] = max(peaks.get(name, 0), rss)
            time.sleep(interval)
        if proc.returncode:
            log.seek(0)
            raise SystemExit(f"{' '.join(command)} exited with {proc.returncode}:\n{log.read().decode()[-3000:]}")
    return peaks


def describe(times: list[float]) -> str:
    return f"{statistics.median(times):7.3f} s ({min(times):.3f}-{max(times):.3f})"


def speed(repeat: int, sets: list[tuple[str, int, int, int]], root: Path) -> None:
    start = time.perf_counter()
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        print(f"cluster start: {time.perf_counter() - start:.2f} s")
        print(f"{'set':<28} {'contender':<11} {'median (min-max)':<26} {'vs original':>11}")
        for label, count, width, height in sets:
            data_file = root / f"{count}-{width}x{height}.img"
            write_data(data_file, make_frames(count, width, height, distinct=min(count, 27)))
            first = timed(run_daskgif, data_file, root / "first", repeat=1)[0]
            results = {}
            for name, func, args in [
                ("original", original, (data_file, root / "orig")),
                ("plain-dask", plain_dask, (client, data_file, root / "plain")),
                ("daskgif", run_daskgif, (data_file, root / "daskgif")),
            ]:
                for sub in args:
                    if isinstance(sub, Path) and sub.suffix != ".img":
                        sub.mkdir(exist_ok=True)
                func(*args)  # warm-up
                results[name] = timed(func, *args, repeat=repeat)
            base = statistics.median(results["original"])
            for name, times in results.items():
                print(f"{label:<28} {name:<11} {describe(times):<26} {statistics.median(times) / base:10.2f}x")
            ratio = statistics.median(results["plain-dask"]) / statistics.median(results["daskgif"])
            print(f"{label:<28} daskgif first run {first:.3f} s; {ratio:.1f}x faster than plain-dask")


def memory(counts: list[int], root: Path) -> None:
    """Peak memory of ``daskgif run`` (a fresh process, as a user runs it) per process."""
    frames = make_frames(27, 500, 375, distinct=27)
    print(f"\n{'frames':>7} {'input MB':>9} {'time s':>7}  peak RSS per process (MB)")
    for count in counts:
        data_file = root / f"mem-{count}.img"
        write_data(data_file, [frames[i % 27] for i in range(count)])
        out = root / f"mem-{count}"
        out.mkdir()
        size = data_file.stat().st_size
        start = time.perf_counter()
        peaks = peak_rss([sys.executable, "-m", "daskgif", "run", "--data-file", str(data_file),
                          "--out", str(out / "clip.gif"), "--frames-dir", str(out), "--workers", "4", "--json"])
        elapsed = time.perf_counter() - start
        data_file.unlink()
        listed = ", ".join(f"{name} {rss / 2**20:.0f}" for name, rss in sorted(peaks.items()))
        print(f"{count:>7} {size / 1e6:>9.0f} {elapsed:>7.2f}  {listed}")


def make_pngs(count: int, size: int, seed: int = 0) -> list[bytes]:
    """Return *count* photographic-looking PNG frames: each must be quantized to become a GIF."""
    rnd = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        rgb = rnd.integers(0, 256, (size // 16, size // 16, 3), dtype="uint8")
        image = Image.fromarray(rgb).resize((size, size), Image.BICUBIC)
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=1)
        frames.append(buf.getvalue())
    return frames


def scaling(workers: list[int], root: Path, repeat: int) -> None:
    """Speed-up with the worker count when the per-frame work is CPU-bound (PNG -> GIF)."""
    data_file = root / "png.img"
    write_data(data_file, make_pngs(200, 500))
    print(f"\nscaling: 200 PNG frames of 500x500, converted to GIF per frame ({os.cpu_count()} cores here)")
    base = None
    for n in workers:
        out = root / f"png-{n}"
        out.mkdir()
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                Client(cluster):
            run_daskgif(data_file, out)  # warm-up
            median = statistics.median(timed(run_daskgif, data_file, out, repeat=repeat))
        base = base or median
        print(f"{n:>3} workers: {median:.2f} s, speed-up {base / median:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 repetitions, skip the 10,000-frame memory run")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--workers", default="1,2", help="worker counts for the scaling run, e.g. 1,8,16")
    parser.add_argument("--only", choices=["speed", "memory", "scaling"], default=None)
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 5)
    sets = [("27 frames 500x375", 27, 500, 375), ("1,000 frames 64x64", 1000, 64, 64),
            ("10,000 frames 64x64", 10_000, 64, 64)]
    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.only in (None, "speed"):
            speed(repeat, sets, root)
        if args.only in (None, "memory"):
            memory([1000] if args.quick else [1000, 10_000], root)
        if args.only in (None, "scaling"):
            scaling([int(n) for n in args.workers.split(",")], root, repeat)


if __name__ == "__main__":
    main()
