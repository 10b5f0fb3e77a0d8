"""The repository itself: a clone holds no run output, and no test result depends on chance.

The run test clones the checkout's last commit (what CI's clean clone of main holds),
runs the README's main command inside the clone and asks git what changed.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[2]

#: What ``daskgif run`` writes in its folder.
WRITTEN = ["clip.gif", "image-data.img", "image-data.img.source.json", "frames/frame_00.gif",
           "frames/.frames-manifest.json"]
#: What a killed run may leave besides: the data file's lock and temporary files.
LEFT_BEHIND = ["image-data.img.lock", f".clip.gif.host-1-{'ab' * 16}.part", f".image-data.img.host-1-{'ab' * 16}.part"]


def git(*args: str, cwd: Path) -> str:
    # safe.directory: CI runs as root, on a checkout that may belong to another user
    done = subprocess.run(["git", "-c", f"safe.directory={ROOT}", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr  # 1: check-ignore found nothing ignored
    return done.stdout


@pytest.fixture
def checkout() -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an installed sdist or wheel)")
    return ROOT


@pytest.mark.slow
def test_a_run_leaves_a_clean_clone(checkout, tmp_path):
    clone = tmp_path / "daskgif"
    git("clone", "--quiet", str(checkout), str(clone), cwd=tmp_path)
    assert not git("status", "--porcelain", cwd=clone)
    # The README's main command, as a user runs it in the clone (a local cluster, the embedded sample).
    done = subprocess.run([sys.executable, "-m", "daskgif", "run"], cwd=clone, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    assert [name for name in WRITTEN if not (clone / name).exists()] == []
    assert git("status", "--porcelain", "--untracked-files=all", cwd=clone) == ""


def test_gitignore_covers_what_a_run_may_leave(checkout):
    ignored = git("check-ignore", "--no-index", *WRITTEN, *LEFT_BEHIND, cwd=checkout).splitlines()
    assert sorted({*WRITTEN, *LEFT_BEHIND} - set(ignored)) == []
    assert git("check-ignore", "--no-index", "daskgif/data/sample.img", "README.md", cwd=checkout) == ""


def test_hypothesis_examples_are_the_same_on_every_run():
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") != "ci":
        pytest.skip(f"HYPOTHESIS_PROFILE={os.environ['HYPOTHESIS_PROFILE']} asks for another profile")
    current = settings.default
    assert current.derandomize and current.database is None and current.deadline is None


def test_ci_runs_the_tests_under_the_ci_profile():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "export HYPOTHESIS_PROFILE=ci" in lines
    assert lines.index("export HYPOTHESIS_PROFILE=ci") < next(i for i, line in enumerate(lines) if "pytest" in line
                                                               and not line.startswith("#"))


def chance_overrides(path: Path) -> list[str]:
    """Where *path* sets a seed or settings that take a test out of the derandomized profile."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "hypothesis":
            found += [f"{path.name}:{node.lineno} imports seed" for a in node.names if a.name == "seed"]
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            keywords = {k.arg for k in node.keywords}
            if name == "settings" and keywords & {"derandomize", "database"}:
                found.append(f"{path.name}:{node.lineno} settings({', '.join(sorted(keywords))})")
            elif name == "seed" and getattr(node.func, "value", None) is not None:
                found.append(f"{path.name}:{node.lineno} seeds a global random generator")
    return found


def test_no_test_sets_its_own_seed():
    found = [f for path in sorted((ROOT / "tests").glob("*.py")) if path.name != "conftest.py"
             for f in chance_overrides(path)]
    assert found == []
