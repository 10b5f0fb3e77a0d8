"""``examples/image-etl.ipynb`` runs with a real kernel, and its committed outputs are not stale."""

from __future__ import annotations

import base64
import importlib.util
import io
import shutil
from pathlib import Path

import pytest

import nbclient
import ipykernel

import nbformat  # noqa: E402
from PIL import Image  # noqa: E402

from daskgif.gif.split import split_bytes  # noqa: E402
from daskgif.pipeline.sample import sample_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_FRAMES = len(split_bytes(Path(sample_path()).read_bytes()))


def load_runner():
    """Import ``examples/run_notebook.py``, the notebook's regenerate command, as a module."""
    spec = importlib.util.spec_from_file_location("run_notebook", ROOT / "examples" / "run_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = load_runner()


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> tuple[nbformat.NotebookNode, Path]:
    """The notebook executed by a real ipykernel, with a fresh temporary folder as its cwd."""
    folder = tmp_path_factory.mktemp("notebook")
    return runner.execute(runner.NOTEBOOK, workdir=folder), folder


def texts(nb: nbformat.NotebookNode) -> str:
    """All text the notebook's code cells printed or displayed."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            found.append(out.get("text", ""))
            found.extend(v for k, v in out.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(found)


def test_it_writes_a_valid_gif(executed):
    _, folder = executed
    with Image.open(folder / "clip.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == SAMPLE_FRAMES and gif.info["loop"] == 0
    assert len(list((folder / "frames").glob("frame_*.gif"))) == SAMPLE_FRAMES
    assert (folder / "image-data.img").exists()


def outputs_of(nb: nbformat.NotebookNode, start: str) -> list:
    """The outputs of the code cell whose source starts with *start*."""
    return next(cell.outputs for cell in nb.cells if cell.cell_type == "code" and cell.source.startswith(start))


def test_states_say_success_then_skipped(executed):
    nb, _ = executed
    text = texts(nb)
    assert "Retrying attempt 2  ConnectionError: server busy" in text and "Success  attempt 3" in text
    assert "ok: True" in text
    assert f"write-frame  {{'Success': {SAMPLE_FRAMES}}}" in text
    assert "fetch: Skipped (image-data.img is what the URL gave; force=True fetches it again)" in text


def test_a_failing_run_names_task_frame_attempts_and_cause(executed):
    nb, folder = executed
    text = texts(nb)
    assert ("task 'write-frame' (frame 3) failed after 1 attempt: GifFormatError: frame 3 at byte "
            in text) and "image data does not decode" in text
    assert "(False, [3])" in text  # no damaged.gif; frame 3's state is kept
    assert not (folder / "damaged.gif").exists()


def test_client_progress_and_runs_page_show_as_html(executed):
    nb, _ = executed
    client = outputs_of(nb, "import logging")
    assert [out.output_type for out in client] == ["execute_result"]  # the Client's own repr, nothing printed
    assert "<h3" in client[0].data["text/html"] and "/status" in client[0].data["text/html"]
    progress = outputs_of(nb, "with daskgif.progress()")
    assert len(progress) == 1, "one progress line, updated in place"
    assert f'<progress value="{SAMPLE_FRAMES}" max="{SAMPLE_FRAMES}"' in progress[0].data["text/html"]
    assert f"{SAMPLE_FRAMES}/{SAMPLE_FRAMES} frames" in progress[0].data["text/html"]
    page = outputs_of(nb, "import shutil")
    assert page[0].text.startswith("Runs page, while this cluster runs: http://")
    assert page[0].text.rstrip().endswith("/daskgif")
    # A picture of the page, which outlives the cluster in the saved notebook (or the live page without chromium).
    shown = page[1].data
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        assert base64.b64decode(shown["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "<iframe" in shown["text/html"] and '/daskgif"' in shown["text/html"]


def test_three_inputs_make_three_clips(executed):
    nb, _ = executed
    found = outputs_of(nb, 'os.makedirs("inputs"')
    assert "('mon.gif', True, 32), ('tue.gif', True, 32), ('wed.gif', True, 32)" in found[0].data["text/plain"]


def test_nothing_is_logged_to_stderr(executed):
    nb, _ = executed
    stderr = [out.text for cell in nb.cells for out in cell.get("outputs", [])
              if out.output_type == "stream" and out.name == "stderr"]
    assert not stderr, stderr


def test_the_gif_and_the_pictures_are_inline(executed):
    nb, _ = executed
    data = [out.data for cell in nb.cells for out in cell.get("outputs", []) if "data" in out]
    html = next(d["text/html"] for d in data if "text/html" in d and "data:image/gif;base64," in d["text/html"])
    gif = base64.b64decode(html.split("data:image/gif;base64,", 1)[1].split('"', 1)[0])
    with Image.open(io.BytesIO(gif)) as image:
        assert image.n_frames == SAMPLE_FRAMES
    assert "states</th>" in html
    assert any("image/png" in d for d in data)  # dask's picture
    svg = next(d["image/svg+xml"] for d in data if "image/svg+xml" in d)
    assert all(step in svg.replace("&#45;", "-") for step in ("fetch", "split", "write-frame", "combine"))


def test_committed_outputs_are_not_stale(executed):
    nb, _ = executed
    committed = nbformat.read(runner.NOTEBOOK, as_version=4)
    assert all(cell.get("outputs") for cell in committed.cells if cell.cell_type == "code"
               and not cell.source.startswith(("import", "DATA_URL", "client.close"))), "commit it with outputs"
    stale = runner.stale_cells(committed, nb)
    assert not stale, "outputs are stale; regenerate: python examples/run_notebook.py\n" + "\n".join(stale)


def test_it_never_fetches_the_original_url():
    nb = nbformat.read(runner.NOTEBOOK, as_version=4)
    url = "https://raw.githubusercontent.com/cicdw/image-data/master/all-images.img"
    assert any(url in cell.source for cell in nb.cells if cell.cell_type == "markdown")
    assert not any(url in cell.source for cell in nb.cells if cell.cell_type == "code")


def test_normal_form_ignores_what_changes_between_runs():
    assert runner.normalize("in 0.32 s at http://127.0.0.1:39675/status") == runner.normalize(
        "in 1.05 s at http://127.0.0.1:40001/status")
    assert runner.last_frame("[  ] 0%\r[##] 100%\x1b[2K\r") == "[##] 100%"
