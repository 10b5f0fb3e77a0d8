"""The frames a run writes: compact tables of them, and a rerun that writes only the frames that are missing,
failed or different, deciding from one manifest read."""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
from pathlib import Path

import dask
import pytest

import daskgif  # noqa: F401 - before distributed, which snapshots dask.config
from daskgif import build_graph
from daskgif import storage
from daskgif.cli import summary
from daskgif.errors import RunFailed
from daskgif.pipeline.frames import MANIFEST_NAME, Frame, FramePaths, decode, encode
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
    said = summary(type("Run", (), {"result": again, "duration": 1.0})())
    assert f": all {COUNT} frames, all kept from an earlier run in 1.00 s" in said, said


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


def test_the_manifest_is_written_a_piece_at_a_time_never_held_whole():
    made = []

    def frames(count):  # the frames of a huge run, made as the manifest asks for them
        for i in range(count):
            made.append(i)
            yield Frame(i, 6 * i, 6, 6, "ab" * 16, 1, 1, False)

    pieces = encode({"data": {}, "settings": {}, "count": 10_000}, frames(10_000), per=100)
    next(pieces), next(pieces)
    assert len(made) == 100  # one chunk made, not 10,000 frames
    whole = b"".join(encode({"data": {}, "settings": {}, "count": 10_000}, frames(10_000), per=100))
    assert sorted(decode(whole)["frames"]) == list(range(10_000))
    assert json.loads(whole)["frames"][9_999][0] == 9_999


def test_the_manifest_hash_is_the_hash_of_the_span(tmp_path, data):
    from daskgif.pipeline.frames import digest

    run(tmp_path, data)
    manifest = json.loads((tmp_path / "frames" / MANIFEST_NAME).read_bytes())
    source = (tmp_path / "d.img").read_bytes()
    for index, offset, length, size, hashed, *_ in manifest["frames"]:
        frame = (tmp_path / "frames" / f"frame_{index:02d}.gif").read_bytes()
        assert hashed == digest(frame) == digest(source[offset:offset + length]) and size == len(frame)


def test_compact_spans_frames_and_paths_pickle_and_read_as_sequences():
    from daskgif.gif.split import Span, Spans
    from daskgif.pipeline.frames import Frame, FrameTable

    spans = Spans.of(Span(i, 10 * i, 5) for i in range(5))
    assert pickle.loads(pickle.dumps(spans)) == spans == [Span(i, 10 * i, 5) for i in range(5)]
    assert spans[2:4].first == 2 and list(spans[2:4]) == [Span(2, 20, 5), Span(3, 30, 5)]
    table = FrameTable.of([Frame(0, 0, 5, 5, "0f" * 16, 4, 2, False), None])
    table.append(Frame(2, 20, 5, 40, "f0" * 16, 5, 1, True))
    copy = pickle.loads(pickle.dumps(FrameTable.concat([table[:2], table[2:]])))
    assert list(copy) == list(table) and copy[2] == Frame(2, 20, 5, 40, "f0" * 16, 5, 1, True) and copy.size == (5, 2)
    assert list(table.indices()) == [0, 2] and len(pickle.dumps(table)) < 8 * 8 * 3 + 200
    paths = pickle.loads(pickle.dumps(FramePaths.of("d", 3, table.indices())))
    assert paths == ("d/frame_00.gif", "d/frame_02.gif") and len(paths) == 2
    big = FramePaths("d", 1_000_000)
    assert big[999_999] == "d/frame_999999.gif" and len(json.dumps(big.to_json())) < 200
    gaps = FramePaths.of("d", 1_000_000, (i for i in range(1_000_000) if i % 500_000 != 7))
    assert gaps.to_json()["not_written"] == {"count": 2, "first": [7, 500_007]} and len(pickle.dumps(gaps)) < 300


def test_batches_get_compact_ranges():
    kept = FramePaths.of("frames", 10_000, (i for i in range(10_000) if i != 4_321))
    assert kept.pairs == ((0, 4321), (4322, 10_000)) and not kept.holds(4321) and kept.holds(9_999)
    assert len(pickle.dumps(kept)) < 200


@pytest.fixture
def s3_requests(monkeypatch):
    """Every S3 request made through s3fs in this process: ``(operation, key or prefix)``."""
    import s3fs
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
    on_frames = [r for r in s3_requests if "frames/" in r[1]]
    assert again.reused == COUNT
    frames_read = [r for r in on_frames if re.search(r"frame_\d+\.gif", r[1])]
    assert not [op for op, _ in frames_read if "put" in op.lower()], frames_read  # proven by reading, never written
    # listings (stale parts, then the frames), the manifest's read and its rewrite, and one read per frame it proves
    assert len(on_frames) - len(frames_read) <= 8 and len(frames_read) <= 2 * COUNT, on_frames
    s3fs.S3FileSystem(**options).rm_file(f"{s3_bucket}/frames/frame_03.gif")
    s3_requests.clear()
    third = build_graph(**kwargs).compute(scheduler="sync")
    written = [key for op, key in s3_requests if re.search(r"frame_\d+\.gif", key) and "put" in op.lower()]
    assert third.reused == COUNT - 1 and written == ["frames/frame_03.gif"], s3_requests
    assert os.path.basename(third.frames[3]) == "frame_03.gif"


# --- The manifest is a hint: a lie never changes the output ------------------------------------------

def lie(tmp_path: Path, index: int, **changes) -> None:
    """Rewrite frame *index*'s manifest entry with *changes* (field names of resume.Entry)."""
    path = tmp_path / "frames" / MANIFEST_NAME
    record = json.loads(path.read_text())
    fields = ["index", "offset", "length", "size", "digest", "width", "height", "converted"]
    for entry in record["frames"]:
        if entry[0] == index:
            for name, value in changes.items():
                entry[fields.index(name)] = value
    path.write_text(json.dumps(record))


@pytest.mark.parametrize("changes", [{"converted": True}, {"width": -1}, {"width": 10**30}, {"height": 2**62},
                                     {"offset": 0}, {"digest": "00"}, {"size": "big"}])
def test_a_lying_manifest_entry_is_proven_false_and_the_frame_written_again(tmp_path, data, writes, changes):
    run(tmp_path, data)
    clip = (tmp_path / "c.gif").read_bytes()
    lie(tmp_path, 7, **changes)
    writes.clear()
    again = run(tmp_path, data)
    assert again.ok and (tmp_path / "c.gif").read_bytes() == clip  # the same pixels, in the same places
    assert writes in ([], ["frame_07.gif"]) and again.reused >= COUNT - 1
    third = run(tmp_path, data)  # and the rerun after it is fine too
    assert third.ok and third.reused == COUNT and (tmp_path / "c.gif").read_bytes() == clip


def test_a_frame_file_changed_by_hand_is_never_kept(tmp_path, data, writes):
    run(tmp_path, data)
    clip = (tmp_path / "c.gif").read_bytes()
    frame = tmp_path / "frames" / "frame_04.gif"
    other = (tmp_path / "frames" / "frame_05.gif").read_bytes()
    frame.write_bytes(other[: len(frame.read_bytes())].ljust(len(frame.read_bytes()), b"\0"))  # same size, other bytes
    writes.clear()
    again = run(tmp_path, data)
    assert writes == ["frame_04.gif"] and again.reused == COUNT - 1 and (tmp_path / "c.gif").read_bytes() == clip


def test_a_new_data_file_with_the_same_spans_rewrites_the_frames_that_changed(tmp_path, writes):
    first = tmp_path / "a.img"
    first.write_bytes(image_data([make_gif(8, 8, seed=i) for i in range(COUNT)]))
    run(tmp_path, first)
    second = tmp_path / "b.img"  # same frame sizes, so the same spans; frame 3 differs
    second.write_bytes(image_data([make_gif(8, 8, seed=100 if i == 3 else i) for i in range(COUNT)]))
    writes.clear()
    result = run(tmp_path, second, force=True)
    data = (tmp_path / "d.img").read_bytes()  # every frame file holds the new data file's bytes
    assert result.ok and "frame_03.gif" in writes
    for i, path in enumerate(result.frames):
        assert Path(path).read_bytes() in data, i


@pytest.mark.parametrize("manifest", ["garbage", "folder", "huge-numbers"])
def test_a_manifest_that_is_not_one_means_a_full_rerun_never_a_crash(tmp_path, data, writes, manifest):
    run(tmp_path, data)
    clip = (tmp_path / "c.gif").read_bytes()
    path = tmp_path / "frames" / MANIFEST_NAME
    path.unlink()
    if manifest == "garbage":
        path.write_bytes(os.urandom(4096))
    elif manifest == "folder":
        path.mkdir()
    else:
        path.write_text(json.dumps({"version": 1, "data": {}, "settings": {}, "count": 10**400, "frames": [[0] * 8]}))
    writes.clear()
    again = run(tmp_path, data)
    assert again.ok and again.reused == 0 and len(writes) == COUNT and (tmp_path / "c.gif").read_bytes() == clip
