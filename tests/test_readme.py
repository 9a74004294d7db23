"""Every fenced code block of the README runs, as written.

- ``python``: saved as a script and run in a fresh folder (blocks that start an engine are
  marked ``engine``);
- ``bash``: each command line runs in bash; ``bash .ci/dev ...`` from the repository root (as
  the README says, in a clone), other commands in a fresh folder that holds what they name
  (``videos/``) with ``vlmcap`` on ``PATH`` and ``$VLMCAP_MODEL_DIR`` holding the tiny
  checkpoint under the pinned Hugging Face id. ``bash .ci/dev test`` runs ruff and mypy and
  only collects the suite (``PYTEST_ADDOPTS=--collect-only``): this test is part of it.
  Commands that make or join a real Ray cluster (``ray start --head``, ``--address
  HEAD:6379``) are the one exception;
- ``json``: a stored row (every column, in order); ``toml``: parsed.

The column table of the README is also checked against :data:`vlmcap.video.ROW_DOCS`.
"""

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import attrs
import pytest

from vlmcap import MODEL_IDS
from vlmcap.testing import sample_videos
from vlmcap.video import ROW_DOCS, read_rows
from vlmcap.video._results import ROW_FIELDS


ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent


def _needs_a_cluster(line: str) -> bool:
    """A command that sets up or joins a multi-node Ray cluster (its head is ``HEAD:PORT``)."""
    return line.lstrip().startswith("ray start") or "HEAD:" in line


@attrs.frozen
class Block:
    lang: str
    text: str
    line: int

    @property
    def engine(self) -> bool:
        """Starts a vLLM engine (or runs the suite's linters)."""
        markers = (
            "vllm_model(", "caption_paths(", "vlmcap caption", ".ci/dev demo", ".ci/dev test"
        )
        return any(m in self.text for m in markers)


def _blocks() -> list[Block]:
    blocks = []
    lines = README.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m is None:
            i += 1
            continue
        start = i
        i += 1
        body = []
        while not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        blocks.append(Block(m.group(1), "\n".join(body) + "\n", start + 1))
        i += 1
    return blocks


BLOCKS = _blocks()


def _param(block: Block) -> object:
    marks = [pytest.mark.engine, pytest.mark.slow] if block.engine else []
    return pytest.param(block, id=f"line{block.line}-{block.lang}", marks=marks)


def test_every_block_has_a_runner() -> None:
    assert BLOCKS, "the README has code blocks"
    assert {b.lang for b in BLOCKS} <= {"python", "bash", "json", "toml"}
    first = next(b for b in BLOCKS if b.lang == "bash").text.splitlines()
    assert [ln.split("#")[0].strip() for ln in first] == ["bash .ci/dev demo", "bash .ci/dev test"]
    ran = [
        ln for b in BLOCKS if b.lang == "bash" for ln in b.text.splitlines()
        if ln.strip() and not _needs_a_cluster(ln)
    ]
    assert any("--ray" in ln for ln in ran), "the local Ray command runs"


def test_the_column_table_is_row_docs() -> None:
    text = README.read_text()
    table = text[text.index("<!-- row-docs:start -->") : text.index("<!-- row-docs:end -->")]
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", table, re.MULTILINE))
    assert list(rows) == list(ROW_DOCS)
    assert rows == {k: v.replace("|", "/") for k, v in ROW_DOCS.items()}


@pytest.fixture
def workdir(tmp_path: Path, tiny_qwen: Path) -> tuple[Path, dict[str, str]]:
    """A fresh folder with ``videos/``, and an environment that finds the tiny checkpoint."""
    models = tmp_path / "models"
    link = models / MODEL_IDS["qwen"].repo_id
    link.parent.mkdir(parents=True)
    link.symlink_to(tiny_qwen)
    sample_videos(tmp_path / "videos", n=1)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "VLMCAP_MODEL_DIR": str(models),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("PYTEST_ADDOPTS", None)
    return tmp_path, env


def _check(done: "subprocess.CompletedProcess[str]", what: str) -> None:
    assert done.returncode == 0, (
        f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )


def _bash(line: str, cwd: Path, env: dict[str, str]) -> None:
    if ".ci/dev" in line:
        cwd = ROOT
    if ".ci/dev test" in line:
        env = {**env, "PYTEST_ADDOPTS": "--collect-only -q"}
    done = subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=1500,
        check=False,
    )
    _check(done, line)
    if ".ci/dev demo" in line:
        rows = read_rows(ROOT / "out" / "demo.jsonl")
        assert rows and all(r.ok for r in rows)
    if "--out captions.parquet" in line:
        assert read_rows(cwd / "captions.parquet"), "the command wrote rows"


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_readme_block_runs(block: Block, workdir: tuple[Path, dict[str, str]]) -> None:
    cwd, env = workdir
    if block.lang == "json":
        row = json.loads(block.text)
        assert list(row) == list(ROW_FIELDS), "a README row shows every column, in order"
    elif block.lang == "toml":
        table = tomllib.loads(block.text)
        assert table["project"]["entry-points"]["vlmcap.plugins"]
    elif block.lang == "python":
        script = cwd / f"readme_line{block.line}.py"
        script.write_text(block.text)
        done = subprocess.run(
            [sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True,
            timeout=900, check=False,
        )
        _check(done, f"the python block at README line {block.line}")
    else:
        for line in block.text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                if _needs_a_cluster(line):
                    continue  # a multi-node cluster; the local `--ray` command runs here
                _bash(line, cwd, env)
