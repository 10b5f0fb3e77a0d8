"""Bad image data, end to end: each fails clearly, or is dropped with ``on_error="skip"``; odd but valid data works.

A bad run fails with :class:`~daskgif.errors.RunFailed` (exit status 1 from the
command line) whose message names the frame index and the byte offset; an
existing output is left as it was and no temporary (``.part``) file remains.
"""

from __future__ import annotations

import io
import threading
import json
import logging
import random
from pathlib import Path

import dask
import pytest
from click.testing import CliRunner
from PIL import Image

from daskgif import build_graph
from daskgif.cli import main
from daskgif.errors import RunFailed
from daskgif.gif.parse import parse_gif
from daskgif.gif.split import WHITESPACE, split_bytes
from daskgif.pipeline.sample import sample_path
from frames import decode_rgb, image_data, make_gif, make_jpeg, make_palette, make_png, make_raw_gif, newline_palette

NL4 = b"\n\n\n\n"
CRLF4 = b"\r\n\r\n\r\n\r\n"
GOOD = [make_gif(16, 12, seed=i) for i in range(3)]
G0 = len(GOOD[0]) + len(NL4)  # offset of frame 1 when frame 0 is GOOD[0]


def with_screen(gif: bytes, width: int, height: int) -> bytes:
    return gif[:6] + width.to_bytes(2, "little") + height.to_bytes(2, "little") + gif[10:]


def noise(n: int, seed: int = 1) -> bytes:
    data = bytes(random.Random(seed).randrange(256) for _ in range(n))
    assert data[0] not in WHITESPACE
    return data


def paths(tmp_path: Path, **kwargs) -> dict:
    """The data file is written by the test: the URL names it, so it is used as it is."""
    data_file = str(tmp_path / "image-data.img")
    return {"url": data_file, "data_file": data_file, "out": str(tmp_path / "clip.gif"),
            "frames_dir": str(tmp_path / "frames"), "retry_delay": 0, **kwargs}


def part_files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in tmp_path.rglob("*") if p.name.endswith(".part"))


@pytest.fixture
def cli(monkeypatch):
    """Invoke ``daskgif`` in this process; the CLI's logging setup is undone afterwards."""
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))
    level = logging.getLogger("daskgif").level
    try:
        yield lambda *args: CliRunner().invoke(main, list(args))
    finally:
        logging.getLogger("daskgif").setLevel(level)


MIDDLE = image_data([GOOD[0], GOOD[1][:-40], GOOD[2]])

# name: (data, frame index, byte offset, words of the message, config)
BAD = {
    "empty file": (b"", 0, 0, "no frames found in 0 bytes", {}),
    "only delimiters": (NL4 * 3 + b"\r\n", 0, 14, "got only delimiters and whitespace", {}),
    "random bytes": (noise(3000), 0, 0, "not an image: expected b'GIF8'", {}),
    "random bytes between frames": (image_data([GOOD[0], noise(300, 2), GOOD[1]]), 1, G0, "not an image", {}),
    "truncated in LZW data, last frame": (image_data([GOOD[0], GOOD[1][:-40]], trailing=False), 1,
                                          G0 + len(GOOD[1]) - 40, "truncated in image data", {}),
    # The walk reads on over the next frame, a whole image after a delimiter: that is where frame 1 should end.
    "truncated in LZW data, middle frame": (MIDDLE, 1, G0, f"expected the frame to end at the delimiter at byte "
                                            f"{G0 + len(GOOD[1]) - 40}, which a whole image follows", {}),
    "zero-size logical screen": (image_data([GOOD[0], with_screen(GOOD[1], 0, 12), GOOD[2]]), 1, G0 + 6,
                                 "zero-size logical screen 0x12", {}),
    "absurd logical screen": (image_data([GOOD[0], with_screen(GOOD[1], 65535, 65535), GOOD[2]]), 1, G0 + 6,
                              "screen of 65535x65535 pixels is larger than max_pixels=89478485", {}),
    "screen over a configured max-pixels": (image_data([GOOD[0], make_gif(40, 40), GOOD[2]]), 1, G0 + 6,
                                            "larger than max_pixels=1000", {"daskgif.max-pixels": 1000}),
    # A PNG frame is refused from its header: its start is the offset (its bytes are converted, not a GIF's).
    "PNG frame over a configured max-pixels": (image_data([GOOD[0], make_png(40, 40), GOOD[2]]), 1, G0,
                                               "image of 40x40 pixels is larger than max_pixels=1000",
                                               {"daskgif.max-pixels": 1000}),
    "colour table longer than the bytes left": (image_data([GOOD[0], GOOD[1][:200]]), 1, G0 + 13,
                                                "global colour table of 768 bytes runs past the end", {}),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_fails_naming_frame_and_offset(tmp_path, name):
    data, frame, offset, words, cfg = BAD[name]
    (tmp_path / "image-data.img").write_bytes(data)
    (tmp_path / "clip.gif").write_bytes(b"previous run")
    with dask.config.set(cfg), pytest.raises(RunFailed) as info:
        build_graph(**paths(tmp_path)).compute(scheduler="sync")
    message = str(info.value)
    assert f"frame {frame} at byte {offset}:" in message and words in message, message
    assert "1 attempt:" in message  # bad data is not retried
    assert (tmp_path / "clip.gif").read_bytes() == b"previous run"
    assert part_files(tmp_path) == []
    assert info.value.result.ok is False


@pytest.mark.parametrize("name", ["empty file", "random bytes", "truncated in LZW data, middle frame",
                                  "zero-size logical screen", "colour table longer than the bytes left"])
def test_bad_input_exits_1_from_the_command_line(tmp_path, cli, name):
    data, frame, offset, words, _ = BAD[name]
    (tmp_path / "image-data.img").write_bytes(data)
    (tmp_path / "clip.gif").write_bytes(b"previous run")
    done = cli("run", "--scheduler", "sync", "--data-file", str(tmp_path / "image-data.img"),
               "--url", str(tmp_path / "image-data.img"),
               "--out", str(tmp_path / "clip.gif"), "--frames-dir", str(tmp_path / "frames"))
    assert done.exit_code == 1, done.output
    assert f"frame {frame} at byte {offset}:" in done.output and words in done.output
    assert (tmp_path / "clip.gif").read_bytes() == b"previous run"
    assert part_files(tmp_path) == []


# --- on_error="skip" -------------------------------------------------------------------------------


def test_skip_drops_unreadable_frames_and_writes_the_rest(tmp_path, cli):
    # Noise after an intact frame: after a damaged one it would be taken for more of that frame (see test_split).
    broken = [noise(200, 3), GOOD[1][:-40], with_screen(GOOD[1], 0, 12), with_screen(GOOD[1], 65535, 65535),
              GOOD[1][:200]]
    frames = [GOOD[0], *broken[:-1], GOOD[2], broken[-1]]
    data = image_data(frames)
    (tmp_path / "image-data.img").write_bytes(data)
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "frame_03.gif").write_bytes(GOOD[1])  # an earlier run's frame 3: not this run's
    result = build_graph(**paths(tmp_path), on_error="skip").compute(scheduler="sync")
    assert result.ok
    states = result.states["write-frame"]
    assert states.counts == {"Success": 2, "Skipped": 5} and list(states) == [1, 2, 3, 4, 6]
    assert sorted(p.name for p in (tmp_path / "frames").glob("frame_*")) == ["frame_00.gif", "frame_05.gif"]
    offsets = [data.index(f) for f in frames]
    for i, words in [(1, "cannot read the image"), (2, "truncated in image data"), (3, "zero-size logical screen"),
                     (4, "larger than max_pixels"), (6, "colour table of 768 bytes runs past the end")]:
        assert states[i].state == "Skipped"
        assert f"unreadable frame dropped: frame {i} at byte " in states[i].message and words in states[i].message
    assert f"frame 3 at byte {offsets[3] + 6}:" in states[3].message
    assert f"frame 1 at byte {offsets[1]}:" in states[1].message
    gif = Path(result.path).read_bytes()
    assert decode_rgb(gif) == [decode_rgb(GOOD[0])[0], decode_rgb(GOOD[2])[0]]
    assert [Path(p).name for p in result.frames] == ["frame_00.gif", "frame_05.gif"]
    # The same run from the command line: exit 0, the skips counted in the summary.
    done = cli("run", "--scheduler", "sync", "--on-error", "skip", "--data-file", str(tmp_path / "image-data.img"),
               "--url", str(tmp_path / "image-data.img"),
               "--out", str(tmp_path / "cli.gif"), "--frames-dir", str(tmp_path / "frames"))
    assert done.exit_code == 0, done.output
    # The frames the API run wrote are proven and kept: the summary says so, and names the skipped ones.
    assert ("2 of 7 frames, all kept from an earlier run, 5 skipped (frames 1, 2, 3, 4, 6; the first: unreadable "
            f"frame dropped: frame 1 at byte {offsets[1]}: cannot read the image") in done.output
    assert (tmp_path / "cli.gif").read_bytes() == gif


@pytest.mark.parametrize("insert", [False, True], ids=["overwrite", "insert"])
def test_skip_drops_only_the_damaged_frame_of_the_sample_and_says_so(tmp_path, cli, insert):
    """40 garbage bytes in the middle of the sample's frame 2: frame 2 is skipped, the 31 others are written."""
    sample = Path(sample_path()).read_bytes()
    spans = split_bytes(sample)
    two = spans[2]
    at = two.offset + two.length // 2
    garbage = random.Random(2).randbytes(40)  # sends frame 2's walk on in step with frames 3 and 4
    data = sample[:at] + garbage + sample[at + (0 if insert else 40):]
    (tmp_path / "image-data.img").write_bytes(data)
    result = build_graph(**paths(tmp_path), on_error="skip").compute(scheduler="sync")
    states = result.states["write-frame"]
    assert result.ok and states.counts == {"Success": 31, "Skipped": 1} and list(states) == [2]
    assert states[2].message.startswith("unreadable frame dropped: frame 2 at byte ")
    assert (result.frames_in, result.frames_written, len(result.frames)) == (32, 31, 31)
    assert json.loads(json.dumps(result.to_dict()))["frames_in"] == 32 and result.to_dict()["frames_written"] == 31
    frames = [sample[s.offset:s.offset + s.length] for s in spans]
    assert decode_rgb(Path(result.path).read_bytes()) == [decode_rgb(f)[0] for i, f in enumerate(frames) if i != 2]
    assert [Path(p).name for p in result.frames] == [f"frame_{i:02d}.gif" for i in range(32) if i != 2]
    args = ["run", "--scheduler", "sync", "--on-error", "skip", "--data-file", str(tmp_path / "image-data.img"),
            "--url", str(tmp_path / "image-data.img"), "--out", str(tmp_path / "cli.gif"),
            "--frames-dir", str(tmp_path / "cli-frames")]
    done = cli(*args)
    assert done.exit_code == 0, done.output
    assert ": 31 of 32 frames written, 1 skipped (unreadable frame dropped: frame 2 at byte " in done.output
    done = cli(*args, "--json")
    assert done.exit_code == 0, done.output
    found = json.loads(done.output)
    assert (found["frames_in"], found["frames_written"], len(found["frames"])) == (32, 31, 31)


def test_skip_fails_the_run_when_no_frame_is_left(tmp_path):
    (tmp_path / "image-data.img").write_bytes(image_data([noise(100), GOOD[1][:-40]]))
    (tmp_path / "clip.gif").write_bytes(b"previous run")
    with pytest.raises(RunFailed, match=r"no frames left to combine \(2 skipped\)") as info:
        build_graph(**paths(tmp_path), on_error="skip").compute(scheduler="sync")
    assert [s.state for s in info.value.result.states["write-frame"].values()] == ["Skipped", "Skipped"]
    assert (tmp_path / "clip.gif").read_bytes() == b"previous run" and part_files(tmp_path) == []


def test_skip_still_fails_an_empty_file(tmp_path):
    (tmp_path / "image-data.img").write_bytes(NL4)
    with pytest.raises(RunFailed, match="frame 0 at byte 4: no frames found"):
        build_graph(**paths(tmp_path), on_error="skip").compute(scheduler="sync")


def test_skip_is_the_configured_default(tmp_path):
    (tmp_path / "image-data.img").write_bytes(image_data([GOOD[0], noise(50)]))
    with dask.config.set({"daskgif.on-error": "skip"}):
        result = build_graph(**paths(tmp_path)).compute(scheduler="sync")
    assert result.ok and len(result.frames) == 1 and result.states["write-frame"][1].state == "Skipped"


# --- what must work -------------------------------------------------------------------------------


def test_png_and_jpeg_frames_are_converted_in_parallel(tmp_path, monkeypatch):
    from daskgif import codec as convert

    meet = threading.Barrier(2, timeout=60)  # the first two conversions must be under way at once
    calls = []

    def slow_to_gif(data, **kwargs):
        calls.append(threading.get_ident())
        if len(calls) <= 2:
            meet.wait()  # raises BrokenBarrierError, failing the frame, if the conversions ran one by one
        return to_gif(data, **kwargs)

    to_gif = convert.to_gif
    monkeypatch.setattr(convert, "to_gif", slow_to_gif)
    frames = [make_png(20, 16, seed=1), make_jpeg(20, 16, seed=2), make_gif(20, 16, seed=3),
              make_png(20, 16, seed=4, alpha=True)]
    (tmp_path / "image-data.img").write_bytes(image_data(frames))
    with dask.config.set(num_workers=2):
        result = build_graph(**paths(tmp_path), frames_per_task=1).compute(scheduler="threads")
    assert result.ok and len(result.frames) == 4
    for path in result.frames:
        assert Path(path).read_bytes()[:4] == b"GIF8"
    shown = decode_rgb(Path(result.path).read_bytes())
    with Image.open(io.BytesIO(frames[0])) as png:
        assert shown[0] == png.convert("RGB").tobytes()  # 16 colours: converted exactly
    assert shown[1] == decode_rgb(Path(result.frames[1]).read_bytes())[0]
    assert len(calls) == 3 and len(set(calls[:2])) == 2  # two conversions met, in two threads


def test_frames_of_different_sizes_gif87a_and_no_trailing_delimiter(tmp_path):
    frames = [make_gif(30, 10, seed=1), make_gif(8, 25, seed=2, version=b"87a"), make_gif(1, 1, seed=3, colours=2),
              make_gif(12, 12, seed=4, version=b"87a", interlace=True)]
    (tmp_path / "image-data.img").write_bytes(image_data(frames, trailing=False))
    result = build_graph(**paths(tmp_path)).compute(scheduler="sync")
    out = parse_gif(Path(result.path).read_bytes())
    assert (out.version, out.width, out.height) == (b"89a", 30, 25)
    for image, frame in zip(out.images, frames, strict=True):
        info = parse_gif(frame)
        assert (image.width, image.height, image.interlace) == (info.width, info.height, info.images[0].interlace)
        start, end = info.images[0].data
        assert Path(result.path).read_bytes()[image.data[0]:image.data[1]] == frame[start:end]  # LZW data unchanged


def cr_lf_frames() -> list[bytes]:
    """Frames holding CR and LF bytes, alone and in pairs, in their palette and their image data."""
    palette = (b"\r\n\r\n\r\n" + make_palette(126, 5))[:3 * 128]
    return [
        make_raw_gif(20, 20, palette, bytes([13, 10] * 200)),
        make_gif(8, 6, seed=1, palette=newline_palette()),
        make_raw_gif(10, 10, make_palette(128, 2), bytes([13, 10, 10, 10, 10] * 20)),
        make_png(9, 9, seed=6),
        make_jpeg(16, 16, seed=7),
    ]


@pytest.mark.parametrize("delimiter", [NL4, CRLF4, b"\r\n\r\n\r\n\r\n\r\n"], ids=["LF", "CRLF", "CRLF+1"])
def test_cr_and_lf_bytes_never_cut_a_frame(tmp_path, delimiter):
    frames = cr_lf_frames()
    data = image_data(frames, delimiter=delimiter)
    (tmp_path / "image-data.img").write_bytes(data)
    result = build_graph(**paths(tmp_path)).compute(scheduler="sync")  # the default delimiter, four LF
    written = [Path(p).read_bytes() for p in result.frames]
    assert written[:3] == frames[:3] and written[3][:4] == written[4][:4] == b"GIF8"
    assert len(decode_rgb(Path(result.path).read_bytes())) == 5


def test_a_crlf_delimiter_can_also_be_given(tmp_path):
    frames = cr_lf_frames()[:3]
    (tmp_path / "image-data.img").write_bytes(image_data(frames, delimiter=CRLF4))
    result = build_graph(**paths(tmp_path), delimiter=CRLF4).compute(scheduler="sync")
    assert [Path(p).read_bytes() for p in result.frames] == frames
