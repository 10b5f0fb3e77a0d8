"""``daskgif.progress()`` where users look: plain lines in a log, a bar on a terminal, the running cell in Jupyter."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from daskgif.core import events
from daskgif.views.progress import Progress, fresh_line
from frames import image_data, make_gif

#: A plain progress line: frames done/total, rate, elapsed, ETA.
PLAIN = re.compile(r"(\d+)/(\d+) frames \((\d+)%\), ([\d,.]+|\?) frames/s, elapsed \d\d:\d\d, ETA (\d\d:\d\d|\?)")
#: tqdm's bar: percentage, bar, frames done/total, [elapsed<ETA, rate].
BAR = re.compile(r"(\d+)%\|[^|]*\| (\d+)/(\d+) frames \[\d\d:\d\d<(\d\d:\d\d|\?), +[\d.?]+ frames/s\]")


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen(text: str) -> list[str]:
    r"""What a terminal shows of *text*: each ``\r`` returns to the start of the line, and writes over it.

    >>> screen("\r 10%|#\r      \rlog\n\r 20%|##\n")
    ['log', ' 20%|##', '']
    """
    shown = []
    for line in text.split("\n"):
        row = ""
        for piece in line.split("\r"):
            row = piece + row[len(piece):]
        shown.append(row.rstrip())
    return shown


def send_frames(run: str, total: int, per_message: int, clock: Clock, seconds_each: float) -> None:
    events.bus.publish({"kind": "map", "run": run, "total": total})
    for _ in range(total // per_message):
        clock.now += seconds_each
        events.bus.publish({"kind": "frames", "run": run, "counts": {"Success": per_message}})


def test_plain_lines_come_at_most_every_interval_and_at_100_percent():
    clock, out = Clock(), io.StringIO()
    with Progress(stream=out, interval=10, clock=clock) as shown:
        events.bus.publish({"kind": "frames", "run": "other", "counts": {"Success": 5}})  # not one of its runs
        send_frames("r1", total=100, per_message=2, clock=clock, seconds_each=0.5)  # 50 messages over 25 s
        clock.now += 5  # combine; nothing more to say at the end
    lines = out.getvalue().splitlines()
    assert lines == ["40/100 frames (40%), 4.0 frames/s, elapsed 00:10, ETA 00:15",
                     "80/100 frames (80%), 4.0 frames/s, elapsed 00:20, ETA 00:05",
                     "100/100 frames (100%), 4.0 frames/s, elapsed 00:25, ETA 00:00"]
    assert shown.mode == "lines" and shown.done == 100


def test_failed_frames_are_counted_apart_on_the_line():
    clock, out = Clock(), io.StringIO()
    with Progress(stream=out, interval=10, clock=clock) as shown:
        events.bus.publish({"kind": "map", "run": "r-bad", "total": 32})
        clock.now += 2
        events.bus.publish({"kind": "frames", "run": "r-bad", "counts": {"Success": 31, "Failed": 1}})
    assert out.getvalue() == "32/32 frames (100%, 1 failed), 16.0 frames/s, elapsed 00:02, ETA 00:00\n"
    assert shown.failed == 1


def test_failed_frames_are_counted_on_a_terminals_bar_too():
    clock, term = Clock(), Terminal()
    with Progress(stream=term, clock=clock):
        events.bus.publish({"kind": "map", "run": "r-bar", "total": 32})
        events.bus.publish({"kind": "frames", "run": "r-bar", "counts": {"Success": 1}})  # the bar is drawn
        clock.now += 2
        events.bus.publish({"kind": "frames", "run": "r-bar", "counts": {"Success": 30, "Failed": 1}})
    last = [row for row in screen(term.getvalue()) if row][-1]
    assert last.startswith("100%|") and " 32/32 frames [" in last and last.endswith(", 1 failed]"), last


def test_a_short_run_prints_its_last_line_only():
    clock, out = Clock(), io.StringIO()
    with Progress(stream=out, clock=clock):  # daskgif.progress-interval: 10 s
        send_frames("r1", total=27, per_message=9, clock=clock, seconds_each=1)
    assert out.getvalue() == "27/27 frames (100%), 9.0 frames/s, elapsed 00:03, ETA 00:00\n"


def test_the_interval_is_a_setting():
    import dask

    with dask.config.set({"daskgif.progress-interval": 0}), Progress(stream=io.StringIO()) as shown:
        assert shown.interval == 0
    with dask.config.set({"daskgif.progress-interval": "soon"}), pytest.raises(ValueError, match="progress-interval"):
        with Progress(stream=io.StringIO()):
            pass
    with Progress(stream=Terminal()) as shown:
        assert shown.interval == 0.1  # a bar on a terminal redraws in place


def test_a_bar_on_a_terminal_ends_its_line_before_a_message():
    clock, term = Clock(), Terminal()
    handler = logging.StreamHandler(term)
    log = logging.getLogger("daskgif")
    log.addHandler(handler)
    try:
        with Progress(stream=term, clock=clock) as shown:
            send_frames("r1", total=40, per_message=10, clock=clock, seconds_each=1)
            assert term.getvalue().startswith("\r") and not term.getvalue().endswith("\n")  # the bar, drawn in place
            log.warning("a log line")
            signal_notice = fresh_line(term) + "daskgif: SIGINT received\n"
            term.write(signal_notice)
            assert fresh_line(term) == ""  # the line is ended once
            events.bus.publish({"kind": "frames", "run": "r1", "counts": {"Success": 0}})
        assert handler.stream is term  # the handler writes where it wrote before
    finally:
        log.removeHandler(handler)
    assert shown.mode == "bar" and signal_notice == "\ndaskgif: SIGINT received\n"
    # The log line went above the bar (redrawn below it); the signal notice ended the bar's line.
    rows = screen(term.getvalue())
    assert "a log line" in rows and "daskgif: SIGINT received" in rows and rows[-1] == ""
    assert BAR.fullmatch(rows[-2]).groups()[:3] == ("100", "40", "40")


def daskgif_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "daskgif", *args]


@pytest.fixture
def many_frames(tmp_path: Path) -> Path:
    path = tmp_path / "many.img"
    path.write_bytes(image_data([make_gif(8, 8, seed=i) for i in range(200)]))
    return path


def test_without_a_terminal_the_cli_prints_plain_progress_lines(tmp_path, many_frames):
    with open(tmp_path / "log", "w") as log:  # as under cron or CI: `daskgif run 2>log`
        done = subprocess.run(daskgif_cmd("run", "--scheduler", "threads", "--url", str(many_frames), "--data-file",
                                          str(many_frames), "--frames-per-task", "5"),
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=log, text=True, timeout=120,
                              env={**os.environ, "DASK_DASKGIF__PROGRESS_INTERVAL": "0"})  # a line per message
    assert done.returncode == 0 and done.stdout.startswith("Wrote clip.gif")
    text = (tmp_path / "log").read_text()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) >= 3 and all(PLAIN.fullmatch(line) for line in lines), text
    counts = [int(PLAIN.fullmatch(line).group(1)) for line in lines]
    assert counts == sorted(counts) and {PLAIN.fullmatch(line).group(2) for line in lines} == {"200"}
    assert lines[-1].startswith("200/200 frames (100%), ") and lines[-1].endswith("ETA 00:00")


def run_in_a_terminal(args: list[str], cwd: Path, columns: int) -> tuple[int, str]:
    """Run *args* with stderr on a pseudo-terminal *columns* wide (0: nobody sized it, as under ``script`` in CI);
    return the exit status and what the terminal got."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24 if columns else 0, columns, 0, 0))
    try:
        proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal)
    finally:
        os.close(terminal)
    got = bytearray()
    try:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every end of the terminal is closed
                break
            if not chunk:
                break
            got += chunk
    finally:
        os.close(controller)
    return proc.wait(timeout=120), got.decode().replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [100, 0])
def test_on_a_terminal_the_cli_draws_a_bar_that_ends_its_line_before_a_message(tmp_path, many_frames, columns):
    status, text = run_in_a_terminal(daskgif_cmd("-v", "run", "--scheduler", "threads", "--url", str(many_frames),
                                                 "--data-file", str(many_frames), "--frames-per-task", "5"), tmp_path,
                                     columns)
    assert status == 0, text
    drawn = [piece for piece in re.split(r"[\r\n]", text) if BAR.search(piece)]
    assert BAR.search(drawn[-1]).group(1, 2, 3) == ("100", "200", "200"), text
    assert all(len(piece) <= (columns or 80) for piece in drawn)
    # Log lines come while the bar is drawn (combine runs after the frames): each on a line of its own.
    rows = screen(text)
    assert "daskgif: Task 'combine': Running" in rows
    assert all(row.startswith("daskgif: ") for row in rows if "daskgif: " in row), rows
    assert rows[-1] == "" and BAR.fullmatch(rows[-3]).group(1, 2, 3) == ("100", "200", "200")  # then the end


def execute_counting_updates(cells: list[str], cwd: Path) -> tuple[list, dict[str, int]]:
    """Execute *cells* in a real kernel; return the executed cells and, per cell source, how many display
    updates the kernel sent for it (every iopub message counted, also those nbclient drops as another cell's)."""
    import nbformat
    import nbclient
    import ipykernel
    seen: list[dict] = []

    class Counting(nbclient.NotebookClient):
        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            get_msg = kc.iopub_channel.get_msg

            async def recording(*args, **kwargs):
                msg = await get_msg(*args, **kwargs)
                seen.append(msg)
                return msg

            kc.iopub_channel.get_msg = recording
            return kc

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    Counting(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    code = {m["parent_header"]["msg_id"]: m["content"]["code"] for m in seen if m["msg_type"] == "execute_input"}
    updates = {source: 0 for source in cells}
    for m in seen:
        if m["msg_type"] == "update_display_data" and m["parent_header"].get("msg_id") in code:
            updates[code[m["parent_header"]["msg_id"]]] += 1
    return nb.cells, updates


@pytest.mark.slow
def test_in_jupyter_updates_land_in_the_cell_that_computes(tmp_path, many_frames):
    client = ("from distributed import Client, LocalCluster\n"
              "cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=':0')\n"
              "client = Client(cluster)")
    # The threads pool's threads are started here, in an earlier cell than the one that computes.
    warm = "import dask\ndask.compute(*[dask.delayed(abs)(-i) for i in range(100)], scheduler='threads');"
    setup = (f"import daskgif\nkwargs = dict(url={str(many_frames)!r}, data_file={str(many_frames)!r}, "
             "frames_per_task=5)")
    on_cluster = ("with daskgif.progress(interval=0):\n"
                  "    result = daskgif.build_graph(out='a.gif', frames_dir='a', **kwargs).compute()\n"
                  "result.ok")
    on_threads = ("with daskgif.progress(interval=0):\n"
                  "    result = daskgif.build_graph(out='b.gif', frames_dir='b', **kwargs).compute(scheduler='threads')\n"
                  "result.ok")
    cells, updates = execute_counting_updates([client, warm, setup, on_cluster, on_threads], tmp_path)
    assert updates[client] == updates[warm] == updates[setup] == 0, updates
    assert updates[on_cluster] >= 10 and updates[on_threads] >= 10, updates  # a few messages per 5-frame batch
    for cell in cells[3:]:
        shown = [out for out in cell.outputs if out.output_type == "display_data"]
        assert len(shown) == 1 and '<progress value="200" max="200"' in shown[0].data["text/html"]
        assert "200/200 frames" in shown[0].data["text/html"]
        assert cell.outputs[-1].data["text/plain"] == "True"
    assert [out.output_type for out in cells[0].outputs] == []
