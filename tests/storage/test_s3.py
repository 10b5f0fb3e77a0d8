"""Object storage for real: the whole pipeline on a moto S3 server, run by worker processes with their own folders.

The workers run in working directories of their own (not the client's) and have no
AWS variables in their environment: the endpoint and the credentials reach every
task only through ``storage_options``.
"""

from __future__ import annotations

import os
from pathlib import Path

import daskgif  # noqa: F401 - before distributed, which snapshots dask.config
import pytest
from dask.utils import key_split
from distributed import Client, LocalCluster, get_task_stream

from daskgif import build_graph
from frames import image_data, make_gif, make_png

import s3fs

DATA = image_data([make_gif(20, 16, seed=i) for i in range(10)] + [make_png(20, 16, seed=99)])


def aws_variables() -> list[str]:
    return [name for name in os.environ if name.startswith("AWS_")]


def forget_aws_environment() -> list[str]:
    gone = [name for name in list(os.environ) if name.startswith("AWS_")]
    for name in gone:
        del os.environ[name]
    return gone


@pytest.fixture(scope="module")
def client(tmp_path_factory, s3_server):
    """Two worker processes, each in a working directory of its own, with no AWS variables."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        for n, worker in enumerate(sorted(client.scheduler_info()["workers"])):
            client.run(os.chdir, str(tmp_path_factory.mktemp(f"worker{n}")), workers=[worker])
        client.run(forget_aws_environment)
        yield client


@pytest.fixture
def s3(s3_server):
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server.storage_options)
    yield fs
    fs.invalidate_cache()


def clean_output(tmp_path: Path) -> bytes:
    """The GIF of a run on local disk, to compare the object-storage runs with."""
    (tmp_path / "clean.img").write_bytes(DATA)
    result = build_graph(url=str(tmp_path / "clean.img"), data_file=str(tmp_path / "clean.img"),
                         out=str(tmp_path / "clean.gif"),
                         frames_dir=str(tmp_path / "clean")).compute(scheduler="sync")
    return Path(result.path).read_bytes()


def test_every_path_on_s3_on_worker_processes(tmp_path, monkeypatch, client, s3_server, s3_bucket, s3):
    monkeypatch.chdir(tmp_path)
    s3.pipe(f"{s3_bucket}/in/all-images.img", DATA)
    cwds = client.run(os.getcwd)
    assert len(set(cwds.values()) | {os.getcwd()}) == 3  # client and workers all in different folders
    assert all(names == [] for names in client.run(aws_variables).values())
    graph = build_graph(url=f"{s3_bucket}/in/all-images.img", data_file=f"{s3_bucket}/work/image-data.img",
                        out=f"{s3_bucket}/out/clip.gif", frames_dir=f"{s3_bucket}/work/frames", retry_delay=0,
                        storage_options=s3_server.storage_options, frames_per_task=2)
    with get_task_stream(client) as stream:
        result = client.compute(graph).result(timeout=120)
    assert result.ok and len(result.frames) == 11
    assert result.frames[0] == f"{s3_bucket}/work/frames/frame_00.gif"
    s3.invalidate_cache()
    assert s3.cat(f"{s3_bucket}/work/image-data.img") == DATA
    assert s3.cat(f"{s3_bucket}/out/clip.gif") == clean_output(tmp_path)
    assert sorted(f for f in s3.ls(f"{s3_bucket}/work/frames") if "/frame_" in f) == sorted(f.removeprefix("s3://") for f in result.frames)
    assert s3.cat(result.frames[3]) == make_gif(20, 16, seed=3)
    writers = {t["worker"] for t in stream.data if key_split(t["key"]) == "write-frame"}
    assert len(writers) == 2  # both workers wrote frames
    assert {key_split(t["key"]) for t in stream.data} >= {"fetch", "split", "combine"}
    # Nothing landed on any local disk: not in the client's folder, not in the workers' folders.
    assert set(os.listdir(tmp_path)) == {"clean.img", "clean.gif", "clean"}
    assert all(names == [] for names in client.run(os.listdir, ".").values())
    # A second run finds the data file on S3 and skips the fetch.
    again = client.compute(build_graph(url=f"{s3_bucket}/in/all-images.img", data_file=f"{s3_bucket}/work/image-data.img",
                                       out=f"{s3_bucket}/out/clip.gif", frames_dir=f"{s3_bucket}/work/frames",
                                       storage_options=s3_server.storage_options)).result(timeout=120)
    assert again.states["fetch"].state == "Skipped" and again.ok


def test_http_url_to_s3_data_file(tmp_path, client, http_server, s3_server, s3_bucket, s3):
    url = http_server.serve("/all-images.img", DATA)
    # Options nested under "s3" go to the S3 paths only; the HTTP fetch gets none of them.
    options = {"s3": s3_server.storage_options}
    graph = build_graph(url=url, data_file=f"{s3_bucket}/image-data.img", out=f"{s3_bucket}/clip.gif",
                        frames_dir=f"{s3_bucket}/frames", storage_options=options, retry_delay=0)
    result = client.compute(graph).result(timeout=120)
    assert result.ok and result.states["fetch"].state == "Success" and http_server.hits("/all-images.img") == 1
    s3.invalidate_cache()
    assert s3.cat(f"{s3_bucket}/image-data.img") == DATA
    assert s3.cat(f"{s3_bucket}/clip.gif") == clean_output(tmp_path)

