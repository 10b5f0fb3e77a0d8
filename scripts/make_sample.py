"""Regenerate daskgif's embedded sample, ``daskgif/data/sample.img``, byte for byte.

Usage::

    python scripts/make_sample.py [OUT]

The sample has the format of the original ``all-images.img``: GIF89a frames, each with
its own 256-colour global table, joined by four newlines, with a trailing delimiter.
It shows a ball bouncing across a field under a sky that warms and cools, in 32 frames
of 160x120 that loop seamlessly.

Every frame's palette holds the shadow colours (10, 10, 10), (10, 10, 11), ..., so the
bytes ``b"\\n" * 5`` occur inside every colour table: a naive ``split(b"\\n\\n\\n\\n")``
cuts every frame, a structure-aware split does not.

Only integer arithmetic and :func:`daskgif.gif.encode.encode_gif` are used (no floating point,
no Pillow), so the output is the same on every machine and every version.
"""

from __future__ import annotations

import os
import sys

from daskgif.gif.encode import encode_gif

WIDTH, HEIGHT, FRAMES = 160, 120, 32
HORIZON, RADIUS = 88, 14
SUN = (128, 22, 11)  # centre x, centre y, radius
DELIMITER = b"\n\n\n\n"


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], num: int, den: int) -> tuple[int, int, int]:
    return tuple(x + (y - x) * num // den for x, y in zip(a, b))


def _hue(h: int) -> tuple[int, int, int]:
    """A saturated colour on a 6 x 32 step integer colour wheel."""
    seg, f = divmod(h % 192, 32)
    up, down = 40 + 215 * f // 32, 255 - 215 * f // 32
    return [(255, up, 40), (down, 255, 40), (40, 255, up), (40, down, 255), (up, 40, 255), (255, 40, down)][seg]


def palette(t: int) -> bytes:
    """The 256 colours of frame *t*: sky 0-127, ground 128-159, ball 160-223, shadow 224-239, sun 240-255."""
    s = t if t <= FRAMES // 2 else FRAMES - t  # 0 .. 16 .. 0: the sky warms, then cools
    top, horizon = (20 + 3 * s, 40 + 2 * s, 110 + 4 * s), (250 - 2 * s, 170 + 3 * s, 110 + 5 * s)
    colours = [_mix(top, horizon, i, 127) for i in range(128)]
    for stripe in ((40, 130, 45), (70, 165, 60)):
        colours += [_mix((10, 40, 20), stripe, 8 + k, 23) for k in range(16)]
    ball = _hue(t * 6)
    for level in range(64):
        c = _mix(tuple(v // 4 for v in ball), ball, min(level, 48), 48)
        colours.append(_mix(c, (255, 255, 255), max(0, level - 48), 18))
    colours += [(10, 10, 10 + j) for j in range(16)]
    colours += [(255, 240 - 5 * j, 90 + 6 * j) for j in range(16)]
    return b"".join(bytes(c) for c in colours)


def pixels(t: int) -> bytes:
    """The colour indices of frame *t*."""
    p = t % 16  # two bounces per loop
    lift = 60 * p * (16 - p) // 64
    cx = 30 + (t * 100 // 16 if t < 16 else (FRAMES - t) * 100 // 16)
    cy = HORIZON - 2 - RADIUS - lift
    shadow_rx = RADIUS - lift // 6
    out = bytearray()
    for y in range(HEIGHT):
        for x in range(WIDTH):
            dx, dy = x - cx, y - cy
            if dx * dx + dy * dy <= RADIUS * RADIUS:
                d2 = (dx + 5) ** 2 + (dy + 5) ** 2
                out.append(160 + 63 - min(63, d2 * 63 // ((RADIUS + 6) ** 2)))
            elif y < HORIZON:
                sx, sy = x - SUN[0], y - SUN[1]
                d2 = sx * sx + sy * sy
                out.append(240 + d2 * 15 // (SUN[2] ** 2) if d2 <= SUN[2] ** 2 else y * 128 // HORIZON)
            else:
                depth = y - HORIZON
                ex, ey = x - cx, y - (HORIZON + 4)
                if ex * ex * 16 + ey * ey * shadow_rx * shadow_rx <= 16 * shadow_rx * shadow_rx:
                    out.append(224 + min(15, lift // 4))
                else:
                    stripe = ((x - WIDTH // 2) * 24 // (depth + 6) + t * 2) // 6 % 2
                    out.append(128 + 16 * stripe + depth * 16 // (HEIGHT - HORIZON))
    return bytes(out)


def frame(t: int) -> bytes:
    """Frame *t* as a stand-alone GIF89a with a 256-colour global table."""
    return encode_gif(WIDTH, HEIGHT, palette(t), pixels(t))


def make_sample() -> bytes:
    """The whole sample: every frame followed by the delimiter."""
    return b"".join(frame(t) + DELIMITER for t in range(FRAMES))


def main(argv: list[str]) -> int:
    default = os.path.join(os.path.dirname(__file__), os.pardir, "daskgif", "data", "sample.img")
    out = argv[1] if len(argv) > 1 else os.path.normpath(default)
    data = make_sample()
    with open(out, "wb") as f:
        f.write(data)
    print(f"wrote {out}: {FRAMES} frames, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
