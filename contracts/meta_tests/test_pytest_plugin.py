"""The ``pytest11`` plugin ``_vlmcap_pytestplugin``, driven with ``pytester``."""

import inspect

import pytest

from contracts.reference_plugins import videollama


pytest_plugins = ["pytester"]

CHECKS = 26  # every rule but the engine's


@pytest.fixture
def author_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A plugin author's project: the seed's VideoLLaMA plugin in ``my_plugin.py``."""
    pytester.makepyfile(my_plugin=inspect.getsource(videollama))
    pytester.syspathinsert()
    return pytester


def test_options_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        ["*--vlmcap-plugin=SPEC*", "*--vlmcap-model-path=DIR*", "*--vlmcap-max-examples=N*"]
    )


def test_plugin_option_adds_one_passing_test_per_check(author_project: pytest.Pytester) -> None:
    result = author_project.runpytest(
        "--vlmcap-plugin", "my_plugin:VllmVideoLLaMA", "--vlmcap-max-examples", "3", "-v"
    )
    result.assert_outcomes(passed=CHECKS)
    result.stdout.fnmatch_lines(
        ["*vlmcap?my_plugin:VllmVideoLLaMA?::check_refine_resets_caption PASSED*"]
    )


def test_a_bad_plugin_fails_on_its_rule(author_project: pytest.Pytester) -> None:
    author_project.makepyfile(
        bad_plugin="""
        from my_plugin import VllmVideoLLaMA


        class KeepsCaption(VllmVideoLLaMA):
            @staticmethod
            def make_refined_llm_request(request, processor, refine_prompt=None):
                refined = VllmVideoLLaMA.make_refined_llm_request(request, processor, refine_prompt)
                return type(refined)(
                    request_id=refined.request_id, inputs=refined.inputs, caption=request.caption
                )
        """
    )
    result = author_project.runpytest(
        "--vlmcap-plugin", "bad_plugin:KeepsCaption", "--vlmcap-max-examples", "5"
    )
    result.assert_outcomes(passed=CHECKS - 1, failed=1)
    result.stdout.fnmatch_lines(["*[[]C-REFINE-002[]] the stage-2 request keeps caption=*"])


def test_keyword_selects_checks(author_project: pytest.Pytester) -> None:
    result = author_project.runpytest(
        "--vlmcap-plugin", "my_plugin:VllmVideoLLaMA", "--vlmcap-max-examples", "3",
        "-k", "check_decode",
    )
    result.assert_outcomes(passed=3)


def test_unknown_plugin_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--vlmcap-plugin", "no_such_module_xyz:Plugin")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--vlmcap-plugin no_such_module_xyz:Plugin: cannot import*"])


def test_fixtures(author_project: pytest.Pytester) -> None:
    author_project.makepyfile(
        test_mine="""
        from hypothesis import given, settings
        from vlmcap.testing import strategies as vst


        def test_variant(vlmcap_plugin, vlmcap_model_path):
            assert vlmcap_plugin.model_variant() == "videollama"
            assert vlmcap_model_path is not None and vlmcap_model_path.name == "ckpt"


        @settings(max_examples=5)
        @given(vst.request_outputs())
        def test_decode_property(vlmcap_plugin, output):
            assert isinstance(vlmcap_plugin.decode(output), str)
        """
    )
    author_project.mkdir("ckpt")
    result = author_project.runpytest(
        "test_mine.py", "--vlmcap-model-path", str(author_project.path / "ckpt"),
        "-m", "not vlmcap_conformance",
        "--vlmcap-plugin", "my_plugin:VllmVideoLLaMA",
    )
    result.assert_outcomes(passed=2, deselected=CHECKS)


def test_fixture_skips_without_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine="def test_it(vlmcap_plugin):\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(skipped=1)
