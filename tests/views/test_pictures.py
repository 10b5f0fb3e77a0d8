"""Pictures of the pipeline and of a run: draw_pipeline, draw_run, Result.visualize, ``daskgif graph`` and dask's own visualize."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daskgif import build_graph
from daskgif.errors import RunFailed
from daskgif.gif.parse import parse_gif
from daskgif.views.pictures import LOOKS, count_frames, draw_pipeline, draw_run, load_run, save_picture
from daskgif.pipeline.sample import sample_path
from daskgif.gif.split import split_bytes
from frames import image_data, make_gif, make_palette, make_raw_gif

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
    done = daskgif("graph", "--picture", "graph.svg", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "Wrote graph.svg" in done.stdout
    svg = html.unescape((tmp_path / "graph.svg").read_text())
    assert svg.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in svg
    assert all(step in svg for step in STEPS)
    assert "clip.gif" in svg and f"{SAMPLE_FRAMES} frames" in svg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.svg"]  # nothing fetched or written


def test_daskgif_graph_takes_the_run_options(tmp_path):
    done = daskgif("graph", "--picture", "g.dot", "--out", "movie.gif", "--url", "https://example.com/a.img",
                   "--duration", "40", "--loop", "2", "--retries", "5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    source = (tmp_path / "g.dot").read_text()
    assert "movie.gif" in source and "40 ms per frame, play 2 times" in source and "retries=5" in source


def test_daskgif_graph_out_names_the_gif_as_in_run_and_still_takes_a_picture_for_one_release(tmp_path):
    """``--out`` is the GIF in ``run`` and ``graph``; ``graph --out g.dot``, its old meaning, still draws, with a note."""
    done = daskgif("graph", "--out", "g.dot", "--url", "https://example.com/a.img", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "Wrote g.dot\n", done.stderr
    assert "graph --out now names the GIF, as in run; write the picture with --picture g.dot" in done.stderr
    assert "clip.gif" in (tmp_path / "g.dot").read_text()
    from daskgif.cli import graph, run

    assert {p.name: p.opts for p in graph.params}["out"] == {p.name: p.opts for p in run.params}["out"] == ["--out"]


@pytest.mark.parametrize("args", [["--picture", "graph.jpg"], ["--duration", "-1"], ["--max-frames", "1"]])
def test_daskgif_graph_bad_usage_exits_2(tmp_path, args):
    done = daskgif("graph", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert list(tmp_path.iterdir()) == []


@needs_dot
def test_dask_visualize_labels_the_steps(tmp_path):
    path = tmp_path / "dask-graph.svg"
    build_graph(data_file=str(tmp_path / "x.img"), out=str(tmp_path / "clip.gif")).visualize(filename=str(path))
    svg = html.unescape(path.read_text())
    assert all(step in svg for step in ("fetch", "split", "map-frames", "combine"))


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


# --- A picture of a run: draw_run, Result.visualize, daskgif graph --run ---------------------------------------

def corrupt_frame() -> bytes:
    """A GIF whose blocks are intact but whose LZW codes do not decode: split passes it, write-frame fails."""
    raw = make_raw_gif(20, 10, make_palette(128), bytes(i % 128 for i in range(200)))
    start, _ = parse_gif(raw).images[0].data
    return raw[:start + 3] + b"\xfe" + raw[start + 4:]  # a code past the end of the LZW table


BAD = 3  # the map index of the corrupt frame


@pytest.fixture
def bad_data(tmp_path) -> Path:
    frames = [make_gif(12, 12, seed=i) for i in range(5)]
    frames[BAD] = corrupt_frame()
    path = tmp_path / "bad.img"
    path.write_bytes(image_data(frames))
    return path


def run_paths(tmp_path: Path, url: Path) -> dict:
    return {"url": str(url), "data_file": str(tmp_path / "data.img"), "out": str(tmp_path / "clip.gif"),
            "retries": 0, "retry_delay": 0}


def node(source: str, name: str) -> str:
    """The DOT statement of node *name*."""
    statements = (part.lstrip("\t") for part in source.split("\n\t"))
    return next(s for s in statements if s.startswith((f"{name} [", f'"{name}" [')))


def failed_result(tmp_path: Path, bad_data: Path):
    with pytest.raises(RunFailed, match=f"frame {BAD}") as info:
        build_graph(**run_paths(tmp_path, bad_data), on_error="raise").compute(scheduler="sync")
    return info.value.result


def test_a_failed_run_draws_its_steps_coloured_and_names_the_failed_frame(tmp_path, bad_data):
    result = failed_result(tmp_path, bad_data)
    picture = draw_run(result, filename=str(tmp_path / "run.dot"))
    source = (tmp_path / "run.dot").read_text()
    assert source == picture.source
    assert LOOKS["Success"]["fillcolor"] in node(source, "fetch") and "fetch\nSuccess, 1 attempt" in source
    assert LOOKS["Success"]["fillcolor"] in node(source, "split")
    write = node(source, "write-frame")
    assert LOOKS["Failed"]["fillcolor"] in write and "Failed" in write
    assert f"frame {BAD}: Failed after 1 attempt\nGifFormatError: frame {BAD} at byte" in source
    assert LOOKS["Failed"]["fillcolor"] in node(source, f"write-frame-{BAD}")
    assert "map-frames: Failed" in source
    combine = node(source, "combine")
    assert "combine\nnot run" in combine and "dashed" in combine and LOOKS["not run"]["fillcolor"] in combine
    assert "daskgif run FAILED" in source and f"task 'write-frame' (frame {BAD}) failed" in source


@needs_dot
def test_visualize_renders_svg_and_png(tmp_path, bad_data):
    result = failed_result(tmp_path, bad_data)
    draw_run(result, filename=str(tmp_path / "run"), format="svg")
    svg = html.unescape((tmp_path / "run.svg").read_text())
    assert "</svg>" in svg and f"frame {BAD}: Failed" in svg and LOOKS["Failed"]["fillcolor"] in svg
    draw_run(result, filename=str(tmp_path / "run.png"))
    assert (tmp_path / "run.png").read_bytes().startswith(MAGIC["png"])
    with pytest.raises(ValueError, match="format 'svg' does not match the file name"):
        draw_run(result, filename=str(tmp_path / "run.png"), format="svg")


def test_a_run_with_skipped_frames_is_green_and_amber(tmp_path, bad_data):
    result = build_graph(**run_paths(tmp_path, bad_data), on_error="skip").compute(scheduler="sync")
    source = draw_run(result).source
    write = node(source, "write-frame")
    assert "write-frame\n4 Success, 1 Skipped" in write and LOOKS["Skipped"]["fillcolor"] in write
    assert f"frame {BAD}: Skipped\nunreadable frame dropped" in source
    assert LOOKS["Success"]["fillcolor"] in node(source, "combine") and "Failed" not in source
    assert "daskgif run succeeded (4 frames" in source and str(tmp_path / "clip.gif") in source


def test_json_output_and_history_record_draw_alike(tmp_path, bad_data):
    result = failed_result(tmp_path, bad_data)
    as_json = draw_run(json.loads(json.dumps(result.to_dict()))).source
    assert as_json.split("\n\tedge")[1] == draw_run(result).source.split("\n\tedge")[1]  # all but the title
    assert f"task 'write-frame' (frame {BAD}) failed after 1 attempt" in as_json
    record = {"ok": False, "states": result.counts(), "message": "task failed", "run": 4,
              "start": "2026-01-02T02:00:00.000+00:00", "duration": 1.5,
              "parameters": {"data_file": "data.img", "out": "clip.gif"}}
    counted = draw_run(record).source
    assert LOOKS["Failed"]["fillcolor"] in node(counted, "write-frame") and "write-frame-" not in counted
    assert "fetch\nSuccess\"" in counted  # a history line keeps no attempts
    assert "run 4 · 2026-01-02 02:00:00 · 1.50 s" in counted
    assert "the embedded sample" in counted and "data.img" in counted


def test_many_failed_frames_are_named_up_to_a_few(tmp_path):
    records = {str(i): {"name": "write-frame", "state": "Failed", "attempts": 3, "index": i,
                        "message": f"OSError: disk full {i}"} for i in (40, 7, 12, 3, 99)}
    run = {"ok": False, "states": {"fetch": {"Success": 1}, "split": {"Success": 1},
                                   "write-frame": {"counts": {"Success": 1918, "Skipped": 2, "Failed": 5},
                                                   "records": records},
                                   "map-frames": {"Failed": 1}}}
    source = draw_run(run, max_named=3).source
    assert "write-frame\n1,918 Success, 2 Skipped, 5 Failed" in source
    assert [f"frame {i}: Failed after 3 attempts" in source for i in (3, 7, 12, 40, 99)] == [True] * 3 + [False] * 2
    assert "+4 more" in source  # two more failed, two skipped


def test_both_pictures_follow_the_steps_of_the_pipeline(tmp_path, monkeypatch):
    from daskgif.pipeline import steps

    upload = steps.Step("upload", lambda value, p: value, "copies the GIF to the archive")
    monkeypatch.setattr(steps, "STEPS", (*steps.STEPS, upload))
    plan = draw_pipeline(data_file=str(tmp_path / "x.img")).source
    assert "upload\ncopies the GIF to the archive" in plan and "out -> upload" in plan
    ran = draw_run({"ok": True, "states": {name: {"Success": 1} for name in ("fetch", "split", "combine")}}).source
    assert "upload\nnot run" in ran and 'combine -> upload [color="#9e9e9e" style=dashed]' in ran


def test_draw_run_refuses_what_is_not_a_run():
    with pytest.raises(ValueError, match="a run must be a daskgif Result, or a record with 'states'"):
        draw_run({"ok": True})


def test_load_run_picks_a_record(tmp_path):
    lines = [{"run": n, "ok": True, "states": {"fetch": {"Success": 1}}} for n in (1, 2, 3)]
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"cut short')
    assert load_run(str(path))["run"] == 3 and load_run(str(path), 0)["run"] == 1
    assert load_run(json.dumps(lines[1]))["run"] == 2
    pretty = tmp_path / "result.json"
    pretty.write_text(json.dumps(lines[0], indent=2))
    assert load_run(str(pretty))["run"] == 1
    with pytest.raises(ValueError, match=r"run index 3 is out of range: .* holds 3 run records \(0 to 2"):
        load_run(str(path), 3)
    with pytest.raises(ValueError, match="holds no run record"):
        load_run('{"ok": true}')


def test_daskgif_graph_draws_a_run_from_its_history(tmp_path, bad_data):
    done = daskgif("run", "--scheduler", "sync", "--url", str(bad_data), "--retries", "0", "--on-error", "raise",
                   "--history", "history.jsonl", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    done = daskgif("run", "--scheduler", "sync", "--url", str(bad_data), "--on-error", "skip",
                   "--history", "history.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    done = daskgif("graph", "--run", "history.jsonl", "--picture", "last.dot", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "Wrote last.dot\n", done.stderr
    last = (tmp_path / "last.dot").read_text()
    assert "write-frame\n4 Success, 1 Skipped" in last and LOOKS["Skipped"]["fillcolor"] in last
    assert "daskgif run succeeded (run 1" in last and "clip.gif" in last

    done = daskgif("graph", "--run", "history.jsonl", "--run-index", "0", "--picture", "first.dot", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first = (tmp_path / "first.dot").read_text()
    assert LOOKS["Failed"]["fillcolor"] in node(first, "write-frame") and "map-frames: Failed" in first
    assert "combine\nnot run" in first and "daskgif run FAILED" in first and f"frame {BAD}" in first


def test_daskgif_graph_draws_a_run_from_json_output(tmp_path, bad_data):
    done = daskgif("run", "--scheduler", "sync", "--url", str(bad_data), "--retries", "0", "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    (tmp_path / "run.json").write_text(done.stdout)
    for source in ("run.json", done.stdout.strip()):
        drawn = daskgif("graph", "--run", source, "--picture", "run.dot", cwd=tmp_path)
        assert drawn.returncode == 0, drawn.stderr
        assert f"frame {BAD}: Failed after 1 attempt" in (tmp_path / "run.dot").read_text()


@pytest.mark.parametrize("args, message", [
    (["--run", "h.jsonl", "--url", "x.img"], "--url does not apply"),
    (["--run", "h.jsonl", "--run-index", "1"], "run index 1 is out of range"),
    (["--run-index", "0"], "--run-index needs --run"),
    (["--run", "{not json"], "holds no run record"),
])
def test_daskgif_graph_run_bad_usage_exits_2(tmp_path, args, message):
    (tmp_path / "h.jsonl").write_text(json.dumps({"ok": True, "states": {"fetch": {"Success": 1}}}) + "\n")
    done = daskgif("graph", *args, "--picture", "x.dot", cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "x.dot").exists()


def test_daskgif_graph_run_missing_file_exits_1(tmp_path):
    done = daskgif("graph", "--run", "missing.jsonl", cwd=tmp_path)
    assert done.returncode == 1 and "Error: cannot read the run record missing.jsonl" in done.stderr
