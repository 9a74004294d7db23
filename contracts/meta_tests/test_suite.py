"""The suite is itself tested: good plugins pass, each bad plugin fails on exactly its rule."""

import re
import subprocess
import sys
import unittest
from pathlib import Path

import pytest

import vlmcap
from contracts.reference_plugins import bad
from contracts.reference_plugins.current_images import VllmCurrentImages
from contracts.reference_plugins.current_qwen import VllmCurrentQwen
from contracts.reference_plugins.current_text import VllmCurrentText
from contracts.reference_plugins.image_frames import VllmImageFrames
from contracts.reference_plugins.text_prompt import VllmTextPrompt
from contracts.reference_plugins.videollama import VllmVideoLLaMA
from vlmcap.testing import tiny_checkpoint
from vlmcap.testing._checks import check_plugin, parametrize_with_checks, plugin_checks
from vlmcap.testing._contracts import CONTRACTS
from vlmcap.testing._report import (
    ConformanceError,
    ConformanceReport,
    ContractFailure,
    ContractViolation,
)


GUIDE_FORM = (VllmVideoLLaMA, VllmTextPrompt, VllmImageFrames)
CURRENT_FORM = (VllmCurrentQwen, VllmCurrentText, VllmCurrentImages)
GOOD_PLUGINS = GUIDE_FORM + CURRENT_FORM
MAX_EXAMPLES = 10
README = Path(__file__).resolve().parent.parent / "README.md"
CHECK_OF = {c.contract_id: c.name for c in plugin_checks(None, engine=True)}


def _name(plugin: type) -> str:
    return plugin.__name__


@pytest.mark.parametrize("plugin", GOOD_PLUGINS, ids=_name)
def test_good_plugin_passes_every_check(plugin: type) -> None:
    report = check_plugin(plugin, max_examples=MAX_EXAMPLES)
    assert report.ok, report.format()
    assert report.skipped == ()
    assert len(report.checks) == len(CONTRACTS) - 1  # every rule but the engine's


@pytest.mark.parametrize("plugin", bad.BAD_PLUGINS, ids=_name)
def test_bad_plugin_fails_exactly_its_rule(plugin: type) -> None:
    rule = plugin.BREAKS  # type: ignore[attr-defined]
    engine = rule.startswith("C-ENGINE-")
    report = check_plugin(
        plugin,
        max_examples=MAX_EXAMPLES,
        engine=engine,
        model_path=tiny_checkpoint("qwen") if engine else None,
    )
    assert report.failed_contracts == {rule}, report.format()
    (failure,) = report.failures
    assert failure.check == CHECK_OF[rule]
    assert failure.rule == CONTRACTS[rule].rule
    assert len(failure.message) > 20


def test_bad_plugins_break_every_rule() -> None:
    broken = {p.BREAKS for p in bad.BAD_PLUGINS}  # type: ignore[attr-defined]
    assert broken == set(CONTRACTS)


def test_readme_states_every_rule_in_order() -> None:
    text = README.read_text()
    headings = re.findall(r"^#### (C-[A-Z]+-\d{3})$", text, flags=re.MULTILINE)
    assert headings == list(CONTRACTS)
    for contract in CONTRACTS.values():
        assert contract.rule in text
        assert contract.reason in text


def test_one_check_per_rule_in_document_order() -> None:
    checks = list(plugin_checks(None, engine=True))
    assert [c.contract_id for c in checks] == list(CONTRACTS)
    assert len({c.name for c in checks}) == len(checks)
    for check in checks:
        assert check.contract_id in (check.func.__doc__ or ""), check.name
    assert "C-ENGINE-001" not in {c.contract_id for c in plugin_checks(None)}


def test_check_modules_import_neither_pytest_nor_hypothesis() -> None:
    code = (
        "import sys; import vlmcap.testing._checks, vlmcap.testing._report; "
        "print(sorted(m for m in ('pytest', 'hypothesis', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip() == "[]"


def test_report_collects_and_raises() -> None:
    report = check_plugin(bad.VllmKeepsCaption, max_examples=MAX_EXAMPLES)
    assert not report.ok
    with pytest.raises(ConformanceError) as info:
        report.raise_if_failed()
    assert info.value.report is report
    assert "FAIL C-REFINE-002 check_refine_resets_caption" in str(info.value)
    assert "does NOT conform" in report.format()
    ConformanceReport(plugin="x:Y", checks=("a",)).raise_if_failed()  # no failure: no raise


def test_a_check_is_a_plain_callable_raising_contract_violation() -> None:
    (check,) = [c for c in plugin_checks(bad.VllmDecodeList) if c.contract_id == "C-DECODE-001"]
    with pytest.raises(ContractViolation) as info:
        check(bad.VllmDecodeList)
    assert info.value.contract_id == "C-DECODE-001"
    assert isinstance(info.value, AssertionError)
    assert str(check) == "check_decode_returns_str"


@pytest.mark.parametrize(
    ("plugin", "words"),
    [
        (bad.VllmVideoFramesKey, ["'video_frames'", "did you mean", "'video'"]),
        (bad.VllmImagesKey, ["'images'", "'image'"]),
        (bad.VllmTransposedFrames, ["transpose"]),
        (bad.VllmNoCaptionCheck, ["TypeError", "can only concatenate", "request.caption is None"]),
        (bad.VllmInstanceMethod, ["make_llm_input", "@staticmethod"]),
        (bad.VllmMissingDecode, ["decode", "empty stub"]),
        (bad.VllmRefinePromptRequired, ["refine_prompt", "default to None"]),
        (bad.VllmNewFrames, ["reuse", "bug 3"]),
        (bad.VllmFloatOnly, ["uint8"]),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_failure_message_says_what_to_change(plugin: type, words: list[str]) -> None:
    report = check_plugin(plugin, max_examples=MAX_EXAMPLES)
    (failure,) = report.failures
    for word in words:
        assert word in failure.message, failure.message


def test_checks_that_depend_on_a_broken_rule_are_skipped() -> None:
    report = check_plugin(bad.VllmMissingDecode, max_examples=MAX_EXAMPLES)
    skipped = {s.check for s in report.skipped}
    assert skipped == {
        "check_decode_signature",
        "check_decode_returns_str",
        "check_decode_returns_text",
    }
    assert all("C-STRUCT-001" in s.reason for s in report.skipped)


def test_an_instance_instead_of_the_class_breaks_only_c_struct_001() -> None:
    report = check_plugin(VllmVideoLLaMA(), max_examples=MAX_EXAMPLES)
    assert report.failed_contracts == {"C-STRUCT-001"}
    assert "must be a class" in report.failures[0].message
    assert len(report.skipped) == len(report.checks) - 1


def test_a_model_path_that_is_no_checkpoint_breaks_c_struct_008(tmp_path: Path) -> None:
    report = check_plugin(VllmVideoLLaMA, model_path=tmp_path, max_examples=MAX_EXAMPLES)
    assert report.failed_contracts == {"C-STRUCT-008"}
    assert str(tmp_path) in report.failures[0].message


@parametrize_with_checks([VllmVideoLLaMA], max_examples=5)
def test_parametrize_with_checks(plugin: type, check: object) -> None:
    check(plugin)  # type: ignore[operator]


def test_parametrize_with_checks_ids_select_checks() -> None:
    mark = parametrize_with_checks([VllmVideoLLaMA, VllmTextPrompt])
    assert isinstance(mark, pytest.MarkDecorator)
    assert mark.args[0] == ("plugin", "check")
    ids = mark.kwargs["ids"]
    assert "VllmVideoLLaMA-check_refine_resets_caption" in ids
    assert "VllmTextPrompt-check_decode_returns_str" in ids
    assert len(ids) == 2 * (len(CONTRACTS) - 1)


def test_failure_record_reads_as_one_line() -> None:
    failure = ContractFailure("C-INPUT-003", "check_input_modality_keys", "bad key")
    assert failure.format() == "FAIL C-INPUT-003 check_input_modality_keys: bad key"


def test_a_plugin_broken_only_in_make_llm_input_fails_once_and_skips_stage2() -> None:
    report = check_plugin(bad.VllmInputRaises, max_examples=MAX_EXAMPLES)
    assert report.failed_contracts == {"C-INPUT-001"}, report.format()
    refine_skips = [s for s in report.skipped if s.check.startswith("check_refine_")]
    assert len(refine_skips) == 9
    assert all("skipped because C-INPUT-001 failed" in s.reason for s in refine_skips)


def test_a_single_check_skips_when_the_rule_it_needs_is_broken() -> None:
    (check,) = [
        c for c in plugin_checks(bad.VllmInputRaises) if c.name == "check_refine_resets_caption"
    ]
    with pytest.raises(unittest.SkipTest, match="skipped because C-INPUT-001 failed"):
        check(bad.VllmInputRaises)


@pytest.mark.engine
@pytest.mark.slow
@pytest.mark.parametrize("plugin", GOOD_PLUGINS, ids=_name)
def test_good_plugins_of_both_forms_caption_through_the_engine(plugin: type) -> None:
    before = vlmcap.available_variants()
    report = check_plugin(plugin, engine=True, max_examples=5, model_path=tiny_checkpoint("qwen"))
    assert report.ok, report.format()
    assert "check_engine_round_trip" in report.checks
    assert not report.skipped
    assert "Qwen2_5_VLForConditionalGeneration; the plugin's own" in report.checkpoint
    assert vlmcap.available_variants() == before
