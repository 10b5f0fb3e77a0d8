"""``daskgif run --report``: Dask's performance report shows the pipeline's steps by name."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image


def test_report_names_the_pipeline_steps(tmp_path):
    done = subprocess.run([sys.executable, "-m", "daskgif", "run", "--report", "report.html", "--workers", "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "report.html").read_text()
    assert report.lstrip().lower().startswith("<!doctype html") or "<html" in report[:1000].lower()
    # The task stream names every task by its key prefix, as a quoted string in the plot's data.
    for prefix in ("fetch", "split", "map-frames", "write-frame", "combine"):
        assert f'"{prefix}"' in report, prefix
    with Image.open(tmp_path / "clip.gif") as gif:
        assert gif.n_frames > 1
