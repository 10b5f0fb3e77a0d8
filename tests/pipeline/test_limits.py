"""``daskgif.limits`` holds across concurrent runs: on a cluster (distributed.Semaphore) and locally."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import pytest

import daskgif  # noqa: F401 - before distributed, which snapshots dask.config
from daskgif import build_graph
from daskgif.pipeline.limits import check_limits, hold
from frames import image_data, make_gif

import distributed

RUNS, LIMIT, STALL = 8, 2, 0.4


def serve(http_server) -> str:
    http_server.serve("/in.img", image_data([make_gif(8, 8, seed=i) for i in range(3)]))
    return http_server.stall("/in.img", STALL)


def graphs(tmp_path: Path, url: str) -> list:
    with dask.config.set({"daskgif.limits.fetch": LIMIT}):
        return [build_graph(url=url, data_file=str(tmp_path / f"d{i}.img"), out=str(tmp_path / f"c{i}.gif"),
                            frames_dir=str(tmp_path / f"f{i}"), retry_delay=0) for i in range(RUNS)]


def test_the_setting_is_checked():
    assert check_limits(None) == {"fetch": None, "write": None}
    with dask.config.set({"daskgif.limits.write": -1}), pytest.raises(ValueError, match="daskgif.limits"):
        build_graph()


def test_local_runs_share_a_process_semaphore(tmp_path, http_server):
    url = serve(http_server)
    with ThreadPoolExecutor(RUNS) as pool:
        results = list(pool.map(lambda g: g.compute(scheduler="threads"), graphs(tmp_path, url)))
    assert all(r.ok for r in results)
    assert http_server.hits("/in.img") == RUNS and 1 <= http_server.max_active <= LIMIT


def test_without_a_limit_the_downloads_overlap(tmp_path, http_server):
    url = serve(http_server)
    with dask.config.set({"daskgif.limits.fetch": None}):
        pipelines = [build_graph(url=url, data_file=str(tmp_path / f"d{i}.img"), out=str(tmp_path / f"c{i}.gif"),
                                 frames_dir=str(tmp_path / f"f{i}")) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        assert all(r.ok for r in pool.map(lambda g: g.compute(scheduler="sync"), pipelines))
    assert http_server.max_active > LIMIT  # what the limit prevents happens without it


def test_runs_on_one_cluster_share_a_distributed_semaphore(tmp_path, http_server):
    url = serve(http_server)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=4, processes=True, dashboard_address=":0") \
            as cluster, distributed.Client(cluster) as client:
        futures = [client.compute(g) for g in graphs(tmp_path, url)]
        results = client.gather(futures)
        with dask.config.set({"daskgif.limits.fetch": LIMIT + 1}):  # another client's other number
            other = build_graph(url=url, data_file=str(tmp_path / "o.img"), out=str(tmp_path / "o.gif"),
                                frames_dir=str(tmp_path / "o"))
        assert client.compute(other).result().ok
        names = client.run_on_scheduler(lambda dask_scheduler: dict(
            dask_scheduler.extensions["semaphores"].max_leases))
    assert all(r.ok for r in results)
    assert http_server.hits("/in.img") == RUNS + 1 and 1 <= http_server.max_active <= LIMIT
    assert names == {f"daskgif-fetch-{LIMIT}": LIMIT, f"daskgif-fetch-{LIMIT + 1}": LIMIT + 1}


def test_hold_limits_a_kind_to_its_leases():
    inside, most, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def work():
        with hold("write", {"write": 3}):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            release.wait(0.1)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 3
