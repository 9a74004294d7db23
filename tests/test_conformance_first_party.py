"""vlmcap's own plugins keep the plugin contract (contracts/README.md)."""

import pytest

import vlmcap
from vlmcap.testing._checks import check_plugin, parametrize_with_checks


VARIANTS = vlmcap.available_variants()


def test_there_are_first_party_plugins() -> None:
    assert "qwen" in VARIANTS


@pytest.mark.parametrize("variant", VARIANTS)
def test_first_party_plugin_conforms(variant: str) -> None:
    report = check_plugin(vlmcap.get_plugin(variant), max_examples=20)
    assert report.ok, report.format()
    assert report.skipped == ()


@parametrize_with_checks([vlmcap.get_plugin(v) for v in VARIANTS], max_examples=5)
def test_each_check_on_first_party_plugins(plugin: object, check: object) -> None:
    check(plugin)  # type: ignore[operator]


@pytest.mark.engine
def test_qwen_round_trips_through_the_engine() -> None:
    report = check_plugin(vlmcap.get_plugin("qwen"), engine=True, max_examples=5)
    assert report.ok, report.format()
    assert "check_engine_round_trip" in report.checks
