"""Decode validation: a corrupt LZW code stream is refused, the sample passes, accepted frames join readably."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageSequence

from daskgif.errors import GifFormatError
from daskgif.gif.parse import parse_gif
from daskgif.gif.join import join_gifs
from daskgif.pipeline.sample import sample_path
from daskgif.gif.split import split_bytes
from daskgif.codec import check_decodes
from frames import corrupt_code, make_gif, make_palette, make_raw_gif, mutate

SAMPLE = Path(sample_path()).read_bytes()
SPANS = split_bytes(SAMPLE)
FRAMES = [SAMPLE[s.offset:s.offset + s.length] for s in SPANS]


RAW = make_raw_gif(20, 10, make_palette(128), bytes(i % 128 for i in range(200)))


def test_a_corrupt_code_stream_with_intact_blocks_is_refused():
    bad = corrupt_code(RAW)
    info = parse_gif(bad)  # the structure walk cannot see it
    check_decodes(RAW, index=7, offset=1000)
    with pytest.raises(GifFormatError) as e:
        check_decodes(bad, index=7, offset=1000)
    assert e.value.frame == 7 and e.value.offset == 1000 + info.images[0].data[0]
    assert str(e.value) == f"frame 7 at byte {1000 + info.images[0].data[0]}: image data does not decode: " \
                           "broken data stream (Pillow)"


def test_the_failing_image_of_a_multi_image_frame_is_named():
    first = make_raw_gif(20, 10, make_palette(128), bytes(200))
    info = parse_gif(first)
    # Append the corrupt image's blocks (descriptor, table, data) before the trailer.
    bad = parse_gif(corrupt_code(RAW))
    image_start = bad.images[0].data[0] - 10 - 0  # RAW has a global table: descriptor just before the data
    two = first[:-1] + corrupt_code(RAW)[image_start:]
    assert len(parse_gif(two).images) == 2 and parse_gif(two).width == info.width
    with pytest.raises(GifFormatError, match=r"^frame 2 at byte \d+: image 1 image data does not decode") as e:
        check_decodes(two, index=2, offset=0)
    assert e.value.offset == parse_gif(two).images[1].data[0]


def test_data_that_ends_early_is_refused():
    start, _ = parse_gif(RAW).images[0].data
    buf = bytearray(RAW)
    buf[start + 2 + 5] = 129  # the end-of-information code after four pixels
    with pytest.raises(GifFormatError, match="image data does not decode: image file is truncated"):
        check_decodes(bytes(buf), index=0, offset=0)


def test_not_a_gif_is_located():
    with pytest.raises(GifFormatError) as e:
        check_decodes(b"GIF88a" + bytes(20), index=4, offset=50)
    assert (e.value.frame, e.value.offset) == (4, 50) and "unknown GIF version b'GIF88a'" in e.value.message


def test_every_sample_frame_decodes():
    assert len(FRAMES) == 32
    for span, frame in zip(SPANS, FRAMES):
        check_decodes(frame, index=span.index, offset=span.offset)
        check_decodes(frame, index=span.index, offset=span.offset, info=parse_gif(frame))


def test_a_corrupt_sample_frame_in_a_data_file_is_refused_with_its_index_and_offset():
    frames = list(FRAMES[:3])
    start, end = parse_gif(frames[1]).images[0].data
    bad = bytearray(frames[1])
    # Replace a run of data-block payload (never a block size byte) with ones: still walkable.
    bad[start + 3:start + 40] = b"\xff" * 37
    frames[1] = bytes(bad)
    data = b"\n\n\n\n".join(frames) + b"\n\n\n\n"
    spans = split_bytes(data)  # the split walks the structure and accepts it
    errors = []
    for span in spans:
        try:
            check_decodes(data[span.offset:span.offset + span.length], index=span.index, offset=span.offset)
        except GifFormatError as e:
            errors.append(e)
    assert [(e.frame, e.offset) for e in errors] == [(1, spans[1].offset + start)]


def test_a_canvas_pillow_would_warn_about_is_refused_without_a_warning(monkeypatch):
    gif = make_gif(4, 4, colours=4, screen=(20, 10))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)
    check_decodes(gif, index=0, offset=0)  # equal: accepted, and Pillow does not warn
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 199)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(GifFormatError, match=r"canvas of 20x10 pixels is larger than Pillow opens without a "
                                                 r"decompression-bomb warning \(PIL.Image.MAX_IMAGE_PIXELS=199\)"):
            check_decodes(gif, index=0, offset=0)
        # An image past the screen grows Pillow's canvas: that size counts.
        with pytest.raises(GifFormatError, match="canvas of 24x10"):
            check_decodes(make_gif(4, 4, colours=4, left=20, screen=(10, 10)), index=0, offset=0)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    check_decodes(gif, index=0, offset=0)


def test_pillow_is_imported_only_when_a_frame_is_checked():
    code = "import sys, daskgif.codec; assert 'PIL' not in sys.modules, sorted(m for m in sys.modules if 'PIL' in m)"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- daskgif's max-pixels against Pillow's decompression-bomb limit ------------------------------------

DEFAULT_MAX_PIXELS = yaml.safe_load((Path(__file__).parents[2] / "daskgif" / "daskgif.yaml").read_text())["daskgif"][
    "max-pixels"]


def largest_screen(max_pixels: int) -> tuple[int, int]:
    """The screen of the most pixels, at most *max_pixels*, that a GIF can declare (and is nearly square)."""
    width = min(0xFFFF, math.isqrt(max_pixels))
    height = min(0xFFFF, max_pixels // width)
    return width, height


@pytest.mark.parametrize("max_pixels", [DEFAULT_MAX_PIXELS])
def test_nothing_daskgif_accepts_makes_pillow_warn(max_pixels):
    """The default ``max-pixels`` (daskgif.yaml) is at most Pillow's ``MAX_IMAGE_PIXELS``.

    Pillow warns above ``Image.MAX_IMAGE_PIXELS`` (89,478,485) pixels; daskgif accepts a
    screen (and a canvas) of up to ``max-pixels``, equal included.  So the largest
    frame daskgif accepts opens in Pillow without a ``DecompressionBombWarning``.
    """
    assert max_pixels <= Image.MAX_IMAGE_PIXELS, (
        f"daskgif.yaml max-pixels={max_pixels} is above Pillow's MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS}: "
        f"a frame daskgif accepts would make Pillow warn")
    width, height = largest_screen(max_pixels)
    gif = make_gif(2, 2, colours=4, left=width - 2, top=height - 2, screen=(width, height))
    assert parse_gif(gif, max_pixels=max_pixels).canvas == (width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Image.open(io.BytesIO(gif)) as im:  # the bomb check happens here; no load (a canvas of 1e8 bytes)
            assert im.size == (width, height)


def test_largest_screen():
    assert largest_screen(100) == (10, 10) and largest_screen(89_478_485) == (9459, 9459)
    assert largest_screen(10) == (3, 3) and largest_screen(2**40) == (65535, 65535)


# --- accepted frames join into a GIF every decoder reads ------------------------------------------------

# The sample frames have a global table and no local one: the image descriptor is the 10 bytes before the data.
DESCRIPTOR = parse_gif(FRAMES[0]).images[0].data[0] - 10
assert all(parse_gif(f).images[0].data[0] - 10 == DESCRIPTOR for f in FRAMES)
# A third of the positions in the image descriptor (position, size, flags), a third in the header and
# table, the rest anywhere.
where = st.one_of(st.integers(DESCRIPTOR, DESCRIPTOR + 9), st.integers(0, DESCRIPTOR), st.integers(0, 10**6))
mutation = st.one_of(
    st.tuples(st.just("set"), where, st.integers(0, 255)),
    st.tuples(st.just("flip"), where, st.integers(0, 7)),
    st.tuples(st.just("cut"), where, st.integers(1, 40)),
    st.tuples(st.just("insert"), where, st.binary(min_size=1, max_size=8)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
# Found by this test: an image moved past its screen made Pillow grow the canvas in mid-animation,
# and imageio could not stack frames of two sizes.
@example(picks=[0, 1], mutations=[[], [("set", DESCRIPTOR + 1, 9)], []], duration=100)
@given(picks=st.lists(st.integers(0, len(FRAMES) - 1), min_size=1, max_size=3),
       mutations=st.lists(st.lists(mutation, max_size=3), min_size=3, max_size=3),
       duration=st.sampled_from([0, 5, 40, 100]))
def test_frames_that_parse_and_decode_join_into_a_gif_pillow_and_imageio_read(picks, mutations, duration):
    import imageio.v3 as iio

    frames = [mutate(FRAMES[i], m) if m else FRAMES[i] for i, m in zip(picks, mutations)]
    accepted = []
    for index, frame in enumerate(frames):
        try:
            info = parse_gif(frame, max_pixels=4_000_000)
            check_decodes(frame, index=index, offset=0, info=info)
        except GifFormatError:
            continue
        accepted.append(frame)
    event(f"accepted {len(accepted)} of {len(frames)}")
    assume(accepted)
    out = io.BytesIO()
    assert join_gifs(accepted, out, duration=duration) == len(accepted)
    gif = out.getvalue()
    info = parse_gif(gif)
    with Image.open(io.BytesIO(gif)) as im:
        shown = 0
        for frame in ImageSequence.Iterator(im):
            frame.load()
            assert frame.size == (info.width, info.height)
            shown += 1
    assert shown == len(info.images)
    pixels = iio.imread(gif, index=None)
    assert pixels.shape[:3] == (len(info.images), info.height, info.width)
    check_decodes(gif, index=0, offset=0)
