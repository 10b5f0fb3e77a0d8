"""The runs page (``daskgif.dashboard``): served by a real scheduler, fed by real runs, read in a real browser.

Run as a script, it also redraws the documentation's screenshot::

    python tests/test_dashboard.py docs/_static/runs-page.png
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import dask
import pytest

import daskgif
from daskgif.views.dashboard import PLUGIN_NAME, page_link
from daskgif.views.runs import RunRecord, Runs
from daskgif.errors import RunFailed

sys.path.insert(0, str(Path(__file__).parent))  # run as a script: find frames.py
from frames import image_data, make_gif  # noqa: E402

distributed = pytest.importorskip("distributed")

requires_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                       reason="chromium is not installed (apt-get install chromium)")
XSS = "<script>alert(1)</script>"
GOOD = [make_gif(24, 16, seed=i) for i in range(12)]
UNREADABLE = b"GIF89a" + bytes(30)  # a zero-size screen: dropped with on_error="skip"


def get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers["Content-Type"], response.read()


def get_json(url: str) -> dict:
    kind, body = get(url)
    assert kind.startswith("application/json"), kind
    return json.loads(body)


def dump_dom(url: str, *, screenshot: str | None = None) -> str:
    """The page's DOM after its script ran (virtual time lets its fetches finish), as headless Chromium sees it."""
    with tempfile.TemporaryDirectory() as profile:
        what = [f"--screenshot={screenshot}", "--window-size=1280,1100", "--hide-scrollbars"] if screenshot \
            else ["--dump-dom"]
        done = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--virtual-time-budget=4000", *what, url],
            capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def make_runs(client, folder: Path) -> dict:
    """Two real runs on *client*: one drops an unreadable frame (Success), one fails writing frame 5."""
    (folder / "src.img").write_bytes(image_data([*GOOD[:3], UNREADABLE, *GOOD[3:]]))
    skipped = daskgif.build_graph(url=str(folder / "src.img"), data_file=str(folder / "a" / "data.img"),
                                  out=str(folder / "a" / "clip.gif"), frames_dir=str(folder / "a" / "frames"),
                                  on_error="skip", retry_delay=0)
    skipped.compute(scheduler=client)
    blocked = folder / "b" / "frames" / "frame_05.gif"
    blocked.mkdir(parents=True)  # frame 5's target is a folder: its write fails, at once (not transient)
    failed = daskgif.build_graph(url=str(folder / "src.img"), data_file=str(folder / "b" / "data.img"),
                                 out=str(folder / "b" / "clip.gif"), frames_dir=str(folder / "b" / "frames"),
                                 on_error="skip", retry_delay=0, retries=0)
    try:
        failed.compute(scheduler=client)
    except RunFailed:
        pass
    else:
        raise AssertionError("the run with a blocked frame succeeded")
    return {"skipped": skipped.run, "failed": failed.run}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A cluster of worker processes whose scheduler preloads the runs page, with two runs done on it."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  scheduler_kwargs={"preload": ["daskgif.dashboard"]}) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        runs = make_runs(client, tmp_path_factory.mktemp("runs"))
        link = page_link(client)
        wait_for(lambda: len(get_json(link + "/api/runs.json")["runs"]) == 2)
        yield client, link, runs


def wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_page_link_points_to_the_page(cluster):
    client, link, _ = cluster
    assert link == client.dashboard_link.removesuffix("status") + "daskgif"
    kind, body = get(link)
    assert kind.startswith("text/html") and b"<h1>daskgif runs</h1>" in body


def test_json_lists_both_runs_with_their_frames(cluster):
    _, link, runs = cluster
    listed = {run["run"]: run for run in get_json(link + "/api/runs.json")["runs"]}
    ok, bad = listed[runs["skipped"]], listed[runs["failed"]]
    assert ok["state"] == "Success" and ok["frames"] == {"total": 13, "done": 13,
                                                         "counts": {"Success": 12, "Skipped": 1}}
    assert bad["state"] == "Failed" and bad["frames"]["counts"]["Failed"] == 1
    assert "frame 5" in bad["message"] and bad["parameters"]["url"].endswith("src.img")
    detail = get_json(f"{link}/api/runs/{runs['failed']}.json")
    assert [s["name"] for s in detail["steps"]] == ["fetch", "split", "map-frames", "combine"]
    assert detail["steps"][2]["state"] == "Failed" and detail["steps"][3]["state"] == "Not run"
    (record,) = [r for r in detail["records"] if r["state"] == "Failed"]
    assert record["index"] == 5 and "IsADirectoryError" in record["message"]
    skip = get_json(f"{link}/api/runs/{runs['skipped']}.json")
    assert [(g["first"], g["last"], g["state"]) for g in skip["grid"]] == [
        (0, 2, "Success"), (3, 3, "Skipped"), (4, 12, "Success")]


def test_unknown_run_is_a_json_404(cluster):
    _, link, _ = cluster
    with pytest.raises(urllib.error.HTTPError) as e:
        get(f"{link}/api/runs/nosuchrun.json")
    assert e.value.code == 404 and e.value.headers["Content-Type"].startswith("application/json")


@requires_chromium
def test_browser_shows_the_failed_frame(cluster):
    _, link, runs = cluster
    dom = dump_dom(f"{link}#{runs['failed']}")
    assert f"Run {runs['failed']}" in dom
    row = dom[dom.index('data-frame="5"'):]
    row = row[:row.index("</tr>")]
    assert ">Failed<" in row and "IsADirectoryError" in row
    assert 'title="frame 5: Failed' in dom  # the grid's cell says what it is on hover
    assert runs["skipped"][:12] in dom  # both runs are listed
    assert ">null<" not in dom and "undefined" not in dom and "NaN" not in dom


@requires_chromium
def test_browser_shows_the_skipped_frame(cluster):
    _, link, runs = cluster
    dom = dump_dom(f"{link}#{runs['skipped']}")
    row = dom[dom.index('data-frame="3"'):]
    row = row[:row.index("</tr>")]
    assert ">Skipped<" in row and "unreadable frame dropped" in row
    assert ">0–2<" in dom and ">4–12<" in dom  # successes as ranges


def test_concurrent_runs_are_told_apart(cluster, tmp_path):
    client, link, _ = cluster
    (tmp_path / "src.img").write_bytes(image_data(GOOD))
    graphs = [daskgif.build_graph(url=str(tmp_path / "src.img"), data_file=str(tmp_path / f"{i}.img"),
                                  out=str(tmp_path / f"{i}.gif"), frames_dir=str(tmp_path / f"frames{i}"),
                                  frames_per_task=1) for i in range(3)]
    futures = client.compute(graphs)
    assert all(result.ok for result in client.gather(futures))
    wait_for(lambda: all(get_json(f"{link}/api/runs/{g.run}.json")["state"] == "Success" for g in graphs))
    for graph in graphs:
        run = get_json(f"{link}/api/runs/{graph.run}.json")
        assert run["frames"] == {"total": 12, "done": 12, "counts": {"Success": 12}}
        assert [g["state"] for g in run["grid"]] == ["Success"]


@pytest.fixture
def local_scheduler():
    """A scheduler in this process with the runs page, fed by hand through ``Client.log_event``."""
    with dask.config.set({"daskgif.dashboard.max-runs": 3}), \
            distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0",
                                     scheduler_kwargs={"preload": ["daskgif.dashboard"]}) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client, page_link(client)


def announce(client, run: str, url: str = "file:///data.img", message: str = "") -> None:
    client.log_event("daskgif", {"kind": "run", "run": run, "state": "Running", "time": time.time(),
                                 "parameters": {"url": url}, "out": url})
    client.log_event("daskgif", {"kind": "map", "run": run, "name": "write-frame", "total": 2})
    client.log_event("daskgif", {"kind": "frames", "run": run, "name": "write-frame",
                                 "counts": {"Success": 1, "Failed": 1}, "busy": 0.1, "records": [
                                     {"index": 1, "state": "Failed", "attempts": 1, "message": message}]})


def test_keeps_at_most_max_runs(local_scheduler):
    client, link = local_scheduler
    for i in range(5):
        announce(client, f"run{i}")
    wait_for(lambda: get_json(link + "/api/runs.json")["runs"][0]["run"] == "run4")
    listed = get_json(link + "/api/runs.json")
    assert listed["max_runs"] == 3 and [r["run"] for r in listed["runs"]] == ["run4", "run3", "run2"]


def test_a_run_in_progress_shows_and_ends(local_scheduler):
    client, link = local_scheduler
    client.log_event("daskgif", {"kind": "run", "run": "live", "state": "Running", "time": time.time(),
                                 "parameters": {"url": "file:///data.img"}, "out": "clip.gif"})
    client.log_event("daskgif", {"kind": "step", "run": "live", "name": "fetch", "state": "Success",
                                 "attempts": 2, "start": time.time(), "end": time.time(), "message": ""})
    client.log_event("daskgif", {"kind": "step", "run": "live", "name": "split", "state": "Running",
                                 "attempts": 1, "start": time.time(), "end": None, "message": ""})
    client.log_event("daskgif", {"kind": "map", "run": "live", "name": "write-frame", "total": 40})
    client.log_event("daskgif", {"kind": "frames", "run": "live", "name": "write-frame", "busy": 1.0,
                                 "counts": {"Success": 10}, "records": [
                                     {"index": 7, "state": "Success", "attempts": 2, "message": "retried"}]})
    wait_for(lambda: get_json(link + "/api/runs.json")["runs"])
    run = get_json(f"{link}/api/runs/live.json")
    assert run["state"] == "Running" and run["duration"] is None
    assert [s["state"] for s in run["steps"]] == ["Success", "Running", "Pending", "Pending"]
    assert [(g["first"], g["last"], g["state"], g["retried"]) for g in run["grid"]] == [
        (0, 6, "Pending", False), (7, 7, "Success", True), (8, 39, "Pending", False)]
    if shutil.which("chromium"):
        dom = dump_dom(f"{link}#live")
        assert ">Running<" in dom and "10 / 40" in dom and 'title="frame 7: Success after a retry' in dom
    client.log_event("daskgif", {"kind": "run", "run": "live", "state": "Failed", "time": time.time(),
                                 "message": "stopped"})
    wait_for(lambda: get_json(f"{link}/api/runs/live.json")["state"] == "Failed")
    assert get_json(f"{link}/api/runs/live.json")["grid"][0]["state"] == "Not run"


def test_script_in_data_stays_text(local_scheduler):
    client, link = local_scheduler
    announce(client, "xss", url=f"https://me:secret@host/{XSS}.img", message=f"OSError: {XSS} https://me:pw@h/x")
    wait_for(lambda: get_json(link + "/api/runs.json")["runs"])
    kind, body = get(f"{link}/api/runs/xss.json")
    assert kind == "application/json; charset=utf-8" and b"secret" not in body and b":pw@" not in body
    assert json.loads(body)["records"][0]["message"] == f"OSError: {XSS} https://me:***@h/x"
    kind, page = get(link)
    assert b"alert" not in page
    if shutil.which("chromium"):
        dom = dump_dom(f"{link}#xss")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and XSS not in dom
        assert "secret" not in dom and "me:***@host" in dom


def test_without_dashboard_it_collects_and_serves_nothing():
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None,
                                  scheduler_kwargs={"preload": ["daskgif.dashboard"]}) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        announce(client, "quiet")
        plugin = cluster.scheduler.plugins[PLUGIN_NAME]
        wait_for(lambda: "quiet" in plugin.runs.runs)
        assert plugin.path is None and page_link(client) is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dask_scheduler_preload_with_a_prefix(tmp_path):
    port, http = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                             "--port", str(port), "--dashboard-address", f"127.0.0.1:{http}",
                             "--dashboard-prefix", "dask", "--preload", "daskgif.dashboard"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with distributed.Client(f"tcp://127.0.0.1:{port}", timeout=30, set_as_default=False) as client:
            announce(client, "far")
            link = page_link(client)
            assert link is not None and link.endswith("/dask/daskgif")
            wait_for(lambda: get_json(f"http://127.0.0.1:{http}/dask/daskgif/api/runs.json")["runs"])
    finally:
        proc.terminate()
        proc.wait(30)


def test_model_bounds_frame_records():
    run = RunRecord("r", max_records=5)
    run.add({"kind": "map", "total": 20})
    run.add({"kind": "frames", "counts": {"Success": 10, "Failed": 10}, "records": [
        {"index": i, "state": "Failed", "attempts": 3, "message": "OSError: disk full"} for i in range(10, 20)]})
    assert sorted(run.records) == [10, 11, 12, 13, 14] and run.dropped == {"Failed": 5}
    assert len(run._texts) == 1  # one message, stored once
    assert [(g["first"], g["last"], g["state"]) for g in run.grid()] == [
        (0, 9, "Unlisted"), (10, 14, "Failed"), (15, 19, "Unlisted")]
    assert run.detail()["records_kept"] == 5 and json.loads(run.detail_json())["dropped"] == {"Failed": 5}


def test_model_ignores_malformed_messages_and_late_ones():
    runs = Runs(max_runs=1)
    for msg in (None, "x", {"kind": "run"}, {"run": 3}, {"run": "a", "kind": "frames", "records": [{"index": "z"}]}):
        runs.add(msg)
    runs.add({"run": "a", "kind": "run", "state": "Success", "time": 1.0})
    runs.add({"run": "b", "kind": "run", "state": "Running", "time": 2.0})
    runs.add({"run": "a", "kind": "step", "name": "fetch", "state": "Success"})
    assert list(runs.runs) == ["b"]


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs-page.png").resolve()
    with tempfile.TemporaryDirectory() as tmp, \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                     scheduler_kwargs={"preload": ["daskgif.dashboard"]}) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        made = make_runs(client, Path(tmp))
        time.sleep(1)
        dump_dom(f"{page_link(client)}#{made['failed']}", screenshot=str(out))
    print(out)
