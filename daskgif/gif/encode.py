"""A small GIF encoder (LZW), standard library only, deterministic forever: it makes the embedded sample
(``scripts/make_sample.py``) and test frames with exact bytes; the pipeline never encodes.
"""

from __future__ import annotations

from daskgif.gif.parse import table_size_bits

__all__ = ["encode_gif"]


def _lzw(pixels: bytes, min_code_size: int) -> bytes:
    """LZW-encode colour indices as GIF sub-blocks, after the minimum code size byte."""
    clear, eoi = 1 << min_code_size, (1 << min_code_size) + 1
    out = bytearray()
    acc = nbits = 0
    size = min_code_size + 1

    def emit(code: int) -> None:
        nonlocal acc, nbits
        acc |= code << nbits
        nbits += size
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8

    table: dict[int, int] = {}
    next_code = eoi + 1
    emit(clear)
    it = iter(pixels)
    w = next(it, None)
    if w is not None:
        for c in it:
            key = w << 8 | c
            code = table.get(key)
            if code is not None:
                w = code
                continue
            emit(w)
            if next_code < 4096:
                table[key] = next_code
                next_code += 1
                # The decoder adds its entries one code late, so it widens one code late too.
                if next_code > 1 << size and size < 12:
                    size += 1
            else:
                emit(clear)
                table.clear()
                next_code, size = eoi + 1, min_code_size + 1
            w = c
        emit(w)
    emit(eoi)
    if nbits:
        out.append(acc & 0xFF)
    return bytes([min_code_size]) + _sub_blocks(bytes(out))


def _sub_blocks(data: bytes) -> bytes:
    """*data* as GIF data sub-blocks of at most 255 bytes, and the terminator."""
    return b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255] for i in range(0, len(data), 255)) + b"\x00"


def _pad_table(palette: bytes) -> bytes:
    """Pad *palette* with black to ``3 * 2**n`` bytes, 2 to 256 colours.

    >>> _pad_table(b"\\xff" * 9)
    b'\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\x00\\x00'
    """
    colours = len(palette) // 3
    if len(palette) % 3 or not 1 <= colours <= 256:
        raise ValueError(f"palette must hold 1 to 256 RGB colours, got {len(palette)} bytes")
    return palette.ljust(3 << max(1, (colours - 1).bit_length()), b"\x00")


def encode_gif(width: int, height: int, palette: bytes, pixels: bytes, *, version: bytes = b"89a",
               interlace: bool = False, transparent: int | None = None, local_table: bool = False,
               delay: int | None = None, disposal: int = 0, left: int = 0, top: int = 0,
               screen: tuple[int, int] | None = None, background: int = 0, sort: bool = False,
               loop: int | None = None, comment: bytes | None = None) -> bytes:
    """Encode one image as a GIF, byte for byte the same on every machine and version.

    *palette* holds 1 to 256 RGB colours (padded with black to a power of two), *pixels* ``width * height``
    colour indices, row by row.  The options write what their names say; *transparent*, *delay* (in
    hundredths of a second) and *disposal* make a Graphic Control Extension, which ``b"87a"`` cannot carry;
    the logical *screen* defaults to the image's extent.

    >>> gif = encode_gif(2, 1, b"\\x00\\x00\\x00\\xff\\xff\\xff", b"\\x00\\x01")
    >>> gif[:6], len(gif), gif[-1:]
    (b'GIF89a', 35, b';')
    """
    if len(pixels) != width * height:
        raise ValueError(f"pixels must hold width * height = {width * height} indices, got {len(pixels)}")
    if version not in (b"87a", b"89a"):
        raise ValueError(f"version must be b'87a' or b'89a', got {version!r}")
    table = _pad_table(palette)
    colours = len(table) // 3
    if max(pixels, default=0) >= colours:
        raise ValueError(f"pixel index {max(pixels)} is outside the palette of {colours} colours")
    extensions = bytearray()
    if loop is not None:
        extensions += b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + loop.to_bytes(2, "little") + b"\x00"
    if comment is not None:
        extensions += b"\x21\xfe" + _sub_blocks(comment)
    if transparent is not None or delay is not None or disposal:
        extensions += bytes([0x21, 0xF9, 4, disposal << 2 | (transparent is not None)])
        extensions += (delay or 0).to_bytes(2, "little") + bytes([transparent or 0, 0])
    if extensions and version == b"87a":
        raise ValueError("a GIF87a cannot carry extensions (transparent, delay, disposal, loop, comment)")
    sw, sh = screen or (left + width, top + height)
    bits = table_size_bits(table)
    gflags = 0 if local_table else 0x80 | 0x70 | sort << 3 | bits
    out = bytearray(b"GIF" + version + bytes([sw & 0xFF, sw >> 8, sh & 0xFF, sh >> 8, gflags, background, 0]))
    if not local_table:
        out += table
    out += extensions
    out += b"\x2c" + b"".join(v.to_bytes(2, "little") for v in (left, top, width, height))
    out.append((0x80 | sort << 5 | bits if local_table else 0) | interlace << 6)
    if local_table:
        out += table
    if interlace:  # rows in the order of GIF's four passes
        rows = [pixels[y * width:(y + 1) * width] for y in range(height)]
        order = [*range(0, height, 8), *range(4, height, 8), *range(2, height, 4), *range(1, height, 2)]
        pixels = b"".join(rows[y] for y in order)
    return bytes(out) + _lzw(pixels, max(2, (colours - 1).bit_length())) + b"\x3b"
