from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from daskgif.gif.parse import parse_gif
from daskgif.pipeline.sample import sample_path
from daskgif.gif.split import split_bytes

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(sample_path()).read_bytes()


def test_sample_is_a_regular_file_in_the_package():
    path = sample_path()
    assert os.path.isabs(path) and os.path.isfile(path) and path.endswith(os.path.join("daskgif", "data", "sample.img"))
    assert len(SAMPLE) < 300_000


def test_sample_format():
    spans = split_bytes(SAMPLE)
    assert len(spans) == 32 and SAMPLE.endswith(b";\n\n\n\n")
    tables = set()
    for s in spans:
        info = parse_gif(SAMPLE[s.offset:s.offset + s.length])
        assert (info.version, info.width, info.height, len(info.global_table)) == (b"89a", 160, 120, 768)
        tables.add(info.global_table)
    assert len(tables) == 32  # every frame its own palette


def test_naive_split_gets_the_sample_wrong():
    assert len([p for p in SAMPLE.split(b"\n\n\n\n") if p]) != len(split_bytes(SAMPLE))


def test_script_regenerates_the_sample_byte_for_byte(tmp_path):
    out = tmp_path / "sample.img"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sample.py"), str(out)], check=True,
                   capture_output=True)
    assert out.read_bytes() == SAMPLE
