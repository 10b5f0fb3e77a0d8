from __future__ import annotations

import io
import subprocess
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image, ImageSequence

from daskgif.errors import GifFormatError
from daskgif.gif.parse import parse_gif
from daskgif.gif.join import GifWriter, gif_delay, join_gifs
from daskgif.pipeline.sample import sample_path
from daskgif.gif.split import split_bytes
from frames import requires_gifsicle
from frames import decode_rgb, decode_rgba, make_gif, make_palette, make_raw_gif, newline_palette


def joined(frames, **kwargs) -> bytes:
    out = io.BytesIO()
    join_gifs(frames, out, **kwargs)
    return out.getvalue()


def test_pixels_duration_and_loop_survive():
    frames = [
        make_gif(40, 30, seed=1),
        make_gif(40, 30, seed=2, interlace=True),
        make_gif(40, 30, seed=3, local_table=True, sort=True),
        make_gif(40, 30, seed=4, version=b"87a", colours=2),
        make_gif(40, 30, seed=5, palette=newline_palette(), loop=7, comment=b"dropped"),
        make_raw_gif(40, 30, make_palette(128), bytes(range(120)) * 10),
    ]
    gif = joined(frames, duration=70, loop=3)
    assert decode_rgb(gif) == [decode_rgb(f)[0] for f in frames]
    with Image.open(io.BytesIO(gif)) as im:
        assert im.n_frames == len(frames) and im.info["loop"] == 3
        assert [frame.info["duration"] for frame in ImageSequence.Iterator(im)] == [70] * len(frames)
    info = parse_gif(gif)
    assert info.version == b"89a" and info.global_table is None
    assert [i.interlace for i in info.images] == [False, True, False, False, False, False]
    assert info.images[2].sort and not info.images[0].sort
    assert gif.count(b"NETSCAPE2.0") == 1 and b"dropped" not in gif
    assert [i.disposal for i in info.images] == [1] * len(frames)


def test_loop_none_writes_no_loop_block():
    gif = joined([make_gif(4, 4)], loop=None)
    assert b"NETSCAPE" not in gif
    with Image.open(io.BytesIO(gif)) as im:
        assert "loop" not in im.info


def test_frames_of_different_sizes_keep_their_place():
    frames = [make_gif(30, 20, seed=1), make_gif(12, 25, seed=2), make_gif(30, 20, seed=3, left=4, top=2, screen=(34, 22))]
    gif = joined(frames)
    info = parse_gif(gif)
    assert (info.width, info.height) == (34, 25)
    assert [(i.left, i.top) for i in info.images] == [(0, 0), (0, 0), (4, 2)]
    assert [i.disposal for i in info.images] == [2, 2, 2]  # none covers the canvas
    with Image.open(io.BytesIO(gif)) as im:
        for image, frame, shown in zip(info.images, frames, ImageSequence.Iterator(im)):
            box = (image.left, image.top, image.left + image.width, image.top + image.height)
            with Image.open(io.BytesIO(frame)) as alone:
                assert shown.convert("RGB").crop(box).tobytes() == alone.convert("RGB").crop(box).tobytes()


def transparent_frames():
    return [
        make_gif(16, 12, seed=1, colours=16),
        make_gif(16, 12, seed=2, colours=16, transparent=3),
        make_gif(16, 12, seed=3, colours=16, transparent=0, local_table=True),
        make_gif(16, 12, seed=4, colours=16),
    ]


def test_transparency_is_kept_and_the_frame_before_is_disposed():
    frames = transparent_frames()
    info = parse_gif(joined(frames))
    assert [i.transparent for i in info.images] == [None, 3, 0, None]
    assert [i.disposal for i in info.images] == [2, 2, 1, 1]


def test_transparency_with_pillow():
    """Pillow shows every opaque pixel exactly; where a frame is transparent it shows the
    background it filled the previous frame's area with on disposal 2 (not the frame's own
    transparent colour, which is what it shows when decoding the frame alone)."""
    frames = transparent_frames()
    shown = decode_rgba(joined(frames))
    for frame, got in zip(frames, shown):
        alone = decode_rgba(frame)[0]
        opaque = [i for i in range(0, len(alone), 4) if alone[i + 3] == 255]
        assert [got[i:i + 3] for i in opaque] == [alone[i:i + 3] for i in opaque]
        assert len(opaque) < len(alone) // 4 or got == alone


@requires_gifsicle
def test_transparency_with_gifsicle(tmp_path):
    """gifsicle, a second decoder, reads every image back unchanged (explode writes each
    image on its own), with the transparency index kept and each frame's table local."""
    frames = transparent_frames()
    path = tmp_path / "out.gif"
    path.write_bytes(joined(frames))
    info = subprocess.run(["gifsicle", "--info", str(path)], capture_output=True, text=True, check=True).stdout
    assert info.count("local color table") == 4 and "transparent 3" in info and "transparent 0" in info
    assert info.count("disposal background") == 2
    subprocess.run(["gifsicle", "--explode", str(path), "-o", str(tmp_path / "f")], check=True)
    for i, frame in enumerate(frames):
        assert decode_rgba((tmp_path / f"f.{i:03d}").read_bytes()) == decode_rgba(frame)


def test_multi_image_input_keeps_every_image():
    one = make_gif(6, 6, seed=1, colours=4, disposal=3)
    two = make_gif(3, 3, seed=2, colours=4, local_table=True, transparent=1, left=1, top=1, screen=(6, 6))
    animation = one[:-1] + two[two.index(b"\x21\xf9"):]
    info = parse_gif(joined([animation, make_gif(6, 6, seed=3, colours=4)]))
    assert [(i.width, i.disposal) for i in info.images] == [(6, 3), (3, 1), (6, 1)]


def test_whole_sample_joins_exactly():
    data = Path(sample_path()).read_bytes()
    frames = [data[s.offset:s.offset + s.length] for s in split_bytes(data)]
    gif = joined(frames)
    assert decode_rgb(gif) == [decode_rgb(f)[0] for f in frames]


def test_writer_streams_from_an_iterator():
    frames = (make_gif(8, 8, seed=i) for i in range(5))
    out = io.BytesIO()
    assert join_gifs(frames, out, size=(8, 8)) == 5
    assert len(parse_gif(out.getvalue()).images) == 5
    with pytest.raises(ValueError, match="size is required"):
        join_gifs(iter([make_gif(2, 2)]), io.BytesIO())


def test_errors():
    out = io.BytesIO()
    with pytest.raises(GifFormatError, match=r"frame 1 at byte 0: not a GIF: expected b'GIF87a' or b'GIF89a', "
                                             r"got b'\\x89PNG\\r\\n'"):
        with GifWriter(out, (4, 4)) as writer:
            writer.add(make_gif(4, 4))
            writer.add(b"\x89PNG\r\n\x1a\n")
    no_table = b"GIF89a\x01\x00\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x4c\x01\x00;"
    with pytest.raises(GifFormatError, match="frame 0 at byte 13: image 0 has neither"):
        join_gifs([no_table], io.BytesIO())
    with pytest.raises(ValueError, match="no frames were added"):
        GifWriter(io.BytesIO(), (4, 4)).close()
    for kwargs, name in [({"duration": -1}, "duration"), ({"loop": 1.5}, "loop"), ({"loop": True}, "loop")]:
        with pytest.raises(ValueError, match=name):
            GifWriter(io.BytesIO(), (4, 4), **kwargs)
    with pytest.raises(ValueError, match="width"):
        GifWriter(io.BytesIO(), (0, 4))


def test_join_memory_does_not_grow_with_the_frame_count(tmp_path):
    """The writer holds one frame (its look-ahead), whatever the number of frames."""
    frames = [make_gif(64, 64, seed=i) for i in range(8)]

    def peak(count: int) -> int:
        with open(tmp_path / f"{count}.gif", "wb") as out:
            tracemalloc.start()
            with GifWriter(out, (64, 64)) as writer:
                for i in range(count):
                    writer.add(frames[i % 8])
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        return peak

    small, large = peak(100), peak(5000)
    assert large < 256 * 1024 and large < 2 * small + 64 * 1024, (small, large)


@pytest.mark.parametrize(("duration", "delay"), [(0, 0), (1, 1), (5, 1), (9, 1), (10, 1), (11, 2), (15, 2), (20, 2),
                                                 (33.3, 4), (100, 10), (655350, 65535)])
def test_gif_delay_rounds_a_positive_duration_up(duration, delay):
    assert gif_delay(duration) == delay


@pytest.mark.parametrize(("duration", "shown"), [(1, 10), (9, 10), (15, 20), (0, 0), (70, 70)])
def test_a_short_duration_is_never_written_as_no_delay(duration, shown):
    gif = joined([make_gif(4, 4, seed=i) for i in range(2)], duration=duration)
    assert {image.delay for image in parse_gif(gif).images} == {shown // 10}
    with Image.open(io.BytesIO(gif)) as im:
        assert [frame.info["duration"] for frame in ImageSequence.Iterator(im)] == [shown] * 2


@pytest.mark.parametrize(("head", "message"), [
    (b"GIF88a" + bytes(20), "unknown GIF version b'GIF88a': expected b'GIF87a' or b'GIF89a'"),
    (b"GIF89a\x01", "truncated in header: 7 bytes, a GIF header has 13"),
    (b"GIF8", "truncated in header: 4 bytes, a GIF header has 13"),
    (b"\x89PNG\r\n\x1a\n", r"not a GIF: expected b'GIF87a' or b'GIF89a', got b'\x89PNG\r\n'"),
])
def test_join_messages_never_contradict_themselves(head, message):
    with pytest.raises(GifFormatError) as info:
        join_gifs([make_gif(4, 4), head], io.BytesIO())
    assert info.value.message == message and info.value.frame == 1


def test_the_canvas_holds_images_past_a_frame_screen():
    """Pillow grows the canvas for an image past the screen; the output must hold it from the start."""
    import imageio.v3 as iio

    frames = [make_gif(4, 4, colours=4), make_gif(4, 4, seed=1, colours=4, left=3, screen=(4, 4))]
    gif = joined(frames)
    assert parse_gif(gif).width == 7
    assert iio.imread(gif, index=None).shape[:3] == (2, 4, 7)
    with pytest.raises(GifFormatError, match=r"frame 1 at byte \d+: image 0 at \(3, 0\) of 4x4 pixels runs past the "
                                             r"canvas of 4x4: give a size that holds it \(this frame needs 7x4\)"):
        join_gifs(frames, io.BytesIO(), size=(4, 4))


def test_max_pixels_refuses_a_larger_canvas():
    frames = [make_gif(10, 1, colours=4), make_gif(1, 10, colours=4)]
    assert join_gifs(frames, io.BytesIO(), max_pixels=100) == 2
    # frame 1 is the one that grows the canvas past the limit
    with pytest.raises(GifFormatError, match="^frame 1: canvas of 10x10 pixels is larger than max_pixels=99$"):
        join_gifs(frames, io.BytesIO(), max_pixels=99)
    with pytest.raises(GifFormatError, match="^canvas of 10x10 pixels is larger than max_pixels=99$"):
        GifWriter(io.BytesIO(), (10, 10), max_pixels=99)


@pytest.mark.parametrize("size", [None, (1000, 4)])
def test_max_pixels_is_applied_as_the_parse_applies_it(size):
    """A frame the parse refuses under max_pixels, the join refuses too, naming it (the fuzz test found one)."""
    wide = make_gif(4, 4, colours=4, left=996, screen=(1000, 4))  # its canvas: 1000x4, grown from a 1000x4 screen
    grown = make_gif(4, 4, colours=4, left=998, screen=(1000, 4))  # grown to 1002x4 by its image
    assert parse_gif(wide, max_pixels=4000) and join_gifs([wide, wide], io.BytesIO(), size=size, max_pixels=4000) == 2
    with pytest.raises(GifFormatError) as parsed:
        parse_gif(grown, max_pixels=4000)
    with pytest.raises(GifFormatError) as joined:
        join_gifs([wide, grown], io.BytesIO(), size=size, max_pixels=4000)
    assert joined.value.frame == 1 and joined.value.message == parsed.value.message
