"""Benchmark: joining GIF frames with daskgif vs decoding + imageio.mimsave vs Pillow save_all.

Usage::

    python examples/bench_join.py [--quick] [--reps N]

Two frame sets are generated (numpy + Pillow, photographic-ish gradients and noise
quantised to 256 colours, so the LZW data is realistic):

- ``large``: 27 frames of 500x375, as in the original data file;
- ``many``: 10,000 frames of 64x64.

Each method runs in a fresh subprocess per repetition, starting from the frames as a
list of bytes in memory and writing the animated GIF to a file:

- ``daskgif``: :func:`daskgif.gif.join.join_gifs`, byte-level and streaming;
- ``original``: the original example's way, ``iio.imread`` of every frame, then
  ``imageio.mimsave(out, frames, duration=..., loop=0)``;
- ``pillow``: ``Image.open`` of every frame, then ``save(save_all=True, ...)``.

Time is the median (min-max) of the repetitions; peak memory is the growth of the
process's maximum resident set size (``ru_maxrss``) over the run, above what the
process held once the frames were loaded (the largest over the repetitions).  For
daskgif, whose join stays below that mark, it is the peak of the join's own
allocations (``tracemalloc``, in a second, untimed call).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

DURATION = 100
SETS = {"large": (27, 500, 375, 27), "many": (10_000, 64, 64, 250)}  # count, width, height, distinct frames


def make_frames(count: int, width: int, height: int, distinct: int) -> list[bytes]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    unique = []
    for i in range(distinct):
        phase = i / distinct * 2 * np.pi
        channels = [
            128 + 60 * np.sin(x / (17 + 5 * c) + phase * (c + 1)) + 50 * np.cos(y / (23 + 7 * c) - phase)
            + rng.normal(0, 18, (height, width))
            for c in range(3)
        ]
        rgb = np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
        image = Image.fromarray(rgb, "RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
        out = io.BytesIO()
        image.save(out, "GIF")
        unique.append(out.getvalue())
    return [unique[i % distinct] for i in range(count)]


def run_daskgif(frames: list[bytes], out: str) -> None:
    from daskgif.gif.join import join_gifs

    with open(out, "wb") as f:
        join_gifs(frames, f, duration=DURATION, loop=0)


def run_original(frames: list[bytes], out: str) -> None:
    import imageio
    import imageio.v3 as iio

    images = [iio.imread(frame, index=0) for frame in frames]
    imageio.mimsave(out, images, duration=DURATION, loop=0)


def run_pillow(frames: list[bytes], out: str) -> None:
    from PIL import Image

    images = [Image.open(io.BytesIO(frame)) for frame in frames]
    images[0].save(out, save_all=True, append_images=images[1:], duration=DURATION, loop=0)


METHODS = {"daskgif": run_daskgif, "original": run_original, "pillow": run_pillow}


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def worker(method: str, data_file: str, out: str) -> None:
    """Run one method once in this (fresh) process; print seconds and peak MB."""
    from daskgif.gif.split import split_frames

    with open(data_file, "rb") as f:
        spans = list(split_frames(f, chunk_size=2**20))
        frames = []
        for span in spans:  # one frame at a time, so the baseline holds the frames once
            f.seek(span.offset)
            frames.append(f.read(span.length))
    func = METHODS[method]
    if method != "daskgif":  # import the decoders before the baseline, as daskgif's import is
        import imageio.v3  # noqa: F401
        from PIL import GifImagePlugin  # noqa: F401
    else:
        import daskgif.gif.join  # noqa: F401
    before = maxrss_mb()
    start = time.perf_counter()
    func(frames, out)
    elapsed = time.perf_counter() - start
    grown = max(0.0, maxrss_mb() - before)
    if method == "daskgif":
        # ru_maxrss cannot see below the frames already held; count the join's own allocations.
        import tracemalloc

        tracemalloc.start()
        func(frames, out)
        grown = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    print(f"{elapsed} {grown} {os.path.getsize(out)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition of each slow method")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each method (default 5)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (count, width, height, distinct) in SETS.items():
            frames = make_frames(count, width, height, distinct)
            data_file = os.path.join(tmp, f"{name}.img")
            with open(data_file, "wb") as f:
                f.write(b"".join(frame + b"\n\n\n\n" for frame in frames))
            size = sum(map(len, frames))
            print(f"{name}: {count} frames of {width}x{height}, {size / 2**20:.1f} MB", file=sys.stderr)
            results = {}
            for method in METHODS:
                reps = args.reps if method == "daskgif" or not args.quick else 1
                if name == "many" and method != "daskgif":
                    reps = min(reps, 1 if args.quick else 3)
                times, peaks = [], []
                for _ in range(reps):
                    out = os.path.join(tmp, f"{name}-{method}.gif")
                    line = subprocess.run([sys.executable, __file__, "--worker", method, data_file, out],
                                          capture_output=True, text=True, check=True).stdout.split()
                    times.append(float(line[0]))
                    peaks.append(float(line[1]))
                    out_size = int(line[2])
                results[method] = (times, max(peaks), out_size)
                print(f"  {method}: {statistics.median(times):.3f} s", file=sys.stderr)
            base_time = statistics.median(results["original"][0])
            base_peak = results["original"][1]
            for method, (times, peak, out_size) in results.items():
                median = statistics.median(times)
                rows.append((name, method, len(times), median, min(times), max(times), peak, out_size,
                             base_time / median, peak / base_peak if base_peak else float("nan")))
    header = ("set", "method", "reps", "median s", "min-max s", "peak MB", "out MB", "speed-up", "memory")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, method, reps, median, lo, hi, peak, out_size, speed, mem in rows:
        print(f"| {name} | {method} | {reps} | {median:.3f} | {lo:.3f}-{hi:.3f} | {peak:.2f} | "
              f"{out_size / 2**20:.1f} | {speed:.0f}x | {mem:.2f} |")


if __name__ == "__main__":
    main()
