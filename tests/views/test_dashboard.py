"""The runs page (``daskgif.dashboard``): served by a real scheduler, fed by real runs, read in a real browser.

Run as a script, it also redraws the documentation's screenshot::

    python tests/views/test_dashboard.py docs/_static/runs-page.png
"""

from __future__ import annotations

import json
import logging
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
from daskgif.views.dashboard import PLUGIN_NAME, RunsPlugin, page_link
from daskgif.views.runs import RunRecord, Runs
from daskgif.errors import RunFailed

sys.path.insert(0, str(Path(__file__).parents[1]))  # run as a script: find frames.py
from frames import image_data, make_gif  # noqa: E402

import distributed

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


def executing(dask_worker, token: str) -> list[str]:
    """The tasks of run *token* still executing on a worker (cancelled ones included, until they end)."""
    return [str(key) for key, ts in dask_worker.state.tasks.items()
            if token in str(key) and ts.state in ("executing", "long-running", "cancelled")]


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
    client, link, runs = cluster
    listed = {run["run"]: run for run in get_json(link + "/api/runs.json")["runs"]}
    ok, bad = listed[runs["skipped"]], listed[runs["failed"]]
    assert ok["state"] == "Success" and ok["frames"] == {"total": 13, "done": 13,
                                                         "counts": {"Success": 12, "Skipped": 1}}
    assert bad["state"] == "Failed" and bad["frames"]["counts"]["Failed"] == 1
    assert "frame 5" in bad["message"] and bad["parameters"]["url"].endswith("src.img")
    detail = get_json(f"{link}/api/runs/{runs['failed']}.json")
    # The page knows the steps a run names in its first message; without them, those it has seen.
    first = next(msg for _, msg in client.get_events("daskgif") if msg.get("run") == runs["failed"])
    names = [s["name"] for s in detail["steps"]]
    assert names == (list(first["steps"]) if "steps" in first else ["fetch", "split", "map-frames"])
    assert names[:3] == ["fetch", "split", "map-frames"] and detail["steps"][2]["state"] == "Failed"
    assert all(step["state"] == "Not run" for step in detail["steps"][3:])
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


def test_a_batch_of_inputs_shows_its_id_on_each_run(cluster, tmp_path):
    client, link, runs = cluster
    for name in ("mon", "tue"):
        (tmp_path / f"{name}.img").write_bytes(image_data(GOOD[:2]))
    graphs = daskgif.build_graphs(str(tmp_path / "*.img"), out=str(tmp_path / "{name}.gif"),
                                  data_file=str(tmp_path / "data" / "{name}.img"), frames_dir=str(tmp_path / "f" / "{name}"))
    assert all(result.ok for result in client.gather(client.compute(graphs)))
    wait_for(lambda: all(get_json(f"{link}/api/runs/{g.run}.json")["state"] == "Success" for g in graphs))
    listed = {run["run"]: run["batch"] for run in get_json(link + "/api/runs.json")["runs"]}
    assert [listed[g.run] for g in graphs] == [graphs[0].params.batch] * 2 and listed[runs["skipped"]] is None
    if shutil.which("chromium"):
        assert f">{graphs[0].params.batch}<" in dump_dom(f"{link}#{graphs[0].run}")


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
                                 "parameters": {"url": "file:///data.img"}, "out": "clip.gif",
                                 "steps": ["fetch", "split", "map-frames", "combine"]})
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
    assert len(run._texts) == 2  # one message and one state, each stored once
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


# -- nothing lost, nothing wrong, nothing stuck ------------------------------------------------------

#: Messages any client can send on the topic, none of which the page can use.
MALFORMED = [
    None, "x", 3, ["run", "a"], {}, {"kind": "run", "state": "Running"}, {"run": 3, "kind": "run", "state": "Running"},
    {"run": "a/b", "kind": "run", "state": "Running"}, {"run": "x" * 200_000, "kind": "run", "state": "Running"},
    {"run": "bad", "kind": "nonsense"}, {"run": "bad", "kind": "run", "state": ["Success"]},
    {"run": "bad", "kind": "run", "state": "Running", "time": "yesterday"},
    {"run": "bad", "kind": "run", "state": "Running", "time": float("nan")},
    {"run": "bad", "kind": "run", "state": "Failed", "time": float("inf")},
    {"run": "bad", "kind": "run", "state": "Running", "parameters": ["url"]},
    {"run": "bad", "kind": "run", "state": "Running", "parameters": {"url": "u"}, "steps": "fetch"},
    {"run": "bad", "kind": "run", "state": "Success", "size": "big"},
    {"run": "bad", "kind": "step", "name": {"x": [1, [2, [3]]]}, "state": "Running"},
    {"run": "bad", "kind": "step", "name": "fetch", "state": "Running", "start": "now"},
    {"run": "bad", "kind": "step", "name": "fetch", "state": "Success", "attempts": -1},
    {"run": "bad", "kind": "map", "total": "many"},
    {"run": "bad", "kind": "frames", "counts": {"Success": "1"}},
    {"run": "bad", "kind": "frames", "counts": [1, 2]},
    {"run": "bad", "kind": "frames", "busy": float("nan")},
    {"run": "bad", "kind": "frames", "records": "all"},
    {"run": "bad", "kind": "frames", "records": [{"index": -1, "state": "Failed"}]},
    {"run": "bad", "kind": "frames", "records": [{"index": 0, "state": {"deep": [[[{}]]]}}]},
]


def test_malformed_messages_are_dropped_and_the_page_still_answers(local_scheduler, caplog):
    client, link = local_scheduler
    announce(client, "good")
    huge = "https://host/" + "a" * 200_000
    client.log_event("daskgif", {"kind": "run", "run": "long", "state": "Running", "time": time.time(),
                                 "parameters": {"url": huge, "nested": {"a": [{"b": [[["x" * 10_000]]]}]}},
                                 "out": huge, "steps": ["fetch", "s" * 10_000]})
    with caplog.at_level(logging.WARNING, logger="daskgif"):
        for msg in MALFORMED:
            client.log_event("daskgif", msg)  # answered once the scheduler has taken it
            assert [run["run"] for run in get_json(link + "/api/runs.json")["runs"]] == ["long", "good"]
    dropped = [r for r in caplog.records if r.name.startswith("daskgif")]
    assert len(dropped) == len(MALFORMED) and all(r.exc_info is None and "dropped" in r.getMessage() for r in dropped)
    kind, body = get(link + "/api/runs.json")
    assert len(body) < 20_000
    listed = {run["run"]: run for run in json.loads(body)["runs"]}
    assert sorted(listed) == ["good", "long"]  # the malformed ones made no run
    assert listed["good"]["frames"] == {"total": 2, "done": 2, "counts": {"Success": 1, "Failed": 1}}
    long = get_json(f"{link}/api/runs/long.json")
    for text in (long["parameters"]["url"], long["out"], long["parameters"]["nested"], long["steps"][1]["name"]):
        assert 1000 < len(text) <= 2000 and text.endswith("…")
    assert long["parameters"]["url"].startswith("https://host/aaa")
    assert get(link)[0].startswith("text/html") and get_json(f"{link}/api/runs/good.json")["state"] == "Running"


def test_a_run_cancelled_from_another_client_shows_cancelled(cluster, http_server, tmp_path):
    client, link, _ = cluster
    http_server.serve("/slow.img", image_data(GOOD))
    url = http_server.trickle("/slow.img", 16, 0.05)  # a fetch that lasts until the server closes
    graph = daskgif.build_graph(url=url, data_file=str(tmp_path / "data.img"), out=str(tmp_path / "clip.gif"),
                                frames_dir=str(tmp_path / "frames"), retries=0)
    future = client.compute(graph)
    detail = f"{link}/api/runs/{graph.run}.json"
    wait_for(lambda: http_server.hits("/slow.img") and get_json(link + "/api/runs.json")["runs"][0]["run"] == graph.run)
    assert get_json(detail)["state"] == "Running"
    with distributed.Client(client.scheduler.address, set_as_default=False) as other:
        other.cancel(distributed.Future(future.key, other), force=True)
        wait_for(lambda: get_json(detail)["state"] != "Running")
        run = get_json(detail)
        assert run["state"] == "Cancelled" and run["message"] == f"cancelled by client {other.id}"
        assert run["end"] is not None and run["steps"][0] == {**run["steps"][0], "name": "fetch", "state": "Cancelled"}
    # The fetch still running on the worker stops at its next chunk (its task was cancelled): no late Failed.
    wait_for(lambda: not any(client.run(executing, token=graph.run).values()))
    http_server.close()
    assert not any(msg.get("run") == graph.run and msg.get("state") == "Failed"
                   for _, msg in client.get_events("daskgif"))
    run = get_json(detail)
    assert run["state"] == "Cancelled" and run["message"] == f"cancelled by client {other.id}"
    assert {r["run"]: r["state"] for r in get_json(link + "/api/runs.json")["runs"]}[graph.run] == "Cancelled"
    if shutil.which("chromium"):
        dom = dump_dom(f"{link}#{graph.run}")
        assert f'title="cancelled by client {other.id}">Cancelled<' in dom
        assert f'class="stopped msg">cancelled by client {other.id}<' in dom


def test_a_run_its_client_let_go_of_shows_cancelled(cluster, http_server, tmp_path):
    client, link, _ = cluster
    http_server.serve("/slow.img", image_data(GOOD))
    url = http_server.trickle("/slow.img", 16, 0.05)
    graph = daskgif.build_graph(url=url, data_file=str(tmp_path / "data.img"), out=str(tmp_path / "clip.gif"),
                                frames_dir=str(tmp_path / "frames"), retries=0)
    detail = f"{link}/api/runs/{graph.run}.json"
    with distributed.Client(client.scheduler.address, set_as_default=False) as gone:
        gone.compute(graph)
        wait_for(lambda: http_server.hits("/slow.img") and graph.run in {
            r["run"] for r in get_json(link + "/api/runs.json")["runs"]})
    wait_for(lambda: get_json(detail)["state"] != "Running")  # closing, the client released its futures
    assert get_json(detail)["state"] == "Cancelled"
    assert get_json(detail)["message"] == "released by its client before it ended"


def test_plugin_names_who_stopped_a_run():
    """The plugin as the scheduler drives it: an event under the client's id, then the transitions it causes."""
    plugin = RunsPlugin(max_runs=5, max_records=10)
    for run in ("cut", "gone", "done", "failed"):
        plugin.log_event("daskgif", {"kind": "run", "run": run, "state": "Running", "time": 1.0, "parameters": {}})
    plugin.log_event("daskgif", {"kind": "run", "run": "done", "state": "Success", "time": 2.0})
    plugin.log_event("Client-a", {"action": "cancel", "count": 2, "force": True})
    plugin.transition("combine-cut", "waiting", "released", stimulus_id="cancel-key-1.0")
    plugin.log_event("all", {"action": "remove-client", "client": "Client-b"})
    plugin.log_event("Client-b", {"action": "remove-client", "client": "Client-b"})
    plugin.transition("fetch-gone", "processing", "released", stimulus_id="remove-client-2.0")
    plugin.log_event("daskgif", {"kind": "run", "run": "failed", "state": "Failed", "time": 2.0, "message": "E"})
    for token in ("done", "failed"):  # finished: their results are let go of, nothing is stopped
        plugin.transition(f"combine-{token}", "memory", "released", stimulus_id="remove-client-3.0")
        plugin.transition(f"map-frames-{token}", "erred", "released", stimulus_id="cancel-key-3.0")
    plugin.transition("fetch-other", "processing", "memory", stimulus_id="task-finished-4.0")
    assert {token: (run.state, run.message) for token, run in plugin.runs.runs.items()} == {
        "cut": ("Cancelled", "cancelled by client Client-a"), "gone": ("Cancelled", "client Client-b went away"),
        "done": ("Success", ""), "failed": ("Failed", "E")}


def test_model_keeps_a_cancelled_run_cancelled():
    runs = Runs()
    runs.stop("early", "cancelled by client c1")  # the cancel overtook the run's first message
    runs.add({"kind": "run", "run": "early", "state": "Running", "time": 1.0, "parameters": {}})
    assert runs.runs["early"].state == "Cancelled" and runs.runs["early"].message == "cancelled by client c1"
    runs.add({"kind": "run", "run": "r", "state": "Running", "time": 1.0, "parameters": {}})
    runs.add({"kind": "step", "run": "r", "name": "map-frames", "state": "Running", "start": 2.0})
    runs.stop("r", "cancelled by client c1")
    runs.add({"kind": "step", "run": "r", "name": "map-frames", "state": "Failed", "start": 2.0, "end": 3.0,
              "message": "FuturesCancelledError: ..."})
    runs.add({"kind": "run", "run": "r", "state": "Failed", "time": 3.0, "message": "FuturesCancelledError: ..."})
    run = runs.runs["r"]
    assert (run.state, run.message, run.steps["map-frames"]["state"]) == ("Cancelled", "cancelled by client c1",
                                                                          "Cancelled")
    runs.add({"kind": "run", "run": "r", "state": "Cancelled", "time": 4.0, "message": "daskgif stop"})
    assert run.message == "daskgif stop"  # the one who stopped it says best why
    runs.add({"kind": "run", "run": "ok", "state": "Success", "time": 1.0})
    runs.stop("ok", "cancelled by client c1")
    assert runs.runs["ok"].state == "Success"


def test_steps_come_from_the_run_or_in_the_order_seen():
    run = RunRecord("r")
    run.add({"kind": "run", "state": "Running", "time": 1.0, "steps": ["fetch", "split", "write"]})
    run.add({"kind": "step", "name": "split", "state": "Running"})
    run.add({"kind": "step", "name": "extra", "state": "Running"})
    assert [(s["name"], s["state"]) for s in run.detail()["steps"]] == [
        ("fetch", "Pending"), ("split", "Running"), ("write", "Pending"), ("extra", "Running")]
    plain = RunRecord("p")
    for name in ("b", "a"):
        plain.add({"kind": "step", "name": name, "state": "Success"})
    assert [s["name"] for s in plain.detail()["steps"]] == ["b", "a"]


#: What a scheduler serving the runs page must not load for it: the pipeline, file and image libraries, and the
#: progress bar, picture and notebook libraries.
HEAVY = ("daskgif.pipeline", "daskgif.storage", "fsspec", "imageio", "PIL", "numpy", "tqdm", "graphviz", "IPython")


def test_the_preload_imports_nothing_heavy():
    """A scheduler started with the preload, serving the page, loads none of HEAVY that distributed did not load."""
    code = f"""if True:
        import asyncio, sys
        import distributed
        loaded = {{name for name in {HEAVY!r} if name in sys.modules}}  # numpy: distributed loads it itself

        async def main():
            async with distributed.Scheduler(host="127.0.0.1", port=0, dashboard_address="127.0.0.1:0",
                                             preload=["daskgif.dashboard"]) as scheduler:
                assert scheduler.plugins["daskgif-dashboard"].path == "/daskgif"

        asyncio.run(main())
        print(sorted(name for name in {HEAVY!r} if name in sys.modules and name not in loaded))
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


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
