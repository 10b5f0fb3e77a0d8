from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import dask
import pytest
from dask.utils import key_split

import daskgif  # noqa: F401  (before distributed, which snapshots dask.config)
from daskgif.core.fanout import Mapped
from daskgif.core.retry import RetryPolicy, retry
from daskgif.core.state import RunReport
from daskgif.core.state import FAILED, RETRYING, RUNNING, SKIPPED, SUCCESS, State, first_failure
from daskgif.core.task import Outcome, Skip, Task, task
from daskgif.errors import FetchError, RunFailed, is_transient

import distributed

ROOT = Path(__file__).resolve().parents[2]


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


def map_items(inner, items, folder, batch_size="auto", token="test"):
    return inner.map(items, batch_size=batch_size, token=token, folder=folder)


@task(name="decorated-add", retries=1)
def decorated_add(x, y=0):
    return x + y


def test_success():
    outcome = Task(add, name="add-numbers").run(1, y=2)
    assert outcome.value == 3 and outcome.states == {"add-numbers": outcome.state}
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
    down = Task(always_down, name="fetch", retries=2, retry_delay=0.05, backoff=2, jitter=0)
    start = time.monotonic()
    with pytest.raises(RunFailed) as info:
        down.run()
    assert time.monotonic() - start >= 0.05 + 0.1
    assert str(info.value) == "task 'fetch' failed after 3 attempts: ConnectionError: down"
    assert isinstance(info.value.__cause__, ConnectionError)
    state = info.value.result.states["fetch"]
    assert (state.state, state.attempts, state.message) == (FAILED, 3, "ConnectionError: down")
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in retries] == [
        "Retrying fetch after ConnectionError: down (attempt 1/3)",
        "Retrying fetch after ConnectionError: down (attempt 2/3)",
    ]
    assert "Task 'fetch': Failed (ConnectionError: down)" in caplog.messages


def test_retry_then_success(tmp_path):
    outcome = Task(flaky, name="flaky", retries=3)(str(tmp_path), fails=2).compute(scheduler="sync")
    assert (outcome.value, outcome.state.state, outcome.state.attempts) == ("ok", SUCCESS, 3)


def test_permanent_errors_fail_at_once(tmp_path):
    with pytest.raises(RunFailed, match="after 1 attempt"):
        Task(flaky, retries=3, retry_if=lambda e: False).run(str(tmp_path))
    with pytest.raises(RunFailed, match=r"task 'parse' failed after 1 attempt: ValueError: invalid literal"):
        Task(int, name="parse", retries=3, retry_delay=10).run("x")
    for error in (OSError(30, "Read-only file system"), EOFError("short"), MemoryError()):
        def raise_it(error=error):
            raise error
        with pytest.raises(RunFailed, match="after 1 attempt"):
            Task(raise_it, name="write", retries=5, retry_delay=10).run()


def test_a_failed_task_is_erred_and_its_dependents_do_not_run(tmp_path):
    broken = Task(always_down, name="broken")()
    after = Task(count_call, name="after")(str(tmp_path), broken)
    with pytest.raises(RunFailed, match="task 'broken' failed after 1 attempt: ConnectionError: down") as info:
        after.compute(scheduler="threads")
    assert info.value.result.counts() == {"broken": {"Failed": 1}}
    assert not list(tmp_path.iterdir())


def test_failure_keeps_the_states_upstream():
    one = Task(add, name="one")(1)
    two = Task(always_down, name="two", skip_on_upstream_skip=False)
    with pytest.raises(RunFailed) as info:
        Task(lambda x: two.run(), name="three")(one).compute(scheduler="sync")
    assert info.value.result.counts() == {"one": {"Success": 1}, "two": {"Failed": 1}, "three": {"Failed": 1}}
    assert str(info.value).startswith("task 'two' failed")  # the root cause, not its consequence
    assert first_failure(list(info.value.result.states.values())).name == "two"


def test_interrupts_are_not_caught():
    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Task(interrupt, retries=2).run()


def test_state_hooks(tmp_path, caplog):
    seen = []

    def broken_hook(state):
        raise RuntimeError("hook bug")

    outcome = Task(flaky, name="flaky", retries=1, jitter=0, on_state=[seen.append, broken_hook]).run(str(tmp_path))
    assert outcome.state.state == SUCCESS
    assert [(s.state, s.attempts) for s in seen] == [(RUNNING, 1), (RETRYING, 1), (RUNNING, 2), (SUCCESS, 2)]
    assert seen[1].message == "ConnectionError: try again"
    assert sum("State hook" in m for m in caplog.messages) == 4
    seen.clear()
    Task(add, name="after-skip", on_state=[seen.append]).run(Outcome(1, State("cache", SKIPPED)), 1)
    assert [s.state for s in seen] == [SKIPPED]


def test_states_are_logged_at_debug_where_tasks_run(caplog):
    caplog.set_level(logging.DEBUG, logger="daskgif")
    Task(cached, name="fetch").run("x")
    Task(add, name="write-frame").run(1, index=4)
    found = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.DEBUG, "Task 'fetch': Skipped (data file exists)") in found
    assert (logging.DEBUG, "Task 'write-frame'[4]: Success") in found


def test_the_retry_policy_is_taken_from_the_task():
    policy = Task(add, retries=3, retry_delay=2, backoff=10, max_delay=15, jitter=0).policy
    assert [policy.delay(a) for a in (1, 2, 3)] == [2.0, 15.0, 15.0]
    assert is_transient(TimeoutError()) and not is_transient(RuntimeError())
    assert is_transient(FetchError("u", "HTTP 503", transient=True)) and not is_transient(FetchError("u", "404"))
    for bad in [dict(retries=-1), dict(retries=1.5), dict(retry_delay=-1), dict(backoff=0), dict(jitter=2)]:
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
    skip = loads(dumps(Skip("cached", result=[1])))
    assert (skip.message, skip.result, str(skip)) == ("cached", [1], "cached")
    assert loads(dumps(state)) == state
    assert loads(dumps(RetryPolicy(2, 0.5, 2))) == RetryPolicy(2, 0.5, 2)
    with pytest.raises(RunFailed) as info:
        Task(always_down, name="fetch").run()
    error = loads(dumps(info.value))
    assert (str(error), error.result.counts()) == (str(info.value), {"fetch": {"Failed": 1}})
    outcome = Task(add, name="add").run(1)
    assert loads(dumps(outcome)) == outcome
    task_copy = loads(dumps(Task(add, name="add-numbers", retries=2, on_state=[repr])))
    assert (task_copy.name, task_copy.policy.retries, task_copy.run(1, 2).value) == ("add-numbers", 2, 3)
    assert loads(dumps(decorated_add)) is decorated_add
    with pytest.raises(RunFailed, match="Unpicklable: 1") as info:
        Task(raise_unpicklable, name="odd").run()
    assert isinstance(loads(dumps(info.value)), RunFailed)
    record = RunReport.failed({"fetch": state}, now=3.0)
    error = loads(dumps(RunFailed("task 'fetch' failed", record, [1, 2])))
    assert (error.result, error.values, error.args[1:]) == (record, [1, 2], (record, [1, 2]))


def test_retry_is_the_one_loop(caplog):
    calls = []

    def flaky_once():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("down")
        return len(calls)

    waits = []
    assert retry(flaky_once, RetryPolicy(2, 5, jitter=0), operation="ping", sleep=waits.append) == 2
    assert waits == [5.0] and "Retrying ping after ConnectionError: down (attempt 1/3)" in caplog.messages
    with pytest.raises(ValueError):  # not transient: raised at once, untouched
        retry(lambda: int("x"), RetryPolicy(3), sleep=waits.append)
    assert waits == [5.0]


def item_thread(i, source):
    return threading.get_ident()


def launch(inner, items):
    """Return this task's thread and those of the items it launches."""
    return threading.get_ident(), inner.map(items, batch_size=1, source=None).values


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_launched_batches_run_on_the_scheduler_of_the_caller(scheduler):
    graph = Task(launch, name="launch")(Task(item_thread, name="item-thread"), range(6))
    caller, threads = dask.compute(graph, scheduler=scheduler)[0].value
    if scheduler == "sync":  # one after another in the calling thread: pdb works
        assert caller == threading.get_ident() and set(threads) == {caller}
    else:  # the threaded scheduler's pool threads, not the caller's
        assert caller != threading.get_ident() and caller not in threads
        assert all(t != threading.get_ident() for t in threads)
    with dask.config.set(scheduler="sync"):  # set explicitly, the configured scheduler wins
        caller, threads = dask.compute(graph, scheduler="threads")[0].value
    assert set(threads) == {caller}


class Gather:
    """A BatchHook: gathers final item states, hears batch ends."""

    def __init__(self):
        self.states, self.ends = [], []

    def __call__(self, state):
        self.states.append(state.state)

    def end_batch(self, name, reused):
        self.ends.append((name, reused))


class Reader:
    def __init__(self):
        self.released = 0

    def release(self):
        self.released += 1


def test_batch_hooks_and_releasable_arguments():
    plain, gathered, reader = [], Gather(), Reader()
    inner = Task(item_thread, name="item", on_state=[lambda s: plain.append(s.state), gathered])
    mapped = inner.map([1, 2, 3], batch_size=2, reuse=lambda i, item: "kept" if i == 1 else None, source=reader)
    assert mapped.values[1] == "kept" and mapped.states.counts == {SUCCESS: 3} and mapped.states.reused == 1
    assert plain == [RUNNING, SUCCESS, RUNNING, SUCCESS] and gathered.states == [SUCCESS, SUCCESS]
    assert sorted(gathered.ends) == [("item", 0), ("item", 1)] and reader.released == 2


def test_a_failed_map_keeps_the_values_that_succeeded(tmp_path):
    inner = Task(flaky_item, name="flaky-item", retries=1, retry_delay=0)
    with pytest.raises(RunFailed, match=r"\(frame 5\)") as info:
        inner.map(range(7), batch_size=3, folder=str(tmp_path))
    assert sorted(info.value.values) == [0, 10, 20, 30, 40, 60]
    assert info.value.result.counts() == {"flaky-item": {"Success": 6, "Failed": 1}}


@pytest.mark.parametrize("scheduler", ["sync", "threads", "processes"])
def test_map_on_local_schedulers(scheduler, tmp_path):
    check_map(Task(map_items, name="map-items"), tmp_path, scheduler=scheduler)


def check_map(outer, tmp_path, **compute_kwargs):
    inner = Task(flaky_item, name="flaky-item", retries=2, retry_delay=0.01)
    with pytest.raises(RunFailed, match=r"task 'flaky-item' \(frame 5\) failed after 1 attempt: ValueError") as info:
        dask.compute(outer(inner, range(8), str(tmp_path), batch_size=3), **compute_kwargs)
    states = info.value.result.states["flaky-item"]
    assert states.counts == {"Failed": 1, "Success": 7}  # every batch ran: the failure keeps every item's state
    assert [(i, s.state, s.attempts) for i, s in states.items()] == [(3, SUCCESS, 2), (5, FAILED, 1)]
    calls = {i: len((tmp_path / f"calls-{i}").read_text().splitlines()) for i in range(8)}
    assert calls == {i: 2 if i == 3 else 1 for i in range(8)}  # item 3 retried alone
    ok = dask.compute(outer(inner, [0, 1, 2, 4, 6], str(tmp_path), batch_size=2, token="ok"), **compute_kwargs)[0]
    assert isinstance(ok.value, Mapped) and ok.value.values == [0, 10, 20, 40, 60]
    assert ok.states["flaky-item"].counts == {"Success": 5} and ok.states["map-items"].state == SUCCESS


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") \
            as cluster, distributed.Client(cluster) as client:
        yield client


def test_map_on_distributed(client, tmp_path):
    with distributed.get_task_stream(client) as stream:
        check_map(Task(map_items, name="map-items"), tmp_path)
    keys = {str(t["key"]) for t in stream.data}
    assert {"flaky-item-0-2-test", "flaky-item-3-5-test", "flaky-item-6-7-test"} <= keys  # the items each holds
    assert {str(t["key"]) for t in stream.data if t.get("status") == "error"} >= {"flaky-item-3-5-test"}
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
    assert "extract-station: 1 Skipped, 2 Success" in lines
    assert "extract-station[0] lima: Success after 2 attempts" in lines
    assert "extract-station[2] pune: Skipped (cached)" in lines
    assert "clean-readings: 3 Success" in lines
    assert not any(line.startswith(("extract-station[1]", "clean-readings[")) for line in lines)  # plain successes
    assert "all stations: mean temperature 16.3 C" in lines
    assert "Retrying extract-station[0] after ConnectionError" in proc.stderr
