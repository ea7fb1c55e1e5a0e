"""Every ```python block of README.md runs as written, on what the README's own set-up commands make.

The first ```bash block of the Usage section (the tiny repo `spiritlm-tiny` and `question.wav`) runs once in a
temporary folder that also holds an `out.wav`, as the set-up command's demo leaves it; each python block then runs
there on its own (a fresh namespace: a block must define what it uses). `path/to/spiritlm-expressive` and
`path/to/spiritlm-base` in a block stand for a converted repo and become tiny ones.

A block that cannot run here (it needs a GPU, a browser, the official weights ...) is marked by an HTML comment on
the line right before it, with the reason, and is only compiled:

    <!-- readme-test: skip: needs a CUDA GPU -->
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transformers_spiritlm.testing import build_tiny_repo


README = Path(__file__).resolve().parents[1] / "README.md"
FIXTURE_AUDIO = Path(__file__).parent / "fixtures" / "audio" / "speech_2s_16k.wav"
SKIP_MARKER = re.compile(r"<!--\s*readme-test:\s*skip:\s*(?P<reason>\S.*?)\s*-->")
TINY_REPOS = {
    "path/to/spiritlm-expressive": ("spiritlm-tiny", "expressive"),
    "path/to/spiritlm-base": ("spiritlm-tiny-base", "base"),
}


def code_blocks(text: str, language: str) -> list[tuple[int, str, str | None]]:
    """`(line number, code, skip reason)` of each fenced block in `language`, in order."""
    blocks, lines = [], text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() == f"```{language}":
            start = index + 1
            end = next(i for i in range(start, len(lines)) if lines[i].strip() == "```")
            previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            marker = SKIP_MARKER.search(previous)
            blocks.append((start + 1, "\n".join(lines[start:end]) + "\n", marker and marker["reason"]))
            index = end
        index += 1
    return blocks


def usage_setup_block(text: str) -> str:
    usage = text[text.index("\n## Usage\n") :]
    return code_blocks(usage, "bash")[0][1]


PYTHON_BLOCKS = code_blocks(README.read_text(encoding="utf-8"), "python")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder as the README's set-up and Usage commands leave it."""
    workdir = tmp_path_factory.mktemp("readme")
    shutil.copy(FIXTURE_AUDIO, workdir / "out.wav")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    setup = usage_setup_block(README.read_text(encoding="utf-8"))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", setup], cwd=workdir, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{setup}\n{result.stderr}"
    assert (workdir / "spiritlm-tiny" / "config.json").is_file() and (workdir / "question.wav").is_file()
    return workdir


def test_readme_has_runnable_python_blocks_and_few_skips():
    assert len(PYTHON_BLOCKS) >= 4
    skipped = [line for line, _, reason in PYTHON_BLOCKS if reason]
    assert len(skipped) <= len(PYTHON_BLOCKS) // 3, f"too many skipped README blocks (lines {skipped})"


def test_skip_marker_needs_a_reason():
    text = "<!-- readme-test: skip -->\n```python\nx = 1\n```\n<!-- readme-test: skip: needs a GPU -->\n\n```python\n```\n"
    assert [reason for _, _, reason in code_blocks(text, "python")] == [None, "needs a GPU"]


@pytest.mark.parametrize("line, code, skip_reason", PYTHON_BLOCKS, ids=[f"line {b[0]}" for b in PYTHON_BLOCKS])
def test_python_block_runs(line, code, skip_reason, workdir, monkeypatch):
    for placeholder, (tiny, variant) in TINY_REPOS.items():
        if placeholder in code:
            if not (workdir / tiny).exists():
                build_tiny_repo(workdir / tiny, variant=variant)
            code = code.replace(placeholder, tiny)
    compiled = compile(code, f"README.md, block at line {line}", "exec")
    if skip_reason:
        pytest.skip(f"README.md line {line}: {skip_reason}")
    monkeypatch.chdir(workdir)
    exec(compiled, {"__name__": "__readme__"})
