"""Fuzzing split + join with mutated real frames (from the embedded sample): only the library's errors, no hang.

The mutations are the damage real files suffer: flipped and overwritten bytes,
cut and inserted runs (delimiters and CR/LF included), truncation, and garbage
between frames.  Whatever the bytes, :func:`split_bytes` (in both ``on_error``
modes), :func:`parse_gif` and :func:`join_gifs` either work or raise
:class:`~daskgif.errors.GifFormatError` naming where the problem is; given the
same ``max_pixels``, the join accepts exactly the frames the parse accepts.
"""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from daskgif.errors import GifFormatError
from daskgif.gif.parse import parse_gif
from daskgif.gif.join import join_gifs
from daskgif.pipeline.sample import sample_path
from daskgif.gif.split import split_bytes
from frames import make_png, mutate

SAMPLE = Path(sample_path()).read_bytes()
FRAMES = [SAMPLE[s.offset:s.offset + s.length] for s in split_bytes(SAMPLE)[:4]] + [make_png(6, 5, seed=1)]
DELIMITERS = [b"\n\n\n\n", b"\r\n\r\n\r\n\r\n", b"\n\n\n\n\n", b""]
NOISE = st.sampled_from([b"\n", b"\r\n", b"\n\n\n\n", b"\x00", b"\xff", b"GIF89a", b";", b"!\xf9\x04", b","])

mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.integers(1, 400)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.one_of(NOISE, st.binary(min_size=1, max_size=12))),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
)


def located(e: GifFormatError, size: int) -> None:
    """A split error names a frame and an offset inside (or just past) the data."""
    assert e.frame is not None and e.frame >= 0, e
    assert e.offset is not None and 0 <= e.offset <= size, e


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Found by this test: a zero-size screen in every frame made join_gifs raise a bare ValueError.
@example(picks=[0], mutations=[("set", 6, 0), ("set", 7, 0)], delimiter=b"\n\n\n\n", trailing=False,
         max_pixels=None)
# Found by this test: an image moved to x=768 grows the 160x120 canvas to 928x120 (111,360 pixels), which
# the parse refused under max_pixels and the join, not given the limit, accepted.
@example(picks=[0], mutations=[("set", 783, 3)], delimiter=b"\n\n\n\n", trailing=True, max_pixels=100_000)
@given(
    picks=st.lists(st.integers(0, len(FRAMES) - 1), min_size=1, max_size=3),
    mutations=st.lists(mutation, min_size=1, max_size=4),
    delimiter=st.sampled_from(DELIMITERS),
    trailing=st.booleans(),
    max_pixels=st.sampled_from([None, 100_000]),
)
def test_split_and_join_survive_mutated_frames(picks, mutations, delimiter, trailing, max_pixels):
    frames = [FRAMES[i] for i in picks]
    data = mutate((delimiter or b"\n\n\n\n").join(frames) + (delimiter if trailing else b""), mutations)
    if not delimiter:  # frames run together with no delimiter at all
        data = b"".join(frames[:1]) + data
    try:
        spans = split_bytes(data, chunk_size=4096, max_pixels=max_pixels)
    except GifFormatError as e:
        located(e, len(data))
        spans = None
    try:
        tolerant = split_bytes(data, chunk_size=4096, max_pixels=max_pixels, on_error="skip")
    except GifFormatError as e:
        assert "no frames found" in str(e) and spans is None, e  # only a stream without any frame
        return
    if spans is not None:
        assert tolerant == spans  # skip mode changes nothing where raise mode found no fault
    assert [s.index for s in tolerant] == list(range(len(tolerant)))
    assert all(s.length > 0 and s.offset + s.length <= len(data) for s in tolerant)
    assert all(a.offset + a.length <= b.offset for a, b in zip(tolerant, tolerant[1:]))
    pieces = [data[s.offset:s.offset + s.length] for s in tolerant]
    good = []
    for piece in pieces:
        try:
            info = parse_gif(piece, max_pixels=max_pixels)
        except GifFormatError as e:
            assert e.offset is None or 0 <= e.offset <= len(piece), e
            continue
        assert info.width > 0 and info.height > 0 and info.images
        good.append(piece)
    out = io.BytesIO()
    try:
        joined = join_gifs(pieces, out, max_pixels=max_pixels)
    except GifFormatError as e:
        assert e.frame is not None and 0 <= e.frame < len(pieces), e
    else:
        assert joined == len(pieces) == len(good)
    event(f"split raised: {spans is None}; frames that parse: {min(len(good), 2)}+")
    if good:
        out = io.BytesIO()
        assert join_gifs(good, out) == len(good)  # without the limit: frames that parse alone join
        assert len(parse_gif(out.getvalue()).images) >= len(good)
