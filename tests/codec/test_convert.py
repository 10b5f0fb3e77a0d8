from __future__ import annotations

import io

import pytest
from PIL import Image

from daskgif.codec import to_gif
from daskgif.errors import GifFormatError
from daskgif.gif.parse import parse_gif
from frames import decode_rgb, make_jpeg, make_png


def pillow_rgba(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGBA").tobytes()


def test_png_of_few_colours_converts_exactly():
    png = make_png(24, 24, seed=2)
    gif = to_gif(png)
    assert parse_gif(gif).images[0].width == 24
    with Image.open(io.BytesIO(png)) as im:
        assert decode_rgb(gif)[0] == im.convert("RGB").tobytes()


def test_png_with_alpha_keeps_transparency():
    png = make_png(30, 20, seed=3, alpha=True)
    want, got = pillow_rgba(png), pillow_rgba(to_gif(png))
    assert parse_gif(to_gif(png)).images[0].transparent is not None
    for i in range(0, len(want), 4):
        assert (want[i + 3] < 128) == (got[i + 3] == 0)
        if want[i + 3] >= 128:
            assert want[i:i + 3] == got[i:i + 3]


@pytest.mark.parametrize("fmt", ["JPEG", "BMP", "TIFF", "WEBP"])
def test_rich_images_are_quantised_to_256_colours(fmt):
    im = Image.frombytes("RGB", (40, 30), bytes(range(256)) * 14 + bytes(range(240)))
    data = io.BytesIO()
    im.save(data, fmt)
    gif = to_gif(data.getvalue())
    info = parse_gif(gif)
    assert (info.width, info.height) == (40, 30) and len(info.global_table) <= 768
    assert to_gif(data.getvalue()) == gif  # deterministic


def test_unreadable_names_frame_and_offset():
    with pytest.raises(GifFormatError, match=r"frame 3 at byte 99: cannot read the image starting b'\\xff\\xd8\\xffjunk'"):
        to_gif(b"\xff\xd8\xffjunk", index=3, offset=99)
    with pytest.raises(GifFormatError, match="frame 1"):
        to_gif(make_jpeg(20, 20)[:200], index=1, offset=0)


def test_frames_are_read_through_imageio_with_the_pillow_plugin(monkeypatch):
    import imageio.v3 as iio

    calls = []
    imopen = iio.imopen

    def spy(uri, io_mode, **kwargs):
        calls.append(kwargs.get("plugin"))
        return imopen(uri, io_mode, **kwargs)

    monkeypatch.setattr(iio, "imopen", spy)
    to_gif(make_png(8, 8, seed=1))
    assert calls == ["pillow"]


@pytest.mark.parametrize("mode", ["L", "P", "I;16", "CMYK", "LA"])
def test_every_pillow_mode_converts(mode):
    im = Image.new("RGB", (6, 4), (200, 100, 50)).convert(mode)
    data = io.BytesIO()
    im.save(data, "TIFF")
    info = parse_gif(to_gif(data.getvalue()))
    assert (info.width, info.height) == (6, 4)


def test_only_the_first_image_of_a_multi_image_file_is_converted():
    data = io.BytesIO()
    first, second = Image.new("RGB", (5, 5), (255, 0, 0)), Image.new("RGB", (5, 5), (0, 0, 255))
    first.save(data, "TIFF", save_all=True, append_images=[second])
    assert decode_rgb(to_gif(data.getvalue()))[0] == first.tobytes()


def test_an_image_over_max_pixels_is_refused_from_its_header_before_any_decoding():
    big = io.BytesIO()
    Image.new("L", (3000, 2000)).save(big, "PNG")
    header_only = big.getvalue()[:200]  # its pixels cut off: decoding it would fail otherwise
    with pytest.raises(GifFormatError) as refused:
        to_gif(header_only, index=2, offset=10_330, max_pixels=1_000_000)
    assert str(refused.value) == "frame 2 at byte 10330: image of 3000x2000 pixels is larger than max_pixels=1000000"
    with pytest.raises(GifFormatError, match="frame 2 at byte 10330: cannot"):  # within the limit: decoded, fails
        to_gif(header_only, index=2, offset=10_330, max_pixels=10_000_000)


def png_header(width: int, height: int) -> bytes:
    """A PNG that is only its header: a signature, an IHDR chunk saying *width* x *height*, and IEND."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) \
        + chunk(b"IEND", b"")


def test_a_header_over_pillows_bomb_limit_is_refused_without_its_warning():
    # pytest turns warnings into errors here: Image.open would warn (DecompressionBombWarning) on this header.
    with pytest.raises(GifFormatError, match="frame 1 at byte 7: image of 9500x9500 pixels is larger than "
                                             "max_pixels=89478485"):
        to_gif(png_header(9500, 9500), index=1, offset=7, max_pixels=89_478_485)
    with pytest.raises(GifFormatError, match=r"larger than Pillow opens without a decompression-bomb warning"):
        to_gif(png_header(9500, 9500), index=1, offset=7)
