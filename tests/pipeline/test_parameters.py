"""Parameter files: load_params, check_params, and ``daskgif run --params`` / ``daskgif graph --params``."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from daskgif import build_graph
from daskgif.pipeline.parameters import ALLOWED, SCHEDULE, check_params, load_params


def daskgif(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daskgif", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_a_file_may_give_every_build_graph_parameter():
    names = set(inspect.signature(build_graph).parameters) - {"on_state"}
    assert set(ALLOWED) == names | {"every", "cron", "cron_tz", "max_runs", "notify", "history"}
    assert [p.name for p in SCHEDULE] == ["every", "cron", "cron_tz", "max_runs", "notify", "history"]


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
    ("duration", 700000, "duration must be a non-negative integer up to 655350, got 700000"),
    ("loop", "2", "loop must be a non-negative integer up to 65535, got '2'"),
    ("retries", True, "retries must be a non-negative integer, got True"),
    ("retry_delay", -1, "retry_delay must be a non-negative number of seconds, got -1"),
    ("force", "yes please", "force must be true or false"),
    ("storage_options", "anon", "storage_options must be a mapping of fsspec options"),
    ("delimiter", "", "delimiter must be non-empty bytes"),
    ("on_error", "ignore", "on_error must be 'raise' or 'skip', got 'ignore'"),
    ("frames_per_task", 0, "frames_per_task must be 'auto' or a positive integer, got 0"),
    ("every", "30 minutes", "every must be a positive duration such as '24h'"),
    ("cron", "at two", "cron must be a cron expression"),
    ("cron_tz", "Mars/Olympus", "cron_tz must be an IANA time zone"),
    ("max_runs", 0, "max_runs must be a positive integer, got 0"),
    ("notify", "file:///etc/passwd", "notify must be an http:// or https:// URL"),
    ("out", 3, "out must be a non-empty string, got 3"),
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
    assert done.returncode == 2 and "Error: run.yaml: every must be a positive duration such as '24h'" in done.stderr
    (tmp_path / "run.yaml").write_text("every: 1h\ncron: 0 2 * * *\n")
    done = daskgif("run", "--params", "run.yaml", "--scheduler", "sync", cwd=tmp_path)
    assert done.returncode == 2 and "--every and --cron are mutually exclusive" in done.stderr


def test_a_missing_file_is_a_usage_error(tmp_path):
    done = daskgif("run", "--params", "missing.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "Invalid value for '--params': no such file: missing.yaml" in done.stderr


#: A "billion laughs": nine levels of nine aliases, 387 million strings from 300 bytes.
LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else 'lol'}]\n" for i in range(9))


def fifo(path: Path) -> str:
    os.mkfifo(path)
    return str(path)


def sparse(path: Path) -> str:
    with open(path, "wb") as f:
        f.truncate(100 * 2**20)  # 100 MB of zeros, without writing them
    return str(path)


@pytest.mark.parametrize("make, message", [
    (lambda tmp: fifo(tmp / "run.yaml"), "cannot read {}: is a fifo, not a parameter file"),
    (lambda tmp: "/dev/zero", "cannot read {}: is a character device, not a parameter file"),
    (lambda tmp: sparse(tmp / "run.yaml"), "cannot read {}: is larger than 1048576 bytes, not a parameter file"),
    (lambda tmp: (tmp / "run.yaml").write_text(LAUGHS + "url: *l8\n") and str(tmp / "run.yaml"),
     "{}: uses the alias *l0 (line 2): a parameter file may not repeat a value by alias"),
    (lambda tmp: (tmp / "run.yaml").write_text("storage_options:\n" + "".join(
        "  " + line for line in LAUGHS.splitlines(True))) and str(tmp / "run.yaml"),
     "{}: uses the alias *l0 (line 3): a parameter file may not repeat a value by alias"),
    (lambda tmp: (tmp / "run.json").write_text("[" * 100_000) and str(tmp / "run.json"),
     "{}: nests its values too deeply"),
])
def test_a_params_file_that_is_no_small_plain_file_fails_fast(tmp_path, make, message):
    path = make(tmp_path)
    done = daskgif("run", "--params", path, "--scheduler", "sync", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.splitlines()[-1].endswith(message.format(path))


def test_load_params_refuses_aliases_but_reads_anchors_alone(tmp_path):
    (tmp_path / "run.yaml").write_text("duration: &d 40\n")
    assert load_params(str(tmp_path / "run.yaml")) == {"duration": 40}
    (tmp_path / "run.yaml").write_text("base: &b {loop: 2}\n<<: *b\n")
    with pytest.raises(ValueError, match=r"run.yaml: uses the alias \*b \(line 2\)"):
        load_params(str(tmp_path / "run.yaml"))


def test_load_params_follows_a_link_to_a_regular_file_only(tmp_path):
    (tmp_path / "real.yaml").write_text("loop: 2\n")
    (tmp_path / "run.yaml").symlink_to(tmp_path / "real.yaml")
    assert load_params(str(tmp_path / "run.yaml")) == {"loop": 2}
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    with pytest.raises(OSError, match="is a character device, not a parameter file"):
        load_params(str(tmp_path / "zero.yaml"))


def test_graph_takes_the_file_too(tmp_path):
    (tmp_path / "run.yaml").write_text("out: movie.gif\nduration: 40\nevery: 24h\n")
    done = daskgif("graph", "--params", "run.yaml", "--loop", "2", "--picture", "plan.dot", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    source = (tmp_path / "plan.dot").read_text()
    assert "movie.gif" in source and "40 ms per frame, play 2 times" in source


# --- one table of parameters: the API, the command line, parameter files and the docs agree -----------------

def cli_names(command) -> dict[str, list[str]]:
    """``{name: option flags}`` of a click command's options."""
    return {p.name: p.opts for p in command.params}


def test_one_table_gives_the_api_the_cli_the_file_and_the_docs_the_same_names():
    from daskgif.cli import graph, run
    from daskgif.pipeline.parameters import PARAMETERS, render

    api = set(inspect.signature(build_graph).parameters) - {"on_state"}  # on_state is code: Python only
    on_run, on_graph = cli_names(run), cli_names(graph)
    cli = (set(on_run) & set(on_graph)) - {"params_file"}  # the options every command that builds a graph takes
    schedule = {"every", "cron", "cron_tz", "max_runs", "notify", "history"}
    file = set(ALLOWED) - schedule
    rows = [line.split("``")[1] for line in render(PARAMETERS).splitlines() if line.startswith("   * - ``")]
    docs = set(rows) - {"on_state"}
    assert api == cli == file == docs, (api ^ cli, api ^ file, api ^ docs)
    assert rows == list(inspect.signature(build_graph).parameters)  # the docs in the signature's order
    assert schedule <= set(on_run) and set(ALLOWED) - file == schedule
    for name in api:
        assert on_run[name] == on_graph[name] == [f"--{name.replace('_', '-')}"], name
    assert ".. daskgif-parameters:: run" in (Path(__file__).parents[2] / "docs" / "parameters.rst").read_text()


def test_the_signature_of_build_graph_is_the_table():
    from daskgif.pipeline.parameters import declared, signature

    found = inspect.signature(build_graph)
    assert str(found.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)
                                         for p in found.parameters.values()], return_annotation=found.empty)) \
        == str(signature())
    assert "duration : int\n        Milliseconds per frame" in build_graph.__doc__

    def other(url=None, data_file="image-data.img", colour="red"):
        """{parameters}"""

    with pytest.raises(TypeError, match="differs from the table of parameters"):
        declared(other)


def test_a_bad_value_reads_the_same_from_the_api_the_command_line_and_a_file(tmp_path):
    from click.testing import CliRunner

    from daskgif.cli import main
    from daskgif.views.pictures import draw_pipeline

    message = "loop must be a non-negative integer up to 65535, got -1"
    with pytest.raises(ValueError, match=f"^{message}$"):
        build_graph(loop=-1)
    with pytest.raises(ValueError, match=f"^{message}$"):
        draw_pipeline(loop=-1)
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_params({"loop": -1})
    for command in ("run", "graph"):
        done = CliRunner().invoke(main, [command, "--loop", "-1"])
        assert done.exit_code == 2
        assert "Invalid value for '--loop': must be a non-negative integer up to 65535, got -1" in done.output
    (tmp_path / "run.yaml").write_text("loop: -1\n")
    done = CliRunner().invoke(main, ["graph", "--params", str(tmp_path / "run.yaml")])
    assert done.exit_code == 2 and f"{tmp_path / 'run.yaml'}: {message}" in done.output


def test_draw_pipeline_takes_build_graphs_parameters():
    from daskgif.views.pictures import draw_pipeline

    with pytest.raises(TypeError, match="colour"):
        draw_pipeline(colour="red")
    source = draw_pipeline("https://example.com/all.img", "/nonexistent/x.img", loop=2, on_error="skip").source
    assert "play 2 times" in source and "example.com/all.img" in source


@pytest.mark.parametrize("key, value, message", [
    ("lock-timeout", -1, "daskgif.lock-timeout must be a positive number of seconds, got -1"),
    ("chunk-size", 0, "daskgif.chunk-size must be a positive integer, got 0"),
    ("retry-jitter", 2, "daskgif.retry-jitter must be a number from 0 to 1, got 2"),
    ("validate", "both", "daskgif.validate must be 'decode' or 'structure', got 'both'"),
    ("resume", "yes", "daskgif.resume must be true or false, got 'yes'"),
    ("on-error", "explode", "daskgif.on-error must be 'raise' or 'skip', got 'explode'"),
    ("frames-per-task", 0, "daskgif.frames-per-task must be 'auto' or a positive integer, got 0"),
])
def test_settings_are_checked_when_the_graph_is_built(key, value, message):
    import dask

    with dask.config.set({f"daskgif.{key}": value}), pytest.raises(ValueError, match=f"^{message}$"):
        build_graph()


def test_every_config_key_of_the_tables_has_a_default_it_accepts():
    import yaml

    from daskgif.pipeline.parameters import PARAMETERS
    from daskgif.pipeline.settings import SETTINGS, read_setting

    defaults = yaml.safe_load((Path(__file__).parents[2] / "daskgif" / "daskgif.yaml").read_text())["daskgif"]
    for p in PARAMETERS:
        if p.config is not None:
            assert p.kind.accepts(defaults[p.config]), p.config
    for setting in SETTINGS:
        section, _, key = setting.rpartition(".")  # dashboard.max-runs: max-runs in the dashboard section
        assert key in (defaults[section] if section else defaults), setting
        read_setting(setting)  # the packaged default passes its own check


def test_config_keys_read_with_dashes_or_underscores():
    import dask

    with dask.config.set({"daskgif.task_timeout": {"write_frame": 5}, "daskgif.limits": {"write": 2}}):
        p = build_graph().params
    assert p.task_timeout["write-frame"] == 5 and p.limits["write"] == 2
    code = "import daskgif; print(daskgif.build_graph().params.task_timeout['write-frame'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DASK_DASKGIF__TASK_TIMEOUT__WRITE_FRAME": "5"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"


def test_params_hold_the_arguments_and_settings_and_pickle():
    import pickle

    p = build_graph(duration=40, frames_per_task=3).params
    assert (p.duration, p.frames_per_task, p.frames_dir, p.lock_timeout) == (40, 3, "frames", 10)
    assert set(p.arguments) == set(ALLOWED) - {"every", "cron", "cron_tz", "max_runs", "notify", "history"}
    copy = pickle.loads(pickle.dumps(p))
    assert copy == p and copy.out == "clip.gif"
    with pytest.raises(AttributeError, match="no attribute 'colour'"):
        p.colour
