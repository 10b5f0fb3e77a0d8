from __future__ import annotations

import io
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daskgif.errors import GifFormatError
from daskgif.gif.split import Span, image_kind, split_bytes, split_frames
from daskgif.pipeline.sample import sample_path
from frames import image_data, make_gif, make_jpeg, make_palette, make_png, make_raw_gif, newline_palette

NL4 = b"\n\n\n\n"


def pieces(data: bytes, spans: list[Span]) -> list[bytes]:
    return [data[s.offset:s.offset + s.length] for s in spans]


@pytest.fixture(scope="module")
def tricky():
    """Frames whose bytes contain four newlines, in every place they can."""
    return [
        make_gif(8, 6, seed=1, palette=newline_palette()),
        make_raw_gif(12, 12, make_palette(128), bytes([10] * 144)),
        make_gif(4, 4, seed=2, colours=4, screen=(2570, 2570)),
        make_gif(9, 7, seed=3, version=b"87a"),
        make_gif(20, 17, seed=4, interlace=True, transparent=3, local_table=True),
        make_png(10, 10, seed=5),
        make_gif(30, 2, seed=6, colours=2),
    ]


@pytest.mark.parametrize("trailing", [True, False])
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 4 * 2**20])
def test_spans_are_the_frames(tricky, trailing, chunk_size):
    data = image_data(tricky, trailing=trailing)
    assert len(data.split(NL4)) != len(tricky) + trailing  # a naive split gets it wrong
    spans = list(split_frames(io.BytesIO(data), chunk_size=chunk_size))
    assert [s.index for s in spans] == list(range(len(tricky)))
    assert pieces(data, spans) == tricky


def test_empty_pieces_and_whitespace_are_skipped():
    a, b = make_gif(3, 3, seed=1), make_gif(4, 4, seed=2)
    data = NL4 * 3 + a + NL4 * 2 + b"\n" + NL4 + b + b"\r\n"
    assert pieces(data, split_bytes(data)) == [a, b]


def test_other_delimiter_and_offsets_from_the_stream_position():
    a, b = make_gif(3, 3, seed=1), make_gif(4, 4, seed=2)
    f = io.BytesIO(b"skip" + a + b"--" + b)
    f.seek(4)
    assert list(split_frames(f, b"--")) == [Span(0, 0, len(a)), Span(1, len(a) + 2, len(b))]


def test_non_gif_frames_end_at_the_delimiter():
    jpeg, png = make_jpeg(16, 16), make_png(8, 8)
    data = image_data([jpeg, png, jpeg], trailing=False)
    assert pieces(data, split_bytes(data, chunk_size=5)) == [jpeg, png, jpeg]


@pytest.mark.parametrize("data, message", [
    (b"", "no frames found in 0 bytes"),
    (NL4 * 3, "no frames found in 12 bytes"),
    (b"\n \r\n", "no frames found in 4 bytes"),
])
def test_no_frames(data, message):
    with pytest.raises(GifFormatError, match=message):
        split_bytes(data)


def test_not_an_image_names_frame_and_offset():
    good = make_gif(4, 4, seed=1)
    data = image_data([good, b"\x00\x01garbage", good])
    with pytest.raises(GifFormatError) as info:
        split_bytes(data)
    assert str(info.value) == (f"frame 1 at byte {len(good) + 4}: not an image: expected b'GIF8' or another "
                               r"image signature, got b'\x00\x01garbag'")


def test_truncated_frame_names_frame_and_offset():
    good = make_gif(10, 10, seed=1)
    data = good + NL4 + good[:-30]
    with pytest.raises(GifFormatError, match=r"frame 1 at byte \d+: truncated in image data") as info:
        split_bytes(data, chunk_size=16)
    assert len(good) + 4 <= info.value.offset <= len(data)
    assert type(info.value) is GifFormatError


def test_bytes_after_the_trailer_are_refused():
    good = make_gif(4, 4, seed=1)
    data = good + b"junk" + NL4 + good
    with pytest.raises(GifFormatError) as info:
        split_bytes(data)
    assert info.value.frame == 0 and info.value.offset == len(good)
    assert "expected the delimiter b'\\n\\n\\n\\n' or the end of the data after the frame, got b'junk" in str(info.value)


def test_colour_table_past_the_end_and_max_pixels():
    bad = b"GIF89a\x10\x00\x10\x00\xff\xff\xff"
    with pytest.raises(GifFormatError, match="frame 0 at byte 13: global colour table of 768 bytes runs past"):
        split_bytes(bad)
    huge = make_gif(2, 2, colours=2, screen=(50000, 50000))
    with pytest.raises(GifFormatError, match="frame 1 at byte .*larger than max_pixels=1000"):
        split_bytes(image_data([make_gif(2, 2), huge]), max_pixels=1000)


def test_bad_arguments():
    with pytest.raises(ValueError, match="delimiter"):
        split_bytes(b"x", b"")
    with pytest.raises(ValueError, match="chunk_size"):
        split_bytes(b"x", chunk_size=0)


def test_image_kind():
    assert image_kind(make_jpeg(2, 2)) == "JPEG" and image_kind(b"BM....") == "BMP" and image_kind(b"GIF8") is None


class CountingReader(io.BytesIO):
    """Records the most bytes asked for at once."""

    largest = 0

    def read(self, n=-1):
        self.largest = max(self.largest, n)
        return super().read(n)


def test_memory_is_bounded_by_a_frame_and_a_chunk():
    frames = [make_gif(16, 16, seed=i % 5) for i in range(300)]
    f = CountingReader(image_data(frames))
    assert len(list(split_frames(f, chunk_size=1000))) == 300
    assert f.largest <= 2 * max(map(len, frames)) + 1000


SEEDS = [image_data([make_gif(5, 4, seed=1, colours=4), make_png(3, 3), make_gif(4, 4, seed=2, palette=newline_palette(4))])]


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from([NL4, b"GIF89a", b"\x00", b";", b"\x21\xf9"]))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.one_of(mutated(), st.binary(max_size=200)), st.sampled_from([3, 64, 4096]))
def test_mutated_streams_are_split_or_refused(data, chunk_size):
    try:
        spans = split_bytes(data, chunk_size=chunk_size)
    except GifFormatError:
        return
    assert spans and all(s.length > 0 and s.offset + s.length <= len(data) for s in spans)
    assert split_bytes(data, chunk_size=1 << 20) == spans


def test_split_memory_stays_near_one_chunk(tmp_path):
    """Splitting a file reads it in chunks: memory follows the chunk size, not the file size."""
    path = tmp_path / "many.img"
    path.write_bytes(image_data([make_gif(32, 32, seed=i % 5) for i in range(4000)]))
    chunk = 64 * 1024
    with open(path, "rb") as f:
        tracemalloc.start()
        count = sum(1 for _ in split_frames(f, chunk_size=chunk))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert count == 4000
    assert path.stat().st_size > 20 * chunk and peak < 4 * chunk, (path.stat().st_size, peak)


@pytest.mark.parametrize(("piece", "message"), [
    (b"GIF88a" + bytes(20), "unknown GIF version b'GIF88a': expected b'GIF87a' or b'GIF89a'"),
    (b"GIF8\n\n\n\n" + bytes(20), r"unknown GIF version b'GIF8\n\n': expected b'GIF87a' or b'GIF89a'"),
    (b"\x89PNG\r\n\x00\n" + bytes(20), r"bad PNG signature b'\x89PNG\r\n\x00\n': expected b'\x89PNG\r\n\x1a\n'"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "a RIFF file that is not WebP: expected b'WEBP' at byte 8, got b'WAVE'"),
])
def test_a_near_miss_signature_says_what_it_found(piece, message):
    good = make_gif(4, 4, seed=1)
    with pytest.raises(GifFormatError) as info:
        split_bytes(image_data([good, piece, good]))
    assert info.value.message == message and info.value.frame == 1 and info.value.offset == len(good) + 4


def test_a_near_miss_delimiter_is_quoted_past_its_length():
    good = make_gif(4, 4, seed=1)
    delimiter = b"--frame-boundary--"
    with pytest.raises(GifFormatError) as info:
        split_bytes(good + delimiter[:-1] + b"X" + good, delimiter)
    assert info.value.message == (f"expected the delimiter {delimiter!r} or the end of the data after the frame, "
                                  f"got {delimiter[:-1] + b'X' + good[:4]!r}")


# --- resynchronising after a damaged frame ----------------------------------------------------------

SAMPLE = Path(sample_path()).read_bytes()
SAMPLE_SPANS = split_bytes(SAMPLE)
#: 40 bytes that send the walk of the sample's frame 2 on in step with frames 3 and 4 to frame 5's
#: trailer, and 40 that break it at once; both once made frame 2's span swallow or lose intact frames.
GARBAGE = {"in step": random.Random(2).randbytes(40), "breaking": b"\xab" * 40}


def damage(data: bytes, at: int, garbage: bytes, insert: bool) -> bytes:
    """Write *garbage* into *data* at *at*: over the bytes there, or inserted between them."""
    return data[:at] + garbage + data[at + (0 if insert else len(garbage)):]


def grown(spans: list[Span], index: int, by: int) -> list[Span]:
    """The spans once frame *index* grew by *by* bytes."""
    return [Span(s.index, s.offset + by * (s.index > index), s.length + by * (s.index == index)) for s in spans]


def test_the_sample_has_32_frames_and_four_newlines_in_every_colour_table():
    assert len(SAMPLE_SPANS) == 32
    assert all(NL4 in SAMPLE[s.offset + 13:s.offset + 13 + 768] for s in SAMPLE_SPANS)


@pytest.mark.parametrize("chunk_size", [4096, 4 * 2**20])
@pytest.mark.parametrize("garbage", GARBAGE)
@pytest.mark.parametrize("insert", [False, True], ids=["overwrite", "insert"])
def test_a_damaged_frame_is_skipped_alone_and_its_neighbours_kept(garbage, insert, chunk_size):
    frame = SAMPLE_SPANS[2]
    data = damage(SAMPLE, frame.offset + frame.length // 2, GARBAGE[garbage], insert)
    spans = split_bytes(data, on_error="skip", chunk_size=chunk_size)
    # Frame 2 runs from its start to the delimiter before frame 3, over the delimiter in its own colour table.
    assert spans == grown(SAMPLE_SPANS, 2, 40 * insert)
    assert [p for i, p in enumerate(pieces(data, spans)) if i != 2] == \
        [p for i, p in enumerate(pieces(SAMPLE, SAMPLE_SPANS)) if i != 2]
    with pytest.raises(GifFormatError) as info:
        split_bytes(data, chunk_size=chunk_size)
    assert info.value.frame == 2 and info.value.offset >= frame.offset


def test_a_walk_in_step_with_the_next_frames_is_refused_at_the_first():
    frame, after = SAMPLE_SPANS[2], SAMPLE_SPANS[3]
    data = damage(SAMPLE, frame.offset + frame.length // 2, GARBAGE["in step"], insert=False)
    with pytest.raises(GifFormatError) as info:
        split_bytes(data)
    assert str(info.value) == (f"frame 2 at byte {frame.offset}: expected the frame to end at the delimiter at byte "
                               f"{frame.offset + frame.length}, which a whole image follows at byte {after.offset}; "
                               "got blocks that run on past it: corrupt or truncated before it?")


@pytest.mark.parametrize("trailing", [True, False])
def test_damage_in_the_last_frame_runs_to_the_end_of_the_data(trailing):
    data = SAMPLE if trailing else SAMPLE[:-len(NL4)]
    last = SAMPLE_SPANS[-1]
    data = damage(data, last.offset + last.length // 2, GARBAGE["breaking"], insert=True)
    # A trailing delimiter is not part of the damaged frame.
    assert split_bytes(data, on_error="skip", chunk_size=1000) == grown(SAMPLE_SPANS, 31, 40)


def test_damage_over_a_delimiter_makes_one_piece_of_the_two_frames():
    two, three, four = SAMPLE_SPANS[2:5]
    data = damage(SAMPLE, three.offset - 20, GARBAGE["breaking"], insert=False)
    spans = split_bytes(data, on_error="skip", chunk_size=1000)
    merged = Span(2, two.offset, four.offset - len(NL4) - two.offset)
    assert spans == [*SAMPLE_SPANS[:2], merged, *(Span(s.index - 1, s.offset, s.length) for s in SAMPLE_SPANS[4:])]


def test_a_piece_after_the_damage_is_more_of_it_unless_an_image_begins_it():
    good, bad = make_gif(6, 5, seed=1, palette=newline_palette()), make_gif(7, 7, seed=2)[:-20]
    garbage = b"\x00\x01 not an image"
    data = image_data([good, garbage, bad, garbage, good, bad])
    spans = split_bytes(data, on_error="skip", chunk_size=16)
    # The garbage after an intact frame is a piece of its own; after a damaged one it may be more of that frame.
    assert pieces(data, spans) == [good, garbage, bad + NL4 + garbage, good, bad]


def test_resynchronising_holds_about_one_chunk(tmp_path):
    """After a frame that fails at once, the scan for the next image reads on in chunks, keeping none."""
    broken = b"GIF89a\x04\x00\x04\x00\x00\x00\x00\x99"  # no colour table, then an unknown block
    path = tmp_path / "junk.img"
    path.write_bytes(image_data([broken, *[b"junk " * 200] * 2000, make_gif(4, 4)]))
    chunk = 64 * 1024
    with open(path, "rb") as f:
        tracemalloc.start()
        lengths = [s.length for s in split_frames(f, chunk_size=chunk, on_error="skip")]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert lengths == [path.stat().st_size - len(make_gif(4, 4)) - 2 * len(NL4), len(make_gif(4, 4))]
    assert path.stat().st_size > 20 * chunk and peak < 4 * chunk, (path.stat().st_size, peak)


def test_a_truncated_frame_reads_little_further_than_the_next_frame():
    """A walk that runs on is stopped by the first whole frame after a delimiter, not by the end of the data."""
    frames = [make_gif(16, 12, seed=i) for i in range(3)]
    f = CountingReader(image_data([frames[0], frames[1][:-40], *[frames[2]] * 3000]))
    spans = list(split_frames(f, chunk_size=1000, on_error="skip"))
    assert len(spans) == 3002 and spans[1].length == len(frames[1]) - 40
    assert f.largest <= 4 * len(frames[2]) + 2000
