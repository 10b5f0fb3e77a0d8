"""Where code runs: a script that computes with the ``processes`` scheduler, as a user writes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """\
import daskgif

graph = daskgif.build_graph(data_file="d.img", out="c.gif", frames_dir="frames")
{compute}
"""


def run_script(folder: Path, compute: str) -> subprocess.CompletedProcess:
    script = folder / "nightly.py"
    script.write_text(SCRIPT.format(compute=compute))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True, env=env,
                          timeout=240)


@pytest.mark.parametrize("how", ["graph.compute(scheduler='processes')",
                                 "__import__('dask').compute(graph, scheduler='processes')"])
def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path, how):
    done = run_script(tmp_path, f"result = {how}\nprint('ok')")
    assert done.returncode != 0 and "ok" not in done.stdout
    # Every spawned child re-imports the script and is stopped at its line 4, with the remedy.
    assert (f"{tmp_path / 'nightly.py'}, line 4, computes while a child process re-imports it to start"
            in done.stderr), done.stderr
    assert """Put the code that computes under 'if __name__ == "__main__":' in the script""" in done.stderr
    assert "LockHeld" not in done.stderr and not (tmp_path / "c.gif").exists()


def test_the_same_script_with_the_guard_runs(tmp_path):
    # Building at the top level is fine: the children build a graph (no I/O) but compute nothing.
    done = run_script(tmp_path, "if __name__ == '__main__':\n    print(graph.compute(scheduler='processes').ok)")
    assert done.returncode == 0 and done.stdout == "True\n", done.stderr
    assert (tmp_path / "c.gif").exists()
