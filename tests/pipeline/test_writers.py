"""The writers chosen by the output's suffix (``daskgif.writers``, ``steps.WRITERS``): each output is decoded
again (Pillow; imageio's ffmpeg for MP4) and compared with the frames it was made from."""

from __future__ import annotations

import base64
import importlib.util
import io
import math
import subprocess
import sys

import pytest

import daskgif
from daskgif.pipeline.steps import WRITERS, writer_for
from daskgif.writers import ApngWriter, Mp4Writer, WebpWriter
from frames import image_data, make_gif, make_palette, make_pixels

requires_ffmpeg = pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is None,
                                     reason="imageio-ffmpeg is not installed (pip install 'daskgif[video]')")

LOSSLESS = {".webp": WebpWriter, ".png": ApngWriter}


def read_frames(path) -> list:
    """Every frame of an animated WebP or PNG as Pillow shows it: ``(RGBA bytes, duration)``, and the loop."""
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        frames = [(f.convert("RGBA").tobytes(), f.info["duration"]) for f in ImageSequence.Iterator(im)]
        return frames, im.info.get("loop")


def read_video(path) -> tuple[list, dict]:
    """Every frame of an MP4 as RGB arrays (chroma upsampled accurately, as a good player does), and its metadata."""
    import imageio.v2 as iio

    with iio.get_reader(path, format="FFMPEG", output_params=["-sws_flags", "lanczos+accurate_rnd+full_chroma_int"]) as r:
        return [frame for frame in r], r.get_meta_data()


def psnr(want, got) -> float:
    import numpy as np

    mse = ((np.asarray(want, dtype=float) - np.asarray(got, dtype=float)) ** 2).mean()
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def frame_rgba(path) -> bytes:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGBA").tobytes()


def run(tmp_path, suffix: str, **kwargs):
    return daskgif.build_graph(data_file=str(tmp_path / "image-data.img"), out=str(tmp_path / f"clip{suffix}"),
                               retry_delay=0, **kwargs).compute(scheduler="sync")


@pytest.mark.parametrize("suffix", sorted(LOSSLESS))
def test_the_sample_as_lossless_animation(tmp_path, suffix):
    result = run(tmp_path, suffix, duration=70, loop=3)
    frames, loop = read_frames(result.path)
    assert len(frames) == len(result.frames) == 32
    assert [pixels for pixels, _ in frames] == [frame_rgba(path) for path in result.frames]
    assert {duration for _, duration in frames} == {70} and loop == 3
    assert result.size == (tmp_path / f"clip{suffix}").stat().st_size
    kind = {".webp": "image/webp", ".png": "image/png"}[suffix]  # a notebook shows it as what it is
    shown = result.gif_html()
    assert shown.startswith(f'<img src="data:{kind};base64,')
    assert base64.b64decode(shown.split(",", 1)[1].split('"', 1)[0]) == (tmp_path / f"clip{suffix}").read_bytes()


@requires_ffmpeg
def test_the_sample_as_video(tmp_path):
    import numpy as np
    from PIL import Image

    result = run(tmp_path, ".mp4", duration=40)
    video, meta = read_video(result.path)
    assert len(video) == 32 and meta["fps"] == 25 and meta["codec"] == "h264" and meta["size"] == (160, 120)
    assert meta["pix_fmt"].startswith("yuv420p")
    want = [np.asarray(Image.open(path).convert("RGB")) for path in result.frames]
    assert psnr(want, video) >= 35
    assert min(psnr(w, g) for w, g in zip(want, video)) >= 33
    assert result.size == (tmp_path / "clip.mp4").stat().st_size
    assert result.gif_html().startswith('<video src="data:video/mp4;base64,')


def drawn(width, height, palette, pixels, *, left=0, top=0, transparent=None, canvas=(41, 31), **_) -> bytes:
    """The RGBA a browser shows for one image on a transparent canvas, computed from its colour indices."""
    out = bytearray(canvas[0] * canvas[1] * 4)
    for y in range(height):
        for x in range(width):
            i = pixels[y * width + x]
            if i != transparent:
                at = 4 * ((top + y) * canvas[0] + left + x)
                out[at:at + 4] = palette[3 * i:3 * i + 3] + b"\xff"
    return bytes(out)


def mixed(pixels=make_pixels) -> tuple[list[bytes], list[bytes]]:
    """Frames of several sizes on a 41x31 canvas, and the RGBA of each as a browser shows it.

    A full frame; a smaller image away from its screen's corner with a transparent colour
    (twice: an unchanged frame); a narrow frame; the first frame again.
    """
    images = [dict(width=41, height=31, palette=make_palette(16, 1), pixels=pixels(41, 31, 16, 1)),
              dict(width=20, height=10, palette=make_palette(16, 2), pixels=pixels(20, 10, 16, 2), transparent=2,
                   left=5, top=3, screen=(25, 13)),
              dict(width=12, height=31, palette=make_palette(16, 3), pixels=pixels(12, 31, 16, 3))]
    order = [0, 1, 1, 2, 0]
    return [make_gif(**images[i]) for i in order], [drawn(**images[i]) for i in order]


MIXED, EXPECTED = mixed()


@pytest.mark.parametrize("suffix", sorted(LOSSLESS))
def test_frames_of_other_sizes_and_transparency(tmp_path, suffix):
    (tmp_path / "mixed.img").write_bytes(image_data(MIXED))
    result = run(tmp_path, suffix, url=str(tmp_path / "mixed.img"), duration=20)
    frames, loop = read_frames(result.path)
    assert [pixels for pixels, _ in frames] == EXPECTED
    assert [duration for _, duration in frames] == [20] * 5 and loop == 0


@requires_ffmpeg
def test_video_of_an_odd_canvas_is_padded_and_transparency_is_black(tmp_path):
    import numpy as np

    # Blocks of 10x10 pixels, not noise: yuv420p halves colour resolution, and at 41x31 pixels every
    # block edge of these saturated colours costs (about 24 dB); the small frame drawn at (0, 0) scores 13 dB.
    frames, expected = mixed(lambda width, height, colours, seed: bytes(
        (x // 10 + y // 10 + seed) % colours for y in range(height) for x in range(width)))
    (tmp_path / "mixed.img").write_bytes(image_data(frames))
    result = run(tmp_path, ".mp4", url=str(tmp_path / "mixed.img"))
    video, meta = read_video(result.path)
    assert len(video) == 5 and meta["size"] == (42, 32) and meta["fps"] == 10
    for want, got in zip(expected, video):
        rgba = np.frombuffer(want, np.uint8).reshape(31, 41, 4)
        assert psnr(rgba[..., :3], got[:31, :41]) >= 22
        clear = rgba[..., 3] == 0  # transparent, or outside the frame: black
        assert not clear.any() or got[:31, :41][clear].mean() < 20
        assert got[31].mean() < 20 and got[:, 41].mean() < 20  # the padding


@pytest.mark.parametrize("writer", [WebpWriter, ApngWriter])
def test_lossless_writers_stream(writer):
    """Each frame is in *out* as soon as it is added; the header is completed at the end."""
    out = io.BytesIO()
    ends = []
    with writer(out, (41, 31), duration=100, loop=None) as w:
        for frame in MIXED:
            w.add(frame)
            ends.append(out.tell())
    assert ends == sorted(set(ends)) and out.tell() >= ends[-1]
    frames, loop = read_frames(io.BytesIO(out.getvalue()))
    assert [pixels for pixels, _ in frames] == EXPECTED and loop == 1  # loop None: played once
    assert (w.frames, w.images) == (5, 5)


@pytest.mark.parametrize("writer", [WebpWriter, ApngWriter])
def test_writers_refuse_what_they_cannot_write(writer):
    from daskgif.errors import GifFormatError

    with pytest.raises(GifFormatError, match="frame 1 .*runs past the canvas of 20x10"):
        with writer(io.BytesIO(), (20, 10)) as w:
            w.add(make_gif(20, 10))
            w.add(make_gif(21, 10))
    with pytest.raises(ValueError, match="no frames were added"):
        writer(io.BytesIO(), (2, 2)).close()
    with pytest.raises(ValueError, match="duration must be a number of milliseconds"):
        writer(io.BytesIO(), (2, 2), duration=-1)
    unseekable = io.BufferedWriter(io.BytesIO())
    unseekable.seekable = lambda: False
    with pytest.raises(ValueError, match="give a seekable file"):
        writer(unseekable, (2, 2))
    with pytest.raises(GifFormatError, match="canvas of 4x4 pixels is larger than max_pixels=15"):
        writer(io.BytesIO(), (4, 4), max_pixels=15)


def test_webp_canvas_limit():
    with pytest.raises(ValueError, match="size width must be an integer from 1 to 16384 for WebP, got 16385"):
        WebpWriter(io.BytesIO(), (16385, 1))


def test_the_suffix_chooses_the_writer():
    assert list(WRITERS) == [".gif", ".webp", ".png", ".mp4"]
    assert writer_for("out/Clip.WEBP") is WebpWriter and writer_for("memory://x/a.b.png") is ApngWriter
    for bad in ("clip.avi", "clip", "clip.gif/", "dir.webp/clip"):
        with pytest.raises(ValueError, match="give one of .gif, .webp, .png, .mp4"):
            writer_for(bad)


def test_a_bad_suffix_is_a_usage_error_before_any_work(tmp_path):
    done = subprocess.run([sys.executable, "-m", "daskgif", "run", "--out", "clip.avi"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "out 'clip.avi' has no supported suffix: give one of .gif, .webp, .png, .mp4" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_mp4_without_the_extra_names_it(monkeypatch):
    import imageio.plugins

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    monkeypatch.setitem(sys.modules, "imageio.plugins.ffmpeg", None)
    monkeypatch.delattr(imageio.plugins, "ffmpeg", raising=False)
    with pytest.raises(ValueError, match=r"writing MP4 needs the extra daskgif\[video\]: pip install"):
        Mp4Writer.check(duration=100)
    with pytest.raises(ValueError, match="no frame rate"):
        Mp4Writer.check(duration=0)


def test_an_mp4_is_refused_before_any_work(tmp_path):
    graph = daskgif.build_graph(data_file=str(tmp_path / "d.img"), out=str(tmp_path / "clip.mp4"), duration=0)
    with pytest.raises(daskgif.RunFailed, match="duration 0 has no frame rate"):
        graph.compute(scheduler="sync")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == []
