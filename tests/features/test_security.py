"""Security: a URL or a path is data, never a command; frames stay in frames_dir; protocols are configurable."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import dask
import pytest
from hypothesis import given
from hypothesis import strategies as st

import daskgif
from daskgif import build_graph
from daskgif.errors import RunFailed
from daskgif.storage import frame_name, join_path
from frames import image_data, make_gif

DATA = image_data([make_gif(8, 8, seed=i) for i in range(12)])
PACKAGE = Path(daskgif.__file__).parent


# Text that creates the file ``pwned`` in the working directory if any shell ever sees it.
SHELL_WORDS = "a;touch pwned;$(touch pwned)`touch pwned`|touch pwned&touch pwned>x'\"b"


@pytest.fixture
def no_processes(monkeypatch):
    """Make starting any process, with or without a shell, fail loudly in this process."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a process was started: {args!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    for name in ("system", "popen", "execv", "execve", "execvp", "execvpe", "spawnv", "spawnve", "posix_spawn",
                 "posix_spawnp"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse)


def test_no_module_can_start_a_shell():
    calls = {"system", "popen", "Popen", "run", "call", "check_call", "check_output", "getoutput",
             "getstatusoutput", "spawnl", "execl", "execv"}
    for module in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(module.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names} | {node.module for node in ast.walk(tree)
                                                if isinstance(node, ast.ImportFrom)}
        assert not imported & {"subprocess", "pty", "commands"}, module.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
                assert node.attr not in calls, f"{module.name}: os.{node.attr}"
            if isinstance(node, ast.keyword):
                assert node.arg != "shell", f"{module.name}: shell= keyword"


def test_shell_metacharacters_in_url_and_paths_are_data(tmp_path, monkeypatch, http_server, no_processes):
    monkeypatch.chdir(tmp_path)
    route = "/" + SHELL_WORDS
    url = http_server.serve(route, DATA)
    folder = tmp_path / SHELL_WORDS
    result = build_graph(url, data_file=str(folder / "data.img"), out=str(folder / "out.gif"),
                         frames_dir=str(folder / "frames"), retry_delay=0).compute(scheduler="sync")
    assert result.ok and http_server.hits(route) == 1  # the server got the literal path
    assert (folder / "data.img").read_bytes() == DATA and (folder / "out.gif").exists()
    assert len(list((folder / "frames").glob("frame_*.gif"))) == 12
    assert not (tmp_path / "pwned").exists()


def test_shell_metacharacters_from_the_command_line(tmp_path):
    words = SHELL_WORDS
    source = tmp_path / f"{words}.img"
    source.write_bytes(DATA)
    done = subprocess.run([sys.executable, "-m", "daskgif", "run", "--scheduler", "sync", "--url", str(source),
                           "--data-file", f"{words}-data", "--out", f"{words}.gif", "--frames-dir", words],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / f"{words}.gif").exists() and len(list((tmp_path / words).glob("frame_*.gif"))) == 12
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("frames_dir", ["frames", "a/../frames", "frames/", "./frames/./"])
def test_frames_stay_in_frames_dir(tmp_path, frames_dir):
    (tmp_path / "image-data.img").write_bytes(DATA)
    target = tmp_path / frames_dir
    result = build_graph(url=str(tmp_path / "image-data.img"), data_file=str(tmp_path / "image-data.img"),
                         out=str(tmp_path / "clip.gif"),
                         frames_dir=str(target)).compute(scheduler="sync")
    for path in result.frames:
        assert Path(os.path.realpath(path)).parent == Path(os.path.realpath(target))
    assert set(os.listdir(tmp_path)) - {"a"} == {"clip.gif", "frames", "image-data.img"}


@given(index=st.integers(-10**6, 10**7), count=st.integers(-5, 10**7))
def test_frame_names_are_plain_names_or_refused(index, count):
    try:
        name = frame_name(index, count)
    except ValueError:
        assert not 0 <= index < count
        return
    assert 0 <= index < count
    assert name.startswith("frame_") and name.endswith(".gif") and name[6:-4].isdigit() and name[6:-4].isascii()
    assert os.path.basename(name) == name and ".." not in name
    assert join_path("s3://bucket/frames", name) == f"s3://bucket/frames/{name}"


def test_a_symlinked_frame_is_replaced_not_followed(tmp_path):
    (tmp_path / "image-data.img").write_bytes(DATA)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me")
    (tmp_path / "frames").mkdir()
    os.symlink(outside, tmp_path / "frames" / "frame_03.gif")
    result = build_graph(url=str(tmp_path / "image-data.img"), data_file=str(tmp_path / "image-data.img"),
                         out=str(tmp_path / "clip.gif"),
                         frames_dir=str(tmp_path / "frames")).compute(scheduler="sync")
    assert result.ok and outside.read_bytes() == b"keep me"
    assert not os.path.islink(tmp_path / "frames" / "frame_03.gif")
    assert (tmp_path / "frames" / "frame_03.gif").read_bytes() == make_gif(8, 8, seed=3)


# --- allowed protocols ----------------------------------------------------------------------------


def test_default_protocols_allow_the_common_ones_and_refuse_others(tmp_path, http_server):
    (tmp_path / "source.img").write_bytes(DATA)
    allowed = dask.config.get("daskgif.allowed-protocols")
    assert {"file", "http", "https", "s3", "gs", "memory"} <= set(allowed)
    for url in (str(tmp_path / "source.img"), (tmp_path / "source.img").as_uri(), http_server.serve("/d", DATA)):
        out = tmp_path / f"{len(os.listdir(tmp_path))}.gif"
        assert build_graph(url, data_file=str(out) + ".img", out=str(out), frames_dir=str(tmp_path / "f"),
                           force=True).compute(scheduler="sync").ok
    with pytest.raises(RunFailed, match=r"failed after 1 attempt: FetchError: cannot fetch github://o:\*\*\*@m/x.img: "
                                        r"protocol 'github' is not allowed \(daskgif.allowed-protocols: .*file"):
        build_graph("github://o:r@m/x.img", data_file=str(tmp_path / "g.img"), out=str(tmp_path / "g.gif"),
                    frames_dir=str(tmp_path / "g")).compute(scheduler="sync")
    assert not (tmp_path / "g.img").exists()


def test_allowed_protocols_from_dask_config(tmp_path, http_server):
    (tmp_path / "source.img").write_bytes(DATA)
    url = http_server.serve("/data.img", DATA)
    kwargs = {"data_file": str(tmp_path / "d.img"), "out": str(tmp_path / "o.gif"), "frames_dir": str(tmp_path / "f"),
              "retry_delay": 0}
    with dask.config.set({"daskgif.allowed-protocols": ["HTTP"]}):
        graph = build_graph(str(tmp_path / "source.img"), **kwargs)
        chained = build_graph(f"simplecache::{url}", **kwargs)
        allowed = build_graph(url, **kwargs)
    # The setting is read when the graph is built, not when it runs.
    with pytest.raises(RunFailed, match=r"protocol 'file' is not allowed \(daskgif.allowed-protocols: http\)"):
        graph.compute(scheduler="sync")
    with pytest.raises(RunFailed, match=r"protocol 'simplecache' is not allowed"):
        chained.compute(scheduler="sync")
    assert http_server.hits("/data.img") == 0 and not (tmp_path / "d.img").exists()
    assert allowed.compute(scheduler="sync").ok and http_server.hits("/data.img") == 1


def test_allowed_protocols_from_the_environment(tmp_path):
    source = tmp_path / "source.img"
    source.write_bytes(DATA)
    env = {**os.environ, "DASK_DASKGIF__ALLOWED_PROTOCOLS": '["https", "s3"]'}
    done = subprocess.run([sys.executable, "-m", "daskgif", "run", "--scheduler", "sync", "--url", str(source)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert (f"cannot fetch {source}: protocol 'file' is not allowed (daskgif.allowed-protocols: https, s3)"
            in done.stderr)
    assert sorted(os.listdir(tmp_path)) == ["source.img"]


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_a_failed_run_shows_a_short_masked_error(tmp_path, http_server, scheduler):
    import traceback

    url = http_server.url("/missing.img").replace("http://", "http://user:s3cret@")
    with dask.config.set(scheduler=scheduler), pytest.raises(RunFailed) as info:
        build_graph(url=url, data_file=str(tmp_path / "d.img"), out=str(tmp_path / "c.gif"), retries=0).compute()
    shown = "".join(traceback.format_exception(info.value))
    assert "s3cret" not in shown and "user:***@" in shown  # every exception shown or chained is masked
    assert shown.count("Traceback (most recent call last)") == 1, shown  # one traceback: RunFailed's own
    assert "site-packages/fsspec" not in shown and "site-packages/aiohttp" not in shown, shown
    cause = info.value.__cause__
    assert cause is not None and "404" in str(cause) and cause.__traceback__ is None
    assert str(info.value).startswith("task 'fetch' failed after 1 attempt: ")


def test_usage_errors_and_history_mask_credentials(tmp_path):
    clash = subprocess.run([sys.executable, "-m", "daskgif", "run", "--scheduler", "sync",
                            "--url", "s3://KEY:SECRET@bucket/x.img", "--data-file", "s3://KEY:SECRET@bucket/x.gif",
                            "--out", "s3://KEY:SECRET@bucket/x.gif"], cwd=tmp_path, capture_output=True, text=True)
    assert clash.returncode == 2 and "same file" in clash.stderr and "SECRET" not in clash.stderr, clash.stderr
    history = subprocess.run([sys.executable, "-m", "daskgif", "history", "http://user:SECRET@127.0.0.1:9/h.jsonl"],
                             cwd=tmp_path, capture_output=True, text=True)
    assert history.returncode != 0 and "SECRET" not in history.stderr + history.stdout, history.stderr
