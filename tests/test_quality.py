"""Caption quality flags: the rules' invariants (Hypothesis), the output's flags column and
quality file on a fake engine, and the tiny model's looping captions through the real engine."""

import itertools
import json
import random
import string
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import assume, given, strategies as st

import vlmcap
from vlmcap._errors import ConfigError
from vlmcap._quality import (
    FLAGS,
    Captioned,
    QualitySettings,
    all_flags,
    counts_line,
    length_outliers,
    modified_z,
    near_duplicates,
    quality_report,
    repetition,
    retry_sampling,
    row_flags,
    words,
)
from vlmcap._records import VllmSamplingConfig
from vlmcap.testing._fake import FakeEngine
from vlmcap.testing._samples import sample_image, sample_videos
from vlmcap.video import (
    JobStats,
    WindowCaption,
    WindowSettings,
    caption_paths,
    open_sink,
    read_rows,
)


WORD = st.text(string.ascii_lowercase, min_size=1, max_size=8)
SETTINGS = st.tuples(
    st.integers(1, 8),  # repeat_max_ngram
    st.integers(2, 6),  # repeat_min_times
    st.floats(0.5, 6),  # length_z
    st.integers(2, 12),  # length_min_rows
    st.floats(0.05, 1.0),  # duplicate_jaccard
    st.integers(1, 4),  # shingle
).map(lambda a: QualitySettings(*a))


@given(
    st.lists(WORD, min_size=1, max_size=8),
    st.integers(0, 6),
    st.lists(WORD, max_size=5),
    st.lists(WORD, max_size=5),
    SETTINGS,
)
def test_repetition_flags_any_repeated_ngram(
    gram: list[str], extra: int, before: list[str], after: list[str], s: QualitySettings
) -> None:
    assume(len(gram) <= s.repeat_max_ngram)
    times = s.repeat_min_times + extra
    caption = " ".join([*before, *gram * times, *after])
    assert repetition(caption, s)
    assert "repetition" in row_flags(caption, "stop", s)


@given(st.lists(WORD, unique=True, max_size=60), SETTINGS)
def test_repetition_never_flags_distinct_words(caption: list[str], s: QualitySettings) -> None:
    assert not repetition(" ".join(caption), s)


@given(st.lists(WORD, min_size=1, max_size=6), SETTINGS)
def test_repetition_needs_the_minimum_number_of_repeats(
    gram: list[str], s: QualitySettings
) -> None:
    """One repeat fewer than the threshold, of n-grams of distinct words, is not a loop."""
    assume(len(set(gram)) == len(gram))
    assert not repetition(" ".join(gram * (s.repeat_min_times - 1)), s)


@given(st.text(max_size=40), st.sampled_from([None, "stop", "length", "abort"]))
def test_truncated_is_exactly_the_length_finish_reason(text: str, reason: str | None) -> None:
    assert ("truncated" in row_flags(text, reason)) == (reason == "length")
    assert row_flags(None, reason) == (), "an error row has no flags"


@given(st.integers(0, 500), st.integers(0, 40), SETTINGS)
def test_equal_lengths_are_never_outliers(length: int, n: int, s: QualitySettings) -> None:
    assert length_outliers([length] * n, s) == [()] * n


@given(st.lists(st.integers(0, 300), max_size=40), SETTINGS, st.randoms())
def test_length_flags_are_order_independent(
    lengths: list[int], s: QualitySettings, rnd: random.Random
) -> None:
    flags = dict(zip(range(len(lengths)), length_outliers(lengths, s), strict=True))
    order = list(range(len(lengths)))
    rnd.shuffle(order)
    shuffled = length_outliers([lengths[i] for i in order], s)
    assert [flags[i] for i in order] == shuffled


@given(st.lists(st.integers(0, 300), min_size=1, max_size=40), SETTINGS)
def test_length_flags_follow_the_sign_and_tiny_runs_flag_nothing(
    lengths: list[int], s: QualitySettings
) -> None:
    flags = length_outliers(lengths, s)
    if len(lengths) < s.length_min_rows:
        assert all(f == () for f in flags)
        return
    median = sorted(lengths)[len(lengths) // 2] if len(lengths) % 2 else None
    for n, f, z in zip(lengths, flags, modified_z([float(x) for x in lengths]), strict=True):
        assert ("too_long" in f) == (z > s.length_z)
        assert ("too_short" in f) == (z < -s.length_z)
        if median is not None and n == median:
            assert f == (), "the median is never an outlier"


def test_one_far_outlier_among_similar_lengths_is_flagged() -> None:
    lengths = [40, 42, 38, 41, 39, 40, 43, 37, 40, 400, 2]
    flags = length_outliers(lengths)
    assert flags[-2] == ("too_long",) and flags[-1] == ("too_short",)
    assert all(f == () for f in flags[:-2])


@given(st.lists(st.one_of(st.none(), st.lists(WORD, max_size=12).map(" ".join)), max_size=8),
       SETTINGS, st.randoms())
def test_near_duplicates_are_order_independent(
    captions: list[str | None], s: QualitySettings, rnd: random.Random
) -> None:
    dup = near_duplicates(captions, s)
    order = list(range(len(captions)))
    rnd.shuffle(order)
    assert near_duplicates([captions[i] for i in order], s) == [dup[i] for i in order]
    assert not any(d for c, d in zip(captions, dup, strict=True) if c is None)


@given(st.lists(WORD, min_size=1, max_size=20), st.integers(0, 4), SETTINGS)
def test_a_copied_window_is_a_near_duplicate_and_one_window_never_is(
    caption: list[str], others: int, s: QualitySettings
) -> None:
    text = " ".join(caption)
    assert near_duplicates([text], s) == [False]
    unrelated = [f"zz{k} qq{k} yy{k} ww{k}" for k in range(others)]
    dup = near_duplicates([text, *unrelated, text.upper()], s)
    assert dup[0] and dup[-1]
    assert not any(dup[1:-1]), "captions sharing no word are never near duplicates"


@given(st.lists(st.tuples(st.sampled_from("ab"), st.lists(WORD, max_size=10).map(" ".join),
                          st.sampled_from(["stop", "length"])), max_size=12),
       SETTINGS, st.randoms())
def test_all_flags_are_order_independent_and_known(
    rows: list[tuple[str, str, str]], s: QualitySettings, rnd: random.Random
) -> None:
    recs = [Captioned(src, i, text, fr) for i, (src, text, fr) in enumerate(rows)]
    flags = all_flags(recs, s)
    assert all(set(f) <= set(FLAGS) for f in flags)
    shuffled = list(range(len(recs)))
    rnd.shuffle(shuffled)
    again = all_flags([recs[i] for i in shuffled], s)
    assert again == [flags[i] for i in shuffled]
    report = quality_report(recs, s)
    assert sum(report["flag_counts"].values()) == sum(len(f) for f in flags)
    assert report["length_words"]["count"] == len(recs)


def test_settings_reject_only_row_flags_and_name_unknown_ones() -> None:
    assert QualitySettings(reject=["repetition", "truncated"]).reject == {"repetition", "truncated"}
    with pytest.raises(ConfigError, match="near_duplicate.*known only when the run ends"):
        QualitySettings(reject=["near_duplicate"])
    with pytest.raises(ConfigError, match="unknown quality flag"):
        QualitySettings(reject=["loops"])


@given(st.floats(0, 2), st.floats(0.0001, 1), st.one_of(st.none(), st.integers(0, 9)))
def test_retry_sampling_bumps_temperature_and_frees_the_seed(
    temperature: float, top_p: float, seed: int | None
) -> None:
    s = QualitySettings()
    base = VllmSamplingConfig(temperature=temperature, top_p=top_p, seed=seed)
    retry = retry_sampling(base, s)
    assert retry.temperature >= max(temperature, s.retry_temperature)
    assert retry.top_p >= max(top_p, s.retry_top_p)
    assert retry.seed is None
    assert attrs.evolve(retry, temperature=0, top_p=1, seed=None) == attrs.evolve(
        base, temperature=0, top_p=1, seed=None
    ), "nothing else changes"


def test_words_ignore_case_and_punctuation() -> None:
    assert words("A red car, a RED car!") == ["a", "red", "car", "a", "red", "car"]


# --- the file job: flags column, quality file, rejection and retry (fake engine) ------------

SETTINGS_48 = WindowSettings(window_size=32, remainder_threshold=16)
LOOP = "a red circle circle circle circle circle moves"


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return sample_videos(tmp_path_factory.mktemp("qvideos"), n=2)


@pytest.fixture(scope="module")
def processor(qwen_config: Any) -> Any:
    return vlmcap.auto_processor(qwen_config)


def _job(
    videos: list[Path], config: Any, processor: Any, out: Path, text: Any, **kw: Any
) -> tuple[list[WindowCaption], JobStats, FakeEngine]:
    engine = FakeEngine(text=text)
    stats = JobStats()
    rows = list(
        caption_paths(
            videos, config, llm=engine, processor=processor, out=out, progress=False,
            settings=SETTINGS_48, stats=stats, **kw,
        )
    )
    return rows, stats, engine


def test_rows_carry_flags_and_the_run_writes_its_quality_file(
    videos: list[Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    seen = itertools.count()
    rows, stats, _e = _job(
        videos, qwen_config, processor, out,
        lambda _inp: LOOP if next(seen) % 2 == 0 else "the same scene of a square",
    )
    assert len(rows) >= 4
    loops = [r for r in rows if r.caption == LOOP]
    assert loops and all(r.flags == ("repetition",) for r in loops)
    assert all(r.flags == () for r in rows if r.caption != LOOP)
    assert [r.flags for r in read_rows(out)] == [r.flags for r in rows], "stored as written"
    assert all(isinstance(json.loads(line)["flags"], list) for line in out.read_text().splitlines())
    report = json.loads((tmp_path / "rows.jsonl.quality.json").read_text())
    assert stats.quality_file == str(tmp_path / "rows.jsonl.quality.json")
    assert report["flag_counts"]["repetition"] == len(loops) == stats.flag_counts["repetition"]
    assert report["length_words"]["count"] == len(rows)
    copies = {(r.source, r.window_index) for r in rows for o in rows
              if o.source == r.source and o.window_index != r.window_index
              and o.caption == r.caption}
    dup = {(w["source"], w["window_index"]) for w in report["windows"]
           if "near_duplicate" in w["flags"]}
    assert copies and dup == copies, "a caption repeated in its file is a near duplicate"
    assert "repetition 0" not in counts_line(stats.flag_counts)


def test_rejected_flags_become_error_rows_and_retry_errors_redoes_them(
    videos: list[Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.parquet"
    config = attrs.evolve(qwen_config, quality=QualitySettings(reject=["repetition"]))
    rows, stats, _e = _job(videos, config, processor, out, lambda _inp: LOOP)
    assert rows and all(not r.ok and r.caption is None for r in rows)
    assert all("QualityFlag (repetition)" in (r.error or "") for r in rows)
    assert all(r.flags == ("repetition",) for r in rows), "a rejected row keeps its flags"
    assert stats.rejected == len(rows) and stats.retry_sampling == ""
    fixed = itertools.count()
    again, stats2, engine = _job(
        videos, config, processor, out, lambda _inp: f"a calm scene number {next(fixed)}",
        retry_errors=True,
    )
    assert stats2.retried == len(rows) and len(engine.added) == len(rows)
    assert stats2.retry_sampling == "temperature 0.7, top-p 1.0", "a retry bumps the temperature"
    assert all(r.ok and r.flags == () for r in again)
    assert sorted(r.key for r in read_rows(out)) == sorted(r.key for r in rows), "one row each"


def test_flagged_rows_of_an_earlier_run_are_redone_when_now_rejected(
    videos: list[Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    rows, _s, _e = _job(videos[:1], qwen_config, processor, out, lambda _inp: LOOP)
    assert all(r.ok and r.flags == ("repetition",) for r in rows)
    config = attrs.evolve(qwen_config, quality=QualitySettings(reject=["repetition"]))
    again, _s, engine = _job(videos[:1], config, processor, out, lambda _inp: LOOP)
    assert engine.added == [] and all(r.ok for r in again), "resumed as stored without a retry"
    again, stats, engine = _job(
        videos[:1], config, processor, out, lambda _inp: LOOP, retry_errors=True
    )
    assert stats.retried == len(rows) == len(engine.added)
    assert all("QualityFlag" in (r.error or "") for r in again)


def test_rows_written_before_flags_read_back_with_none(
    videos: list[Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    out = tmp_path / "rows.jsonl"
    rows, _s, _e = _job(videos[:1], qwen_config, processor, out, lambda _inp: LOOP)
    old = [{k: v for k, v in json.loads(line).items() if k != "flags"}
           for line in out.read_text().splitlines()]
    out.write_text("".join(json.dumps(r) + "\n" for r in old))
    again, stats, engine = _job(videos[:1], qwen_config, processor, out, lambda _inp: LOOP)
    assert engine.added == [] and [r.key for r in again] == [r.key for r in rows]
    assert all(r.flags == () for r in again), "an old row has no flags column: []"
    assert stats.flag_counts["repetition"] == len(rows), "the quality file judges its caption"


# --- through the real engine: the demo's looping captions -----------------------------------


@pytest.mark.engine
def test_the_demo_captions_are_flagged_repetition_and_a_retry_redraws_them(
    qwen_engine: Any, qwen_config: Any, tmp_path: Path
) -> None:
    """The demo's settings (tiny Qwen, 48-frame windows, 32 tokens, stage 2, the default
    near-greedy sampling) on the real engine: its looping captions are flagged ``repetition``;
    rejected, they are error rows; ``--retry-errors`` draws them again with the retry sampling."""
    llm, processor, _params = qwen_engine
    media = [*sample_videos(tmp_path / "samples", n=3), sample_image(tmp_path / "still.png")]
    config = attrs.evolve(
        qwen_config, max_output_tokens=32, stage2_caption=True, sampling=VllmSamplingConfig()
    )
    out = tmp_path / "demo.jsonl"
    settings = WindowSettings(window_size=48, remainder_threshold=24)

    def run(cfg: Any, **kw: Any) -> tuple[list[WindowCaption], JobStats]:
        stats = JobStats()
        rows = list(caption_paths(media, cfg, llm=llm, processor=processor, out=out,
                                  settings=settings, progress=False, stats=stats, **kw))
        return rows, stats

    rows, stats = run(config)
    assert len(rows) == 8 and all(r.ok for r in rows)
    for r in rows:
        print(r.window_index, r.flags, r.caption)
    assert all("repetition" in r.flags for r in rows), "the tiny model's captions loop"
    assert stats.flag_counts["repetition"] == 8
    report = json.loads(Path(stats.quality_file).read_text())
    assert report["flag_counts"]["repetition"] == 8 and report["captioned"] == 8

    strict = attrs.evolve(config, quality=QualitySettings(reject=["repetition"]))
    again, stats = run(strict, retry_errors=True)
    assert stats.retried == 8 and stats.windows_captioned == 8
    assert stats.retry_sampling.startswith("temperature 0.7, top-p 0.95")
    print("retried:", Counter(r.status.value for r in again))
    for r in again:
        assert ("repetition" in r.flags) == (not r.ok), r
        if not r.ok:
            assert "QualityFlag (repetition)" in (r.error or "")


def test_cli_reject_flags_take_row_flags_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vlmcap.cli import main

    video = sample_videos(tmp_path / "v", n=1)[0]
    base = ["caption", str(video), "--model", "qwen", "--out", str(tmp_path / "o.jsonl")]
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--reject-flags", "repetition,near_duplicate"])
    assert exit_info.value.code == 2
    assert "near_duplicate" in capsys.readouterr().err
    assert main([*base, "--reject-flags", "repetition", "--ray"]) == 2
    assert "--reject-flags is not supported with --ray" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists(), "a usage error writes nothing"


def test_an_old_parquet_output_resumes_and_every_part_gets_the_flags_column(
    videos: list[Path], qwen_config: Any, processor: Any, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "rows.parquet"
    rows, _s, _e = _job(videos[:1], qwen_config, processor, out, lambda _inp: LOOP)
    (part,) = sorted(out.glob("part-*.parquet"))
    pq.write_table(pq.read_table(part).drop_columns(["flags"]), part)  # as vlmcap wrote it before
    assert "flags" not in pq.read_table(out).column_names
    open_sink(out).close()  # opening an output upgrades its parts (one part: nothing merged)
    assert pq.read_table(part).column("flags").to_pylist() == [[]] * len(rows)
    pq.write_table(pq.read_table(part).drop_columns(["flags"]), part)
    again, _s, engine = _job(videos, qwen_config, processor, out, lambda _inp: LOOP)
    assert engine.added and [r.key for r in again[: len(rows)]] == [r.key for r in rows]
    assert all(r.resumed and r.flags == () for r in again[: len(rows)])
    table = pq.read_table(out)  # the folder, as pyarrow, pandas and DuckDB read it
    assert "flags" in table.column_names and table.num_rows == len(again)
    assert all(f == ["repetition"] for f in table.column("flags").to_pylist()[len(rows):])
