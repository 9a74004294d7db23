"""Plugins of both cosmos-curate forms caption end to end on the CPU engine, through the file
job's CLI (``vlmcap caption --model pkg.module:Class``), stage 1 and stage 2."""

from pathlib import Path

import pytest

from vlmcap import cli
from vlmcap.testing._samples import sample_videos
from vlmcap.video import read_rows


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize(
    "spec",
    [
        "contracts.reference_plugins.current_text:VllmCurrentText",  # current form, metadata dict
        "contracts.reference_plugins.text_prompt:VllmTextPrompt",  # guide form, keyword extras
    ],
)
def test_caption_cli_takes_a_plugin_by_its_import_path(
    spec: str, tiny_qwen: Path, tmp_path: Path
) -> None:
    videos = sample_videos(tmp_path / "in", n=1)
    out = tmp_path / "rows.jsonl"
    args = ["caption", str(videos[0]), "--model", spec, "--model-path", str(tiny_qwen)]
    args += ["--out", str(out), "--stage2", "--max-tokens", "8", "--no-progress"]
    assert cli.main(args) == 0
    rows = read_rows(out)
    assert rows, "one row per window"
    for row in rows:
        assert row.ok, row.error
        assert row.caption
        assert row.output_tokens > 8, "two stages ran: their output tokens are summed"
