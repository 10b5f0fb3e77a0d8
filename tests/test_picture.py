"""Pictures of the pipeline: draw_pipeline, save_picture, ``daskgif graph`` and dask's own visualize."""

from __future__ import annotations

import html
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daskgif import build_graph
from daskgif.picture import count_frames, draw_pipeline, save_picture
from daskgif.sample import sample_path
from daskgif.split import split_bytes

SAMPLE_FRAMES = len(split_bytes(Path(sample_path()).read_bytes()))
STEPS = ("fetch", "split", "write-frame", "combine")
MAGIC = {"svg": b"<svg", "png": b"\x89PNG", "pdf": b"%PDF"}

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")


def daskgif(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daskgif", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_remote_data_is_drawn_as_one_symbolic_frame(tmp_path):
    source = draw_pipeline(url="https://example.com/all-images.img", data_file=str(tmp_path / "none.img")).source
    assert all(step in source for step in STEPS)
    assert "write-frame [i]" in source and "frames known at run time" in source
    assert "https://example.com/all-images.img" in source and "retries=2, delay 10 s" in source


def test_local_data_shows_the_real_frame_count_capped(tmp_path):
    source = draw_pipeline(data_file=str(tmp_path / "image-data.img"), max_frames=3).source
    assert f"{SAMPLE_FRAMES} frames" in source and "the embedded sample" in source
    assert "write-frame [0]" in source and "write-frame [1]" in source
    assert f"write-frame [{SAMPLE_FRAMES - 1}]" in source and "write-frame [2]" not in source
    assert f"… {SAMPLE_FRAMES - 2} more" in source
    assert "Skipped" not in source


def test_existing_data_file_draws_fetch_skipped(tmp_path):
    data_file = tmp_path / "image-data.img"
    data_file.write_bytes(Path(sample_path()).read_bytes())
    assert count_frames(str(data_file)) == SAMPLE_FRAMES
    assert "Skipped" in draw_pipeline(data_file=str(data_file)).source
    assert "Skipped" not in draw_pipeline(data_file=str(data_file), force=True).source


def test_unreadable_or_remote_data_has_no_count(tmp_path):
    garbage = tmp_path / "garbage.img"
    garbage.write_bytes(b"GIF89a and then nothing")
    assert count_frames(str(garbage)) is None
    assert count_frames("s3://bucket/image-data.img") is None
    assert count_frames(str(tmp_path / "missing.img")) is None


@needs_dot
@pytest.mark.parametrize("fmt", ["svg", "png", "pdf"])
def test_save_picture_renders_by_suffix(tmp_path, fmt):
    path = tmp_path / f"graph.{fmt}"
    assert save_picture(draw_pipeline(data_file=str(tmp_path / "x.img")), str(path)) == str(path)
    assert MAGIC[fmt] in path.read_bytes()[:400]


def test_save_picture_writes_dot_source_and_refuses_unknown_suffix(tmp_path):
    picture = draw_pipeline(data_file=str(tmp_path / "x.img"))
    save_picture(picture, str(tmp_path / "graph.dot"))
    assert (tmp_path / "graph.dot").read_text() == picture.source
    with pytest.raises(ValueError, match=r"must end in one of .*got '.*graph\.jpg'"):
        save_picture(picture, str(tmp_path / "graph.jpg"))


@needs_dot
def test_daskgif_graph_writes_an_svg_naming_the_four_steps(tmp_path):
    done = daskgif("graph", "--out", "graph.svg", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Wrote graph.svg" in done.stdout
    svg = html.unescape((tmp_path / "graph.svg").read_text())
    assert svg.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in svg
    assert all(step in svg for step in STEPS)
    assert "clip.gif" in svg and f"{SAMPLE_FRAMES} frames" in svg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.svg"]  # nothing fetched or written


def test_daskgif_graph_takes_the_run_options(tmp_path):
    done = daskgif("graph", "--out", "g.dot", "--gif", "movie.gif", "--url", "https://example.com/a.img",
                   "--duration", "40", "--loop", "2", "--retries", "5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    source = (tmp_path / "g.dot").read_text()
    assert "movie.gif" in source and "40 ms per frame, play 2 times" in source and "retries=5" in source


@pytest.mark.parametrize("args", [["--out", "graph.jpg"], ["--duration", "-1"], ["--max-frames", "1"]])
def test_daskgif_graph_bad_usage_exits_2(tmp_path, args):
    done = daskgif("graph", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert list(tmp_path.iterdir()) == []


@needs_dot
def test_dask_visualize_labels_the_steps(tmp_path):
    path = tmp_path / "dask-graph.svg"
    build_graph(data_file=str(tmp_path / "x.img"), out=str(tmp_path / "clip.gif")).visualize(filename=str(path))
    svg = html.unescape(path.read_text())
    assert all(step in svg for step in ("fetch", "split", "map-frames", "combine", "finish"))


def test_missing_dot_program_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    with pytest.raises(FileNotFoundError, match=r"dot program was not found; install Graphviz to render svg \(Debian/Ubuntu: apt-get install graphviz\), or write a \.dot file"):
        save_picture(draw_pipeline(data_file=str(tmp_path / "x.img")), str(tmp_path / "graph.svg"))
    assert not (tmp_path / "graph.svg").exists()


def test_missing_graphviz_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz now raises ImportError
    with pytest.raises(ImportError, match=r"pip install graphviz .*apt-get install graphviz"):
        draw_pipeline(data_file=str(tmp_path / "x.img"))


def test_labels_show_no_internal_flags(tmp_path):
    source = draw_pipeline(data_file=str(tmp_path / "x.img")).source
    assert "skip_on_upstream_skip" not in source and "=False" not in source


def test_frames_are_drawn_in_a_frames_folder_next_to_the_output(tmp_path):
    assert "frames/frame_00.gif" in draw_pipeline(data_file=str(tmp_path / "x.img")).source
    source = draw_pipeline(url="https://example.com/a.img", data_file=str(tmp_path / "x.img"),
                           out="s3://bucket/etl/clip.gif").source
    assert "s3://bucket/etl/frames/frame_<i>.gif" in source
