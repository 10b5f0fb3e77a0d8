"""Benchmark a rerun after one failed frame against the full run that preceded it.

Run::

    python examples/bench_resume.py                 # 10,000 frames of 64x64, threads scheduler
    python examples/bench_resume.py --frames 2000 --scheduler sync

Three timed runs on one data file (already fetched: fetch is skipped in every one):

* ``full``: a fresh ``frames_dir``: every frame is read, checked (decoded) and written;
* ``failed``: a fresh ``frames_dir`` again, but the write of one frame fails
  (read-only file system): the run fails and its manifest records the others;
* ``rerun``: the same inputs: only the failed frame is written, the rest are
  reused from the manifest, and the GIF is joined.

The rerun must take at most 15 % of the full run.
"""

from __future__ import annotations

import argparse
import errno
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import daskgif
from daskgif import storage
from daskgif.gif.encode import encode_gif
from daskgif.errors import RunFailed


def make_data(path: Path, frames: int, size: int = 64, distinct: int = 32) -> None:
    """An image-data file of *frames* GIFs of *size* x *size*, cycling through *distinct* images."""
    rnd = random.Random(0)
    images = []
    for seed in range(distinct):
        palette = bytes(rnd.randrange(256) for _ in range(3 * 256))
        pixels = bytes((x + y + seed) % 256 if rnd.random() > 0.3 else rnd.randrange(256)
                       for y in range(size) for x in range(size))
        images.append(encode_gif(size, size, palette, pixels))
    path.write_bytes(b"".join(images[i % distinct] + b"\n\n\n\n" for i in range(frames)))


def timed(graph, scheduler: str):
    start = time.perf_counter()
    try:
        result = graph.compute(scheduler=scheduler)
    except RunFailed as e:
        result = e
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--scheduler", default="threads")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="daskgif-bench-resume-"))
    try:
        data = work / "image-data.img"
        make_data(data, args.frames)
        kwargs = {"url": str(data), "data_file": str(data), "out": str(work / "clip.gif"), "retry_delay": 0}
        failing_index = args.frames // 2
        failing_name = storage.frame_name(failing_index, args.frames)

        shutil.rmtree(work / "frames", ignore_errors=True)
        full, result = timed(daskgif.build_graph(**kwargs), args.scheduler)
        assert result.ok and result.reused == 0, result

        shutil.rmtree(work / "frames")
        write_bytes = storage.write_bytes

        def failing(path, data, storage_options=None):
            if path.endswith(failing_name):
                raise OSError(errno.EROFS, "Read-only file system", path)
            return write_bytes(path, data, storage_options)

        storage.write_bytes = failing
        try:
            failed, error = timed(daskgif.build_graph(**kwargs), args.scheduler)
        finally:
            storage.write_bytes = write_bytes
        assert isinstance(error, RunFailed), error

        rerun, again = timed(daskgif.build_graph(**kwargs), args.scheduler)
        assert again.ok and again.reused == args.frames - 1, again.reused
        ratio = rerun / full
        print(f"{args.frames:,} frames of 64x64, scheduler={args.scheduler}, {os.cpu_count()} cores")
        print(f"  full run              {full:8.2f} s")
        print(f"  run with 1 failure    {failed:8.2f} s  ({error.result.counts()['write-frame']})")
        print(f"  rerun                 {rerun:8.2f} s  ({again.reused:,} reused, 1 written)")
        print(f"  rerun / full          {ratio:8.1%}  (must be <= 15 %)")
        return 0 if ratio <= 0.15 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
