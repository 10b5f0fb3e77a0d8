from __future__ import annotations

import io
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from daskgif.errors import GifFormatError
from daskgif.gif.encode import encode_gif
from daskgif.gif.parse import Incomplete, gif_length, parse_gif
from frames import requires_gifsicle
from frames import make_gif, make_palette, make_pixels, make_raw_gif, newline_palette


def expected_rgb(palette: bytes, pixels: bytes) -> bytes:
    return b"".join(palette[3 * i:3 * i + 3] for i in pixels)


@pytest.mark.parametrize(
    "width, height, colours, kwargs",
    [
        (1, 1, 2, {}),
        (7, 5, 3, {"interlace": True}),
        (13, 11, 16, {"local_table": True}),
        (64, 48, 256, {}),
        (200, 150, 256, {"interlace": True, "local_table": True}),  # more than 4096 codes: clear codes
        (300, 40, 2, {"version": b"87a"}),
        (33, 17, 200, {"transparent": 5, "delay": 7}),
    ],
)
def test_encode_decodes_exactly_with_pillow(width, height, colours, kwargs):
    palette, pixels = make_palette(colours, width), make_pixels(width, height, colours, height)
    gif = encode_gif(width, height, palette, pixels, **kwargs)
    with Image.open(io.BytesIO(gif)) as im:
        im.load()
        assert im.size == (width, height)
        assert im.convert("RGB").tobytes() == expected_rgb(palette, pixels)
    info = parse_gif(gif)
    assert info.end == len(gif) == gif_length(gif)
    assert info.version == kwargs.get("version", b"89a")
    image = info.images[0]
    assert (image.width, image.height, image.interlace) == (width, height, kwargs.get("interlace", False))
    assert (image.local_table is not None) == kwargs.get("local_table", False)
    assert (info.global_table is None) == kwargs.get("local_table", False)
    assert image.transparent == kwargs.get("transparent")
    assert image.delay == kwargs.get("delay", 0)


def test_encode_is_deterministic():
    assert make_gif(20, 10, seed=3) == make_gif(20, 10, seed=3) != make_gif(20, 10, seed=4)


@requires_gifsicle
def test_gifsicle_reads_what_we_encode(tmp_path):
    path = tmp_path / "a.gif"
    path.write_bytes(make_gif(31, 17, seed=2, interlace=True, transparent=3, local_table=True))
    info = subprocess.run(["gifsicle", "--info", str(path)], capture_output=True, text=True, check=True).stdout
    assert "31x17 interlaced transparent 3" in info and "local color table [256]" in info


def test_parse_fields_and_data_span():
    gif = make_gif(10, 6, colours=16, left=2, top=3, screen=(20, 12), background=4, disposal=2, delay=12)
    info = parse_gif(gif)
    assert (info.width, info.height, info.background, len(info.global_table)) == (20, 12, 4, 48)
    image = info.images[0]
    assert (image.left, image.top, image.width, image.height, image.disposal, image.delay) == (2, 3, 10, 6, 2, 12)
    start, end = image.data
    assert gif[start] == 4 and gif[end - 1] == 0 and gif[end:] == b";"
    assert info.table(image) == (info.global_table, False)


def test_parse_skips_extensions_and_reads_pillow_animations():
    gif = make_gif(8, 8, loop=0, comment=b"hello " * 100)
    assert len(parse_gif(gif).images) == 1
    frames = [Image.new("P", (9, 7), i) for i in range(3)]
    for f in frames:
        f.putpalette(make_palette(256, 1))
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=[10, 20, 30], loop=2,
                   transparency=0, disposal=2)
    info = parse_gif(out.getvalue())
    assert [i.delay for i in info.images] == [1, 2, 3]
    assert info.images[0].transparent == 0 and info.end == len(out.getvalue())


def test_plain_text_extension_takes_the_graphic_control():
    gif = make_gif(4, 4, colours=4)
    gce = b"\x21\xf9\x04\x01\x00\x00\x02\x00"
    text = b"\x21\x01\x0c" + bytes(12) + b"\x02hi\x00"
    at = 13 + 12
    info = parse_gif(gif[:at] + gce + text + gif[at:])
    assert info.images[0].transparent is None


def test_multi_image_gif():
    one, two = make_gif(4, 4, seed=1, colours=4), make_gif(4, 4, seed=2, colours=4, local_table=True, transparent=1)
    image_two = two[two.index(b"\x21\xf9"):-1]
    info = parse_gif(one[:-1] + image_two + b";")
    assert len(info.images) == 2 and info.images[1].local_table is not None and info.images[1].transparent == 1


def test_four_newlines_inside_palette_screen_gce_and_lzw_data():
    assert b"\n\n\n\n" in make_gif(4, 4, palette=newline_palette())
    assert b"\n\n\n\n" in make_gif(4, 4, colours=4, screen=(2570, 2570))[:13]
    raw = make_raw_gif(12, 12, make_palette(128), bytes([10] * 144))
    start, end = parse_gif(raw).images[0].data
    assert b"\n\n\n\n" in raw[start:end]


@pytest.mark.parametrize(
    "data, message, offset",
    [
        (b"\x00\x01\x02\x03" + bytes(20), r"not a GIF: expected b'GIF87a' or b'GIF89a', got b'\x00\x01\x02\x03\x00\x00'", 0),
        (b"GIF88a" + bytes(20), "unknown GIF version b'GIF88a': expected b'GIF87a' or b'GIF89a'", 0),
        (b"GIF89b" + bytes(20), "unknown GIF version b'GIF89b': expected b'GIF87a' or b'GIF89a'", 0),
        (b"GIF8", "truncated in header: 4 bytes, a GIF header has 13", 0),
        (b"GIF88", "unknown GIF version b'GIF88': expected b'GIF87a' or b'GIF89a'", 0),
        (b"GIF8\n\n\n\n", r"unknown GIF version b'GIF8\n\n': expected b'GIF87a' or b'GIF89a'", 0),
        (b"GIF89a\x01\x00\x01\x00\xf7\x00\x00" + bytes(100), "global colour table of 768 bytes runs past the end (only 100 left)", 13),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x00", "unknown block introducer 0x00", 13),
        (b"GIF89a\x00\x00\x01\x00\x00\x00\x00;", "zero-size logical screen 0x1", 6),
        (b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + bytes(6) + b";", "no images before the trailer", 19),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x4c\x01\x00;",
         "image 0 has neither a local nor a global colour table", 13),
        (b"GIF89a", "truncated in header: 6 bytes, a GIF header has 13", 0),
    ],
)
def test_parse_errors_name_what_and_where(data, message, offset):
    with pytest.raises(GifFormatError) as info:
        parse_gif(data)
    assert info.value.message == message and info.value.offset == offset
    assert not isinstance(info.value, Incomplete)


def test_truncated_in_image_data():
    gif = make_gif(30, 30)
    with pytest.raises(GifFormatError, match="truncated in image data"):
        parse_gif(gif[:len(gif) - 40])


def test_max_pixels():
    gif = make_gif(4, 4, colours=4, screen=(60000, 60000))
    with pytest.raises(GifFormatError, match=r"screen of 60000x60000 pixels is larger than max_pixels=1000000"):
        parse_gif(gif, max_pixels=10**6)
    with pytest.raises(GifFormatError, match="max_pixels"):
        gif_length(gif, max_pixels=10**6)
    assert parse_gif(gif).width == 60000


@pytest.mark.parametrize("head", [b"GIF88a", b"GIF8", b"GIF9", b"GIF", b"GIF87", b"\x89PNG\r\n", b"G1F89a"])
def test_a_signature_message_never_contradicts_itself(head):
    """What the message says it got is never something it says it expected."""
    try:
        parse_gif(head + bytes(20))
    except GifFormatError as e:
        if "expected" in e.message and "got" in e.message:
            expected, got = e.message.split("expected", 1)[1].split(", got ")
            assert got not in expected
        if "version" in e.message:
            assert repr((head + bytes(20))[:6]) in e.message
    else:
        pytest.fail("parsed")


def test_max_pixels_equal_is_accepted_larger_refused():
    gif = make_gif(4, 4, colours=4, screen=(1000, 1000))
    assert parse_gif(gif, max_pixels=10**6).width == 1000 and gif_length(gif, max_pixels=10**6) == len(gif)
    with pytest.raises(GifFormatError, match="max_pixels=999999"):
        parse_gif(gif, max_pixels=10**6 - 1)
    with pytest.raises(GifFormatError, match="max_pixels=999999"):
        gif_length(gif, max_pixels=10**6 - 1)


def test_max_pixels_counts_the_canvas_grown_by_an_image():
    """Pillow grows the canvas to hold an image past the screen, and checks that size."""
    gif = make_gif(4, 4, colours=4, left=998, top=998, screen=(1000, 1000))
    assert parse_gif(gif).canvas == (1002, 1002)
    assert parse_gif(gif, max_pixels=1002 * 1002).images[0].left == 998
    with pytest.raises(GifFormatError, match=r"canvas \(grown to hold image 0 at \(998, 998\)\) of "
                                             r"1002x1002 pixels is larger than max_pixels=1000000"):
        parse_gif(gif, max_pixels=10**6)


def test_gif_length_asks_for_more_on_every_prefix():
    gif = make_gif(9, 9, colours=16, transparent=1, comment=b"x" * 300)
    for n in range(len(gif)):
        with pytest.raises(Incomplete):
            gif_length(gif[:n])
    assert gif_length(b"junk" + gif + b"more", 4) == 4 + len(gif)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_are_parsed_or_refused(data):
    for candidate in (data, b"GIF89a" + data):
        try:
            parse_gif(candidate, max_pixels=10**6)
        except GifFormatError:
            pass
        try:
            gif_length(candidate)
        except GifFormatError:
            pass


SEED_GIFS = [make_gif(6, 5, seed=1, colours=4, transparent=1, loop=0), make_gif(5, 4, seed=2, colours=16,
             local_table=True, interlace=True, comment=b"c")]


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEED_GIFS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=200, deadline=None)
@given(mutated())
def test_mutated_gifs_are_parsed_or_refused(data):
    try:
        info = parse_gif(data)
    except GifFormatError:
        return
    assert 0 < info.end <= len(data) and info.images


def test_pure_modules_load_no_heavy_dependencies():
    code = ("import daskgif.gif.parse, daskgif.gif.encode, daskgif.gif.split, daskgif.gif.join, daskgif.errors, sys; "
            "bad = [m for m in ('dask', 'fsspec', 'imageio', 'PIL', 'distributed') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
