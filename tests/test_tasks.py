from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import dask
import pytest
from dask.utils import key_split

import daskgif  # noqa: F401  (before distributed, which snapshots dask.config)
from daskgif.errors import FetchError
from daskgif.tasks import (FAILED, RETRYING, RUNNING, SKIPPED, SUCCESS, Outcome, RetryPolicy, Skip, State,
                           Task, first_failure, is_transient, task)

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]


# Module-level functions: they travel to worker processes by reference.

def add(x, y=0):
    return x + y


def cached(value):
    raise Skip("data file exists", result=value)


def always_down():
    raise ConnectionError("down")


def count_call(folder, name):
    """Append a line to *folder*/*name* and return how many calls that makes."""
    with open(os.path.join(folder, name), "a") as f:
        f.write("x\n")
    return len(Path(folder, name).read_text().splitlines())


def flaky(folder, fails=1):
    if count_call(folder, "flaky") <= fails:
        raise ConnectionError("try again")
    return "ok"


def flaky_item(i, folder):
    """Item 3 fails once (retried alone); item 5 always fails with a permanent error."""
    calls = count_call(folder, f"calls-{i}")
    if i == 3 and calls == 1:
        raise ConnectionError(f"item {i} dropped")
    if i == 5:
        raise ValueError(f"item {i} is bad")
    return i * 10


def map_items(inner, items, folder, batch_size="auto"):
    return inner.map(items, batch_size=batch_size, token="test", folder=folder)


@task(name="decorated-add", retries=1)
def decorated_add(x, y=0):
    return x + y


def test_success():
    outcome = Task(add, name="add-numbers").run(1, y=2)
    assert outcome.value == 3 and outcome.error is None
    state = outcome.state
    assert (state.name, state.state, state.attempts, state.index, state.ok) == ("add-numbers", SUCCESS, 1, None, True)
    assert state.start <= state.end and state.duration >= 0
    assert state.to_dict()["state"] == "Success"


def test_lazy_keys_are_unique_and_named():
    add_task = Task(add, name="add-numbers")
    a, b = add_task(1, 2), add_task(1, 2)
    assert a.key != b.key
    assert key_split(a.key) == key_split(b.key) == "add-numbers"
    assert add_task(1, dask_key_name="add-numbers-mine").key == "add-numbers-mine"
    assert Task(add).name == "add"
    c = add_task(a, y=a)  # upstream Outcomes are replaced by their values
    assert dask.compute(c, scheduler="sync")[0].value == 6


@pytest.mark.parametrize("name", ["my-task2", "", "abc-deadbeef"])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match="name must be"):
        Task(add, name=name)


def test_skip_result_reaches_downstream():
    skipped = Task(cached, name="cache")(5)
    runs = Task(add, name="uses-cache", skip_on_upstream_skip=False)(skipped, 1)
    follows = Task(add, name="follows-skip")(skipped, 1)
    skip, run, follow = dask.compute(skipped, runs, follows, scheduler="threads")
    assert (skip.value, skip.state.state, skip.state.attempts) == (5, SKIPPED, 1)
    assert skip.state.message == "data file exists"
    assert (run.value, run.state.state) == (6, SUCCESS)
    assert (follow.value, follow.state.state, follow.state.attempts) == (None, SKIPPED, 0)
    assert follow.state.message == "upstream task 'cache' skipped"


def test_failure_after_retries_honours_delay(caplog):
    caplog.set_level(logging.DEBUG, logger="daskgif")
    down = Task(always_down, name="fetch", retries=2, retry_delay=0.05, backoff=2)
    start = time.monotonic()
    outcome = down.run()
    assert time.monotonic() - start >= 0.05 + 0.1
    state = outcome.state
    assert (state.state, state.attempts, state.message) == (FAILED, 3, "ConnectionError: down")
    assert isinstance(outcome.error, ConnectionError) and outcome.value is None
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in retries] == [
        "Retrying fetch after ConnectionError('down') (attempt 1/3)",
        "Retrying fetch after ConnectionError('down') (attempt 2/3)",
    ]
    assert "Task 'fetch': Failed (ConnectionError: down)" in caplog.messages


def test_retry_then_success(tmp_path):
    outcome = Task(flaky, name="flaky", retries=3)(str(tmp_path), fails=2).compute(scheduler="sync")
    assert (outcome.value, outcome.state.state, outcome.state.attempts) == ("ok", SUCCESS, 3)


def test_no_retry_when_retry_if_false(tmp_path):
    assert Task(flaky, retries=3, retry_if=lambda e: False).run(str(tmp_path)).state.attempts == 1
    bad = Task(int, name="parse", retries=3, retry_delay=10).run("x")  # ValueError: permanent
    assert (bad.state.state, bad.state.attempts) == (FAILED, 1)
    assert bad.state.message.startswith("ValueError: invalid literal")


def test_upstream_failure_propagates_without_running(tmp_path):
    broken = Task(always_down, name="broken")()
    after = Task(count_call, name="after")(str(tmp_path), broken)
    final = Task(add, name="final", skip_on_upstream_skip=False)(after, 1)
    states = [o.state for o in dask.compute(broken, after, final, scheduler="threads")]
    assert [(s.state, s.attempts) for s in states] == [(FAILED, 1), (FAILED, 0), (FAILED, 0)]
    assert states[1].message == "upstream task 'broken' failed"
    assert states[2].message == "upstream task 'after' failed"
    assert first_failure(states[::-1]) is states[0]
    assert first_failure([states[2]]) is states[2] and first_failure([]) is None
    assert not list(tmp_path.iterdir())


def test_interrupts_are_not_caught():
    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Task(interrupt, retries=2).run()


def test_state_hooks(tmp_path, caplog):
    seen = []

    def broken_hook(state):
        raise RuntimeError("hook bug")

    outcome = Task(flaky, name="flaky", retries=1, on_state=[seen.append, broken_hook]).run(str(tmp_path))
    assert outcome.state.state == SUCCESS
    assert [(s.state, s.attempts) for s in seen] == [(RUNNING, 1), (RETRYING, 1), (RUNNING, 2), (SUCCESS, 2)]
    assert seen[1].message == "ConnectionError: try again"
    assert sum("State hook" in m for m in caplog.messages) == 4
    seen.clear()
    Task(add, name="after-skip", on_state=[seen.append]).run(Outcome(1, State("cache", SKIPPED)), 1)
    assert [s.state for s in seen] == [SKIPPED]


def test_final_states_are_logged(caplog):
    caplog.set_level(logging.INFO, logger="daskgif")
    Task(cached, name="fetch").run("x")
    assert "Task 'fetch': Skipped (data file exists)" in caplog.messages
    Task(add, name="write-frame").run(1, index=4)
    assert "Task 'write-frame'[4]: Success" in caplog.messages


def test_is_transient():
    assert is_transient(TimeoutError()) and is_transient(RuntimeError())
    assert not is_transient(TypeError()) and not is_transient(FileNotFoundError())
    assert is_transient(FetchError("u", "HTTP 503", transient=True))
    assert not is_transient(FetchError("u", "HTTP 404"))


def test_retry_policy():
    assert RetryPolicy(2, 1.5).delay(2) == 1.5
    for bad in [dict(retries=-1), dict(retries=1.5), dict(retry_delay=-1), dict(backoff=0)]:
        with pytest.raises(ValueError, match="must be"):
            RetryPolicy(**bad)


class Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(a)


def raise_unpicklable():
    raise Unpicklable(1, 2)


@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)])
def test_pickle_round_trip(dumps, loads):
    state = State("write-frame", FAILED, 3, 1.0, 2.0, "FetchError: x", index=4)
    outcome = Task(always_down, name="fetch").run()
    skip = loads(dumps(Skip("cached", result=[1])))
    assert (skip.message, skip.result, str(skip)) == ("cached", [1], "cached")
    assert loads(dumps(state)) == state
    assert loads(dumps(RetryPolicy(2, 0.5, 2))) == RetryPolicy(2, 0.5, 2)
    error = loads(dumps(Outcome(None, state, FetchError("http://x", "HTTP 503", True)))).error
    assert (type(error), error.url, error.transient) == (FetchError, "http://x", True)
    assert loads(dumps(outcome)).state == outcome.state
    task_copy = loads(dumps(Task(add, name="add-numbers", retries=2, on_state=[repr])))
    assert (task_copy.name, task_copy.policy.retries, task_copy.run(1, 2).value) == ("add-numbers", 2, 3)
    assert loads(dumps(decorated_add)) is decorated_add
    assert str(loads(dumps(Task(raise_unpicklable, name="odd").run())).error) == "Unpicklable: 1"


@pytest.mark.parametrize("scheduler", ["sync", "threads", "processes"])
def test_map_on_local_schedulers(scheduler, tmp_path):
    check_map(Task(map_items, name="map-items"), tmp_path, scheduler=scheduler)


def check_map(outer, tmp_path, **compute_kwargs):
    inner = Task(flaky_item, name="flaky-item", retries=2, retry_delay=0.01)
    mapped = outer(inner, range(8), str(tmp_path), batch_size=3)
    outcome = dask.compute(mapped, **compute_kwargs)[0]
    assert outcome.state.state == SUCCESS
    states = [o.state for o in outcome.value]
    assert [s.index for s in states] == list(range(8))
    assert [o.value for o in outcome.value] == [0, 10, 20, 30, 40, None, 60, 70]
    assert [(s.state, s.attempts) for s in states if s.index in (3, 5)] == [(SUCCESS, 2), (FAILED, 1)]
    assert all(s.attempts == 1 for s in states if s.index != 3)
    assert states[5].message == "ValueError: item 5 is bad"
    calls = {i: len((tmp_path / f"calls-{i}").read_text().splitlines()) for i in range(8)}
    assert calls == {i: 2 if i == 3 else 1 for i in range(8)}


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") \
            as cluster, distributed.Client(cluster) as client:
        yield client


def test_map_on_distributed(client, tmp_path):
    with distributed.get_task_stream(client) as stream:
        check_map(Task(map_items, name="map-items"), tmp_path)
    keys = {str(t["key"]) for t in stream.data}
    assert {"flaky-item-0-test", "flaky-item-3-test", "flaky-item-6-test"} <= keys
    assert {key_split(k) for k in keys} == {"map-items", "flaky-item"}
    prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert {"map-items", "flaky-item"} <= set(prefixes)


def record_time(folder):
    Path(folder, "other").write_text(repr(time.time()))
    return "done"


def test_retry_delay_does_not_hold_the_worker_thread(tmp_path):
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") \
            as cluster, distributed.Client(cluster) as client:
        retrying = client.compute(Task(flaky, name="flaky", retries=1, retry_delay=1)(str(tmp_path)))
        while not (tmp_path / "flaky").exists():
            time.sleep(0.01)
        other = client.compute(dask.delayed(record_time)(str(tmp_path)))
        assert other.result(timeout=30) == "done"
        outcome = retrying.result(timeout=30)
    assert (outcome.state.state, outcome.state.attempts) == (SUCCESS, 2)
    assert float((tmp_path / "other").read_text()) < outcome.state.end - 0.5


def test_example_runs():
    script = ROOT / "examples" / "etl_weather.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "extract-station[0] lima: Success after 2 attempts" in lines
    assert "extract-station[1] oslo: Success" in lines
    assert "extract-station[2] pune: Skipped (cached)" in lines
    assert "clean-readings[2] pune: Success" in lines
    assert "all stations: mean temperature 16.3 C" in lines
    assert "Retrying extract-station after ConnectionError" in proc.stderr
