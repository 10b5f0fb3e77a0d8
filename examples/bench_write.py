"""Measure the per-frame cost of daskgif's write path, on one core, with no cluster.

The write path of one frame is what a ``write-frame`` batch does for it: read its
span of the data file, check it (structure walk and, by default, a decode with
Pillow), write it atomically, record its state and hand the state to the hook that
sends it as an event.  This script runs the real thing -- :func:`daskgif.core.fanout.run_batch`
with the pipeline's own ``write-frame`` :class:`~daskgif.core.task.Task` -- on one batch
of small frames, in this process, and prints milliseconds per frame (median of the
rounds, min-max), then a cProfile summary of one more round::

    python examples/bench_write.py                      # 1,000 frames of 64x64, 7 rounds
    python examples/bench_write.py --frames 5000 --size 32 --validate structure
    python examples/bench_write.py --no-profile --rounds 15

Every round writes into a fresh folder, so each frame file is really written
(``--rerun`` measures the rerun in place instead, where identical frames are left
as they are).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import daskgif
import daskgif.pipeline.graph
import daskgif.storage
from daskgif.core.fanout import run_batch

DELIMITER = b"\n\n\n\n"


def make_data(path: Path, count: int, size: int, distinct: int = 27) -> None:
    """Write *count* GIF frames of *size* x *size* (Pillow-encoded, 256 colours) joined by the delimiter."""
    rnd = np.random.default_rng(0)
    frames = []
    for _ in range(min(count, distinct)):
        rgb = rnd.integers(0, 256, (size, size, 3), dtype="uint8")
        buf = io.BytesIO()
        Image.fromarray(rgb).quantize(256).save(buf, format="GIF")
        frames.append(buf.getvalue())
    with open(path, "wb") as f:
        f.writelines(frames[i % len(frames)] + DELIMITER for i in range(count))


def one_batch(data_file: Path, frames_dir: Path, validate: str):
    """Return a function that writes every frame of *data_file* into *frames_dir*, as one batch does."""
    import dask

    with dask.config.set({"daskgif.validate": validate}):
        pipeline = daskgif.build_graph(data_file=str(data_file), out=str(frames_dir.parent / "clip.gif"),
                                       frames_dir=str(frames_dir))
    p = pipeline.params
    from daskgif.pipeline.steps import split, write_frame

    spans = split(str(data_file), p)
    task = p.task(write_frame, "write-frame")

    def run() -> None:
        # What map_frames gives every batch: the run's Params, the frame count, the data file's reader,
        # and the compact table of the frames written (the last two only where daskgif has them: the
        # script also measures older versions, for a before/after).
        kwargs = {"p": p, "count": len(spans)}
        extra = {}
        if hasattr(daskgif.storage, "SpanReader"):
            kwargs["source"] = daskgif.storage.SpanReader(p.data_file, p.storage_options)
        if hasattr(daskgif.pipeline.graph, "FrameTable"):
            extra["collect"] = functools.partial(daskgif.pipeline.frames.FrameTable, p.frames_dir, len(spans))
        mapped = run_batch(task, kwargs, None, extra.get("collect"), 0, spans)
        assert mapped.states.counts == {"Success": len(spans)}, mapped.states.counts

    return run, len(spans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="frame width and height in pixels")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--validate", choices=["decode", "structure"], default="decode")
    parser.add_argument("--rerun", action="store_true", help="write into the same folder every round")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--dir", default=None, help="where to write (default: the temporary folder); "
                        "/dev/shm takes the disk's noise out of the figure")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}) if hasattr(os, "sched_setaffinity") else None
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        data_file = root / "image-data.img"
        make_data(data_file, args.frames, args.size)
        times = []
        for r in range(args.rounds + 1):  # round 0 warms the imports and the page cache
            frames_dir = root / ("frames" if args.rerun else f"frames-{r}")
            run, count = one_batch(data_file, frames_dir, args.validate)
            start = time.perf_counter()
            run()
            if r:
                times.append((time.perf_counter() - start) / count * 1e3)
            if not args.rerun and r:
                shutil.rmtree(root / f"frames-{r - 1}", ignore_errors=True)
        median = statistics.median(times)
        print(f"write path, {count} frames of {args.size}x{args.size}, validate={args.validate}"
              f"{', rerun in place' if args.rerun else ''}, one core, Python {sys.version.split()[0]}, in {args.dir or tempfile.gettempdir()}:")
        print(f"  {median:.3f} ms/frame (min {min(times):.3f}, max {max(times):.3f}, {args.rounds} rounds)")
        if not args.no_profile:
            run, _ = one_batch(data_file, root / ("frames" if args.rerun else "frames-profile"), args.validate)
            profile = cProfile.Profile()
            profile.runcall(run)
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(args.top)
            print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])


if __name__ == "__main__":
    main()
