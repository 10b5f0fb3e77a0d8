"""A rerun writes only the frames that are missing, failed or different, deciding from one manifest read."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import dask
import pytest

import daskgif  # noqa: F401 - before distributed, which snapshots dask.config
from daskgif import build_graph
from daskgif import storage
from daskgif.cli import summary
from daskgif.errors import RunFailed
from daskgif.pipeline.resume import MANIFEST_NAME, Ranges, decode
from frames import image_data, make_gif

COUNT = 12


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "in.img"
    path.write_bytes(image_data([make_gif(8 + i % 3, 8, seed=i) for i in range(COUNT)]))
    return path


@pytest.fixture
def writes(monkeypatch) -> list[str]:
    """The frame files written, in order (names only)."""
    written: list[str] = []
    original = storage.write_bytes

    def counting(path, data, storage_options=None):
        if re.fullmatch(r"frame_\d+\.gif", os.path.basename(path)):
            written.append(os.path.basename(path))
        return original(path, data, storage_options)

    monkeypatch.setattr(storage, "write_bytes", counting)
    return written


def run(tmp_path: Path, data: Path, **kwargs):
    return build_graph(url=str(data), data_file=str(tmp_path / "d.img"), out=str(tmp_path / "c.gif"),
                       retry_delay=0, **kwargs).compute(scheduler="sync")


def test_a_rerun_writes_nothing_and_the_clip_is_the_same(tmp_path, data, writes):
    first = run(tmp_path, data)
    clip = (tmp_path / "c.gif").read_bytes()
    assert first.reused == 0 and len(writes) == COUNT
    manifest = decode((tmp_path / "frames" / MANIFEST_NAME).read_bytes())
    assert sorted(manifest["frames"]) == list(range(COUNT)) and manifest["count"] == COUNT
    writes.clear()
    again = run(tmp_path, data)
    assert writes == [] and again.reused == COUNT and again.states["write-frame"].counts == {"Success": COUNT}
    assert (tmp_path / "c.gif").read_bytes() == clip and again.frames == first.frames
    assert again.to_dict()["reused"] == COUNT
    assert summary(type("Run", (), {"result": again, "duration": 1.0})()).endswith(f"{COUNT} reused)")


def test_a_frame_deleted_by_hand_is_written_again(tmp_path, data, writes):
    run(tmp_path, data)
    clip = (tmp_path / "c.gif").read_bytes()
    (tmp_path / "frames" / "frame_05.gif").unlink()
    writes.clear()
    again = run(tmp_path, data, frames_per_task=5)
    assert writes == ["frame_05.gif"] and again.reused == COUNT - 1
    assert (tmp_path / "frames" / "frame_05.gif").exists() and (tmp_path / "c.gif").read_bytes() == clip


def test_a_frame_of_another_size_is_written_again(tmp_path, data, writes):
    run(tmp_path, data)
    (tmp_path / "frames" / "frame_02.gif").write_bytes(b"GIF89a truncated")
    writes.clear()
    assert run(tmp_path, data).reused == COUNT - 1 and writes == ["frame_02.gif"]


def test_a_different_data_file_rewrites_every_frame(tmp_path, data, writes):
    run(tmp_path, data)
    writes.clear()
    data.write_bytes(image_data([make_gif(8, 8, seed=100 + i) for i in range(COUNT)]))
    again = run(tmp_path, data, force=True)
    assert again.reused == 0 and len(writes) == COUNT


def test_other_settings_or_resume_off_rewrite_every_frame(tmp_path, data, writes):
    run(tmp_path, data)
    writes.clear()
    with dask.config.set({"daskgif.validate": "structure"}):
        assert run(tmp_path, data).reused == 0
    with dask.config.set({"daskgif.resume": False}):
        assert run(tmp_path, data).reused == 0
    assert len(writes) == 2 * COUNT


def test_a_failed_run_records_the_frames_it_wrote_and_the_rerun_writes_the_rest(tmp_path, data, writes,
                                                                                   monkeypatch):
    counting = storage.write_bytes

    def failing(path, data, storage_options=None):
        if path.endswith("frame_07.gif"):
            raise OSError(errno.EROFS, "Read-only file system", path)
        return counting(path, data, storage_options)

    monkeypatch.setattr(storage, "write_bytes", failing)
    with pytest.raises(RunFailed, match="frame 7"):
        run(tmp_path, data, frames_per_task=4)
    manifest = decode((tmp_path / "frames" / MANIFEST_NAME).read_bytes())
    assert sorted(manifest["frames"]) == [i for i in range(COUNT) if i != 7]
    monkeypatch.setattr(storage, "write_bytes", counting)
    writes.clear()
    again = run(tmp_path, data, frames_per_task=4)
    assert again.ok and again.reused == COUNT - 1 and writes == ["frame_07.gif"]


def test_the_manifest_hash_is_the_hash_of_the_span(tmp_path, data):
    from daskgif.pipeline.resume import digest

    run(tmp_path, data)
    manifest = json.loads((tmp_path / "frames" / MANIFEST_NAME).read_bytes())
    source = (tmp_path / "d.img").read_bytes()
    for index, offset, length, size, hashed, *_ in manifest["frames"]:
        frame = (tmp_path / "frames" / f"frame_{index:02d}.gif").read_bytes()
        assert hashed == digest(frame) == digest(source[offset:offset + length]) and size == len(frame)


def test_batches_get_compact_ranges():
    kept = Ranges.of(i for i in range(10_000) if i != 4_321)
    assert kept.pairs == ((0, 4321), (4322, 10_000)) and 4321 not in kept and 9_999 in kept
    assert len(__import__("pickle").dumps(kept)) < 200


@pytest.fixture
def s3_requests(monkeypatch):
    """Every S3 request made through s3fs in this process: ``(operation, key or prefix)``."""
    s3fs = pytest.importorskip("s3fs")
    seen: list[tuple[str, str]] = []
    original = s3fs.S3FileSystem._call_s3

    async def counting(self, method, *args, **kwargs):
        seen.append((getattr(method, "__name__", str(method)), kwargs.get("Key") or kwargs.get("Prefix") or ""))
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counting)
    return seen


def test_on_s3_a_rerun_costs_a_few_requests_on_the_frames_folder(tmp_path, data, s3_server, s3_bucket,
                                                                  s3_requests):
    import s3fs

    options = s3_server.storage_options
    kwargs = {"url": str(data), "data_file": f"{s3_bucket}/d.img", "out": f"{s3_bucket}/c.gif",
              "frames_dir": f"{s3_bucket}/frames", "storage_options": options, "retry_delay": 0}
    assert build_graph(**kwargs).compute(scheduler="sync").reused == 0
    s3_requests.clear()
    again = build_graph(**kwargs).compute(scheduler="sync")
    on_frames = [r for r in s3_requests if "frames" in r[1]]
    assert again.reused == COUNT
    assert not [r for r in on_frames if re.search(r"frame_\d+\.gif", r[1])], on_frames  # no frame touched
    # listings (stale parts, then the frames), the manifest's read and its rewrite: not one per frame
    assert len(on_frames) <= 8, on_frames
    s3fs.S3FileSystem(**options).rm_file(f"{s3_bucket}/frames/frame_03.gif")
    s3_requests.clear()
    third = build_graph(**kwargs).compute(scheduler="sync")
    written = [key for op, key in s3_requests if re.search(r"frame_\d+\.gif", key) and "put" in op.lower()]
    assert third.reused == COUNT - 1 and written == ["frames/frame_03.gif"], s3_requests
    assert os.path.basename(third.frames[3]) == "frame_03.gif"
