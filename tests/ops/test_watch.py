"""Watching a location: new or changed inputs run as one batch a listing, remembered across restarts.

In-process through the API (``memory://`` is per process) and on a real S3 server (moto); files
are added while the schedule loop runs, from its injected sleep: the wait between two listings.
The command line on a local folder is tested in ``tests/face/test_cli.py``.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import fsspec
import pytest

import daskgif
from daskgif.ops.history import read_history
from daskgif.ops.schedule import run_schedule
from daskgif.ops.watch import Watch, run_inputs, state_path

SAMPLE = Path(daskgif.sample_path()).read_bytes()


def layout(root: str) -> dict:
    return {"out": f"{root}/out/{{name}}.gif", "data_file": f"{root}/data/{{name}}.img",
            "frames_dir": f"{root}/frames/{{name}}", "retry_delay": 0}


def names(runs) -> list[tuple[int, str, bool]]:
    return [(run.number, run.parameters["url"].rsplit("/", 1)[1], run.ok) for run in runs]


@pytest.fixture
def memory():
    root = f"memory://watch-{uuid.uuid4().hex[:8]}"
    yield root, fsspec.filesystem("memory")
    fsspec.filesystem("memory").rm(root.removeprefix("memory:/"), recursive=True)


def test_a_watch_runs_what_appears_while_it_runs_and_reports_each_input(memory):
    root, fs = memory
    fs.pipe(f"{root}/in/a.img", SAMPLE)
    arrivals = [{"b.img": SAMPLE, "c.img": b"junk\n\n\n\n"}, {}, {"c.img": SAMPLE}]

    def sleep(seconds):  # between two listings: new files arrive
        for name, data in arrivals.pop(0).items():
            fs.pipe(f"{root}/in/{name}", data)

    watch = Watch(f"{root}/in", layout(root), f"{root}/seen.json")
    runs = run_schedule({}, every=60, max_runs=3, job=watch, scheduler="sync", sleep=sleep, history=f"{root}/h.jsonl")
    # b and c in one batch; c failed: unchanged, the third listing lets it wait (no run); changed, the fourth
    # runs it at once, as run 3.
    assert names(runs) == [(1, "a.img", True), (2, "b.img", True), (2, "c.img", False), (3, "c.img", True)]
    assert len({run.batch for run in runs}) == 3 and runs[1].batch == runs[2].batch
    history = read_history(f"{root}/h.jsonl")
    assert [(r["run"], r["batch"], r["ok"]) for r in history] == [(r.number, r.batch, r.ok) for r in runs]
    assert fs.exists(f"{root}/out/c.gif") and sorted(json.loads(fs.cat(f"{root}/seen.json"))) == \
        [f"memory:///{root[9:]}/in/{name}.img" for name in "abc"]


def test_a_restart_does_not_redo_old_inputs_but_runs_changed_ones(memory):
    root, fs = memory
    for name in ("a", "b"):
        fs.pipe(f"{root}/in/{name}.img", SAMPLE)
    assert names(Watch(f"{root}/in/*.img", layout(root), f"{root}/seen.json")(1, scheduler="sync")) == \
        [(1, "a.img", True), (1, "b.img", True)]
    again = Watch(f"{root}/in/*.img", layout(root), f"{root}/seen.json")
    assert again(1, scheduler="sync") == []
    fs.pipe(f"{root}/in/b.img", SAMPLE + b"\n")  # changed: another size
    assert names(again(2, scheduler="sync")) == [(2, "b.img", True)]


def test_since_start_takes_only_what_appears_later(memory):
    root, fs = memory
    fs.pipe(f"{root}/in/old.img", SAMPLE)
    watch = Watch(f"{root}/in/*.img", layout(root), f"{root}/seen.json", since_start=True)
    assert watch(1, scheduler="sync") == [] and list(json.loads(fs.cat(f"{root}/seen.json"))) == \
        [f"memory:///{root[9:]}/in/old.img"]
    fs.pipe(f"{root}/in/new.img", SAMPLE)
    assert names(watch(1, scheduler="sync")) == [(1, "new.img", True)]
    assert not fs.exists(f"{root}/out/old.gif")


def test_a_bad_input_left_as_it_is_is_tried_again_less_and_less_often(memory):
    root, fs = memory
    fs.pipe(f"{root}/in/bad.img", b"junk\n\n\n\n")
    watch = Watch(f"{root}/in", layout(root), f"{root}/seen.json")
    tried = [listing for listing in range(1, 16) for run in watch(1, scheduler="sync")]
    assert tried == [1, 3, 7, 15]  # after 2, 4, 8 listings: not fetched, run, logged and posted every time


def test_a_batch_that_cannot_be_built_is_a_failed_run_per_input(memory):
    root, fs = memory
    for folder in ("x", "y"):
        fs.pipe(f"{root}/in/{folder}/day.img", SAMPLE)  # both named "day": they would write one clip
    watch = Watch(f"{root}/in", layout(root), f"{root}/seen.json")
    runs = watch(1, scheduler="sync")
    assert [(run.ok, "would both write out" in run.message) for run in runs] == [(False, True), (False, True)]
    assert json.loads(fs.cat(f"{root}/seen.json")) == {}  # tried again at the next listing


def test_a_stop_cancels_what_has_not_ended(memory):
    root, fs = memory
    fs.pipe(f"{root}/in/a.img", SAMPLE)
    stop = threading.Event()
    stop.set()
    runs = run_inputs(f"{root}/in/*.img", kwargs=layout(root), scheduler="sync", stop=stop)
    assert [(run.ok, run.cancelled, run.message) for run in runs] == [(False, True, "cancelled by a stop request")]


def test_the_state_file_sits_next_to_the_history():
    assert state_path("in/", "logs/h.jsonl").startswith("logs/.daskgif-watch-")
    assert state_path("in/") != state_path("other/")


def test_a_watch_on_s3_runs_the_objects_added_while_it_runs(tmp_path, s3_server, s3_bucket):
    import s3fs

    s3 = s3fs.S3FileSystem(**s3_server.storage_options)
    s3.pipe(f"{s3_bucket}/dumps/a.img", SAMPLE)
    added = []

    def sleep(seconds):
        if not added:
            s3.pipe(f"{s3_bucket}/dumps/b.img", SAMPLE)
            added.append(True)

    kwargs = {**layout(str(tmp_path)), "storage_options": {"s3": s3_server.storage_options}}
    watch = Watch(f"{s3_bucket}/dumps/", kwargs, state_path(f"{s3_bucket}/dumps/", f"{s3_bucket}/h.jsonl"))
    runs = run_schedule({}, every=60, max_runs=2, job=watch, scheduler="sync", sleep=sleep,
                        storage_options=kwargs["storage_options"], history=f"{s3_bucket}/h.jsonl")
    assert names(runs) == [(1, "a.img", True), (2, "b.img", True)]
    assert (tmp_path / "out" / "b.gif").exists()
    s3.invalidate_cache()
    seen = json.loads(s3.cat(watch.state))
    assert sorted(seen) == [f"{s3_bucket}/dumps/a.img", f"{s3_bucket}/dumps/b.img"]
    assert all(version.startswith('"') for size, version in seen.values())  # ETags, from the listing
    assert len(read_history(f"{s3_bucket}/h.jsonl", storage_options={"s3": s3_server.storage_options})) == 2
