"""Parameter files: load_params, check_params, and ``daskgif run --params`` / ``daskgif graph --params``."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from daskgif import build_graph
from daskgif.pipeline.parameters import ALLOWED, GRAPH_KEYS, SCHEDULE_KEYS, check_params, load_params


def daskgif(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daskgif", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_a_file_may_give_every_build_graph_parameter():
    names = set(inspect.signature(build_graph).parameters) - {"on_state"}
    assert set(GRAPH_KEYS) == names
    assert set(SCHEDULE_KEYS) == {"every", "cron", "cron_tz", "max_runs", "notify", "history"}


def test_values_are_checked_and_converted():
    found = check_params({
        "url": "https://example.com/a.img", "data-file": "d.img", "out": "o.gif", "frames_dir": None,
        "delimiter": "\\r\\n\\r\\n", "duration": 40, "loop": 2, "retries": 0, "retry_delay": 0.5, "force": True,
        "storage_options": {"anon": True}, "on_error": "skip", "frames_per_task": "auto", "every": "1h30m",
        "max_runs": 3, "notify": "https://hooks.example.com/x", "history": "runs.jsonl",
    })
    assert found["data_file"] == "d.img" and found["delimiter"] == b"\r\n\r\n" and found["frames_dir"] is None
    assert found["storage_options"] == {"anon": True} and found["every"] == "1h30m"
    assert check_params({"delimiter": b"\x00\x01"}) == {"delimiter": b"\x00\x01"}
    assert check_params({"cron": "0 2 * * *", "cron_tz": "Europe/Oslo"})["cron_tz"] == "Europe/Oslo"
    assert check_params({"duration": None}) == {}  # null: the default


def test_an_unknown_key_is_named_with_the_allowed_ones():
    with pytest.raises(ValueError) as info:
        check_params({"duration": 40, "colour": "red"})
    assert str(info.value) == f"unknown parameter 'colour'; allowed: {', '.join(ALLOWED)}"


@pytest.mark.parametrize("key, value, message", [
    ("duration", 700000, "parameter 'duration' must be an integer from 0 to 655350, got 700000"),
    ("loop", "2", "parameter 'loop' must be an integer from 0 to 65535, got '2'"),
    ("retries", True, "parameter 'retries' must be a non-negative integer, got True"),
    ("retry_delay", -1, "parameter 'retry_delay' must be a non-negative number of seconds, got -1"),
    ("force", "yes please", "parameter 'force' must be true or false"),
    ("storage_options", "anon", "parameter 'storage_options' must be a mapping of fsspec options"),
    ("delimiter", "", "parameter 'delimiter' must be non-empty text"),
    ("on_error", "ignore", "parameter 'on_error' must be one of 'raise', 'skip', got 'ignore'"),
    ("frames_per_task", 0, "parameter 'frames_per_task' must be 'auto' or a positive integer, got 0"),
    ("every", "30 minutes", "parameter 'every' must look like '24h'"),
    ("cron", "at two", "parameter 'cron' must be a cron expression"),
    ("cron_tz", "Mars/Olympus", "parameter 'cron_tz' must be an IANA time zone"),
    ("max_runs", 0, "parameter 'max_runs' must be a positive integer, got 0"),
    ("notify", "file:///etc/passwd", "parameter 'notify' must be http:// or https://"),
    ("out", 3, "parameter 'out' must be a non-empty string, got 3"),
])
def test_a_bad_value_is_named_by_its_key(key, value, message):
    with pytest.raises(ValueError) as info:
        check_params({key: value})
    assert str(info.value).startswith(message)


def test_secrets_in_a_bad_value_are_masked():
    with pytest.raises(ValueError, match=r"ftp://user:\*\*\*@hooks") as info:
        check_params({"notify": "ftp://user:hunter2@hooks.example.com/x"})
    assert "hunter2" not in str(info.value)


def test_load_params_reads_yaml_and_json_by_suffix_or_content(tmp_path):
    (tmp_path / "run.yaml").write_text("# nightly\ndata-file: d.img\ndelimiter: '\\n\\n'\ncron: 0 2 * * *\n")
    assert load_params(str(tmp_path / "run.yaml")) == {"data_file": "d.img", "delimiter": b"\n\n",
                                                      "cron": "0 2 * * *"}
    (tmp_path / "run.json").write_text(json.dumps({"duration": 40, "storage_options": {"anon": True}}))
    assert load_params(str(tmp_path / "run.json")) == {"duration": 40, "storage_options": {"anon": True}}
    (tmp_path / "params").write_text('{"loop": 3}')  # no suffix: JSON is YAML too
    assert load_params(str(tmp_path / "params")) == {"loop": 3}
    (tmp_path / "binary.yaml").write_text("delimiter: !!binary AAEC\n")
    assert load_params(str(tmp_path / "binary.yaml")) == {"delimiter": b"\x00\x01\x02"}


@pytest.mark.parametrize("name, text, message", [
    ("bad.json", "duration: 40", "is not valid JSON"),
    ("bad.yaml", "duration: [40", "is not valid YAML or JSON"),
    ("list.yaml", "- duration: 40", "must hold a mapping of parameter names to values"),
    ("empty.yaml", "", "must hold a mapping of parameter names to values, got None"),
])
def test_load_params_refuses_what_is_not_a_mapping(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=f"^{tmp_path / name}: {message}"):
        load_params(str(tmp_path / name))


def test_load_params_reads_through_fsspec():
    from daskgif import storage

    with storage.atomic_write("memory://daskgif-test-params/run.yaml") as f:
        f.write(b"loop: 1\n")
    assert load_params("memory://daskgif-test-params/run.yaml") == {"loop": 1}
    with pytest.raises(FileNotFoundError):
        load_params("memory://daskgif-test-params/missing.yaml")


def test_run_takes_the_file_and_the_command_line_wins(tmp_path):
    (tmp_path / "run.yaml").write_text(
        "out: movie.gif\nduration: 40\nloop: 3\non_error: skip\nhistory: runs.jsonl\n"
        "storage_options: {}\ndelimiter: '\\n\\n\\n\\n'\n")
    done = daskgif("run", "--params", "run.yaml", "--scheduler", "sync", "--duration", "70", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Wrote movie.gif" in done.stdout and not (tmp_path / "clip.gif").exists()
    with Image.open(tmp_path / "movie.gif") as gif:
        assert gif.info["duration"] == 70 and gif.info["loop"] == 3
    record = json.loads((tmp_path / "runs.jsonl").read_text())
    parameters = record["parameters"]
    assert parameters["out"] == "movie.gif" and parameters["duration"] == 70 and parameters["loop"] == 3
    assert parameters["on_error"] == "skip" and parameters["delimiter"] == "\n\n\n\n"
    assert "storage_options" not in parameters  # credentials never reach the history


def test_run_takes_the_schedule_from_the_file(tmp_path):
    (tmp_path / "nightly.json").write_text(json.dumps({"every": 0.1, "max_runs": 2, "history": "runs.jsonl"}))
    done = daskgif("run", "--params", "nightly.json", "--scheduler", "sync", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["run"] for line in done.stdout.splitlines()] == [1, 2]
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 2


def test_a_bad_key_in_the_file_is_a_usage_error(tmp_path):
    (tmp_path / "run.yaml").write_text("duration: 40\nduraton: 40\n")
    done = daskgif("run", "--params", "run.yaml", "--scheduler", "sync", cwd=tmp_path)
    assert done.returncode == 2
    assert f"Error: run.yaml: unknown parameter 'duraton'; allowed: {', '.join(ALLOWED)}" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


def test_a_bad_value_in_the_file_is_a_usage_error(tmp_path):
    (tmp_path / "run.yaml").write_text("every: 30 minutes\n")
    done = daskgif("run", "--params", "run.yaml", "--scheduler", "sync", cwd=tmp_path)
    assert done.returncode == 2 and "Error: run.yaml: parameter 'every' must look like '24h'" in done.stderr
    (tmp_path / "run.yaml").write_text("every: 1h\ncron: 0 2 * * *\n")
    done = daskgif("run", "--params", "run.yaml", "--scheduler", "sync", cwd=tmp_path)
    assert done.returncode == 2 and "--every and --cron are mutually exclusive" in done.stderr


def test_a_missing_file_is_a_usage_error(tmp_path):
    done = daskgif("run", "--params", "missing.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "Invalid value for '--params': no such file: missing.yaml" in done.stderr


def test_graph_takes_the_file_too(tmp_path):
    (tmp_path / "run.yaml").write_text("out: movie.gif\nduration: 40\nevery: 24h\n")
    done = daskgif("graph", "--params", "run.yaml", "--loop", "2", "--out", "plan.dot", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    source = (tmp_path / "plan.dot").read_text()
    assert "movie.gif" in source and "40 ms per frame, play 2 times" in source
