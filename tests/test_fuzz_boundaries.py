"""Fuzz the public boundaries: every input either works or raises a typed ``VlmcapError``.

Random tensors, objects, prompts, metadata and configs go into ``check_frames``,
``VideoMetadata``, ``VllmConfig``, ``make_model_inputs`` (a text plugin, and the tiny Qwen
checkpoint's real processor; no engine) and ``caption_results`` on the fake engine. Never another
exception type, never a hang: sizes stay small.
"""

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import vlmcap
from vlmcap._registry import unregister_plugin
from vlmcap.testing import strategies as vst
from vlmcap.testing._fake import FakeEngine

from ._plugins import ONE_FRAME, EchoPlugin


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _echo_plugin() -> Iterator[None]:
    vlmcap.register_plugin(EchoPlugin)
    yield
    unregister_plugin("echo-test")


def works_or_typed_error(call: Callable[[], Any]) -> tuple[Any, Exception | None]:
    """Run ``call``; any exception other than a ``VlmcapError`` fails the test."""
    try:
        return call(), None
    except vlmcap.VlmcapError as exc:
        error = exc
    assert str(error), f"{type(error).__name__} without a message"
    return None, error


# --- strategies ----------------------------------------------------------------------------

DTYPES = (
    torch.uint8,
    torch.int8,
    torch.int32,
    torch.int64,
    torch.bool,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.complex64,
)
SPECIAL = (0.0, 1.0, -1.0, 0.5, 255.0, 256.0, 1e-9, -1e-9, math.nan, math.inf, -math.inf)


@st.composite
def any_tensors(draw: st.DrawFn) -> torch.Tensor:
    """Tensors of any small rank, shape, dtype and (possibly non-finite) values."""
    rank = draw(st.integers(0, 5))
    shape = draw(st.lists(st.integers(0, 4), min_size=rank, max_size=rank))
    if rank == 4 and draw(st.booleans()):
        shape[1] = 3  # often the right layout, so value checks are reached
    dtype = draw(st.sampled_from(DTYPES))
    fill = draw(st.sampled_from(("zeros", "rand", "randn", "scaled", "special")))
    base = torch.rand(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
    if fill == "zeros":
        base = torch.zeros(shape)
    elif fill == "randn":
        base = torch.randn(shape)
    elif fill == "scaled":
        base = base * draw(st.sampled_from((255.0, 1.0001, 2.0, 1e6)))
    elif fill == "special" and base.numel():
        flat = base.flatten()
        flat[draw(st.integers(0, flat.numel() - 1))] = draw(st.sampled_from(SPECIAL))
        base = flat.reshape(shape)
    if dtype in (torch.uint8, torch.int8, torch.int32, torch.int64, torch.bool):
        base = torch.nan_to_num(base, nan=0.0, posinf=1.0, neginf=0.0)
    return base.to(dtype)


def junk() -> st.SearchStrategy[Any]:
    """Objects that are not what any boundary expects."""
    return st.one_of(
        st.none(),
        st.integers(-5, 5),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.lists(st.integers(0, 3), max_size=3),
        st.just(np.zeros((2, 3, 4, 4), dtype=np.uint8)),
        st.just(object()),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )


def frames_or_junk() -> st.SearchStrategy[Any]:
    return st.one_of(
        vst.frames(max_frames=3, heights=(28, 56), widths=(28, 56)), any_tensors(), junk()
    )


def prompts_or_junk() -> st.SearchStrategy[Any]:
    return st.one_of(
        vst.prompts(max_size=60),
        st.text(max_size=20),  # includes "" and blanks
        st.just(" \n\t"),
        st.just("x" * 100_001),  # one over the limit
        junk(),
    )


def numbers() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(-3, 50),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(SPECIAL),
    )


@st.composite
def metadata_or_junk(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(("uniform", "fields", "none", "junk")))
    if kind == "uniform":
        return vlmcap.VideoMetadata.uniform(draw(st.integers(1, 4)), draw(st.floats(0.5, 30.0)))
    if kind == "none":
        return None
    if kind == "junk":
        return draw(junk())
    _, md = works_or_typed_error(lambda: vlmcap.VideoMetadata(**draw(metadata_fields())))
    return md


def metadata_fields() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "fps": numbers(),
            "total_num_frames": st.one_of(st.integers(-1, 4), numbers()),
            "frames_indices": st.one_of(st.lists(st.integers(-1, 4), max_size=5), junk()),
            "duration": numbers(),
        }
    )


# --- the boundaries ------------------------------------------------------------------------


@FUZZ
@given(frames=frames_or_junk())
def test_check_frames(frames: Any) -> None:
    out, err = works_or_typed_error(lambda: vlmcap.check_frames(frames, "videos[0]"))
    if err is None:
        assert out is frames
        assert frames.ndim == 4 and frames.shape[1] == 3 and frames.numel() > 0
        if frames.is_floating_point():
            assert bool(torch.isfinite(frames).all())
            assert float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0
        else:
            assert frames.dtype == torch.uint8
    else:
        assert isinstance(err, vlmcap.FrameContractError)
        assert "videos[0]" in str(err)


@FUZZ
@given(fields=metadata_fields(), num_frames=st.integers(0, 5), raw=st.booleans())
def test_video_metadata(fields: dict[str, Any], num_frames: int, raw: bool) -> None:
    make: Callable[[], Any] = (
        (lambda: vlmcap.VideoMetadata.from_mapping(fields))
        if raw
        else (lambda: vlmcap.VideoMetadata(**fields))
    )
    md, err = works_or_typed_error(make)
    if err is not None:
        assert isinstance(err, vlmcap.MetadataError)
        return
    assert md.fps > 0 and math.isfinite(md.fps) and md.total_num_frames > 0
    assert len(md.frames_indices) == md.total_num_frames
    _, err = works_or_typed_error(lambda: md.check_matches(num_frames, "metadata[0]"))
    assert (err is None) == (num_frames == md.total_num_frames)
    assert vlmcap.VideoMetadata.from_mapping(md.to_vllm()) == md


@FUZZ
@given(
    num_frames=st.integers(-2, 5),
    fps=numbers(),
)
def test_uniform_metadata(num_frames: int, fps: Any) -> None:
    works_or_typed_error(lambda: vlmcap.VideoMetadata.uniform(num_frames, fps))


@FUZZ
@given(
    kw=st.fixed_dictionaries(
        {},
        optional={
            "model_variant": st.one_of(st.sampled_from(("echo-test", "qwen", "nope")), junk()),
            "batch_size": numbers(),
            "max_output_tokens": numbers(),
            "num_gpus": numbers(),
            "stall_timeout_s": numbers(),
            "max_retries": numbers(),
            "sampling_fps": numbers(),
        },
    )
)
def test_config(kw: dict[str, Any]) -> None:
    kw.setdefault("model_variant", "echo-test")
    cfg, err = works_or_typed_error(lambda: vlmcap.VllmConfig(**kw))
    if err is None:
        assert cfg.batch_size > 0 and cfg.stall_timeout_s > 0 and cfg.max_retries >= 0


ECHO = vlmcap.VllmConfig(model_variant="echo-test", stall_timeout_s=0.5)


@FUZZ
@given(
    videos=st.one_of(st.lists(frames_or_junk(), max_size=3), junk()),
    prompt=prompts_or_junk(),
    metadata=st.one_of(st.none(), st.lists(metadata_or_junk(), max_size=3)),
)
def test_make_model_inputs_with_a_text_plugin(videos: Any, prompt: Any, metadata: Any) -> None:
    out, err = works_or_typed_error(
        lambda: vlmcap.make_model_inputs(videos, ECHO, None, prompt, metadata=metadata)
    )
    if err is None:
        assert len(out) == len(videos)
        for inp in out:
            _frames, md = inp["multi_modal_data"]["video"]
            assert md["total_num_frames"] == int(_frames.shape[0])


@pytest.fixture(scope="module")
def qwen_processor() -> tuple[vlmcap.VllmConfig, Any]:
    from vlmcap.testing import tiny_checkpoint

    config = vlmcap.VllmConfig(model_variant="qwen", model_path=tiny_checkpoint("qwen"))
    return config, vlmcap.auto_processor(config)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    videos=st.lists(frames_or_junk(), min_size=1, max_size=2),
    prompt=prompts_or_junk(),
    preprocess=st.booleans(),
)
def test_make_model_inputs_with_the_tiny_qwen_processor(
    qwen_processor: tuple[vlmcap.VllmConfig, Any], videos: Any, prompt: Any, preprocess: bool
) -> None:
    import attrs

    config, processor = qwen_processor
    config = attrs.evolve(config, preprocess=preprocess)
    out, err = works_or_typed_error(
        lambda: vlmcap.make_model_inputs(videos, config, processor, prompt)
    )
    if err is None:
        assert len(out) == len(videos)
        assert all(inp["prompt_token_ids"] for inp in out)


def _model_inputs() -> st.SearchStrategy[Any]:
    ok = st.builds(
        lambda i: {"prompt": f"clip {i}", "multi_modal_data": {"video": ONE_FRAME}},
        st.integers(0, 9),
    )
    with_md = st.builds(
        lambda md: {"prompt": "clip", "multi_modal_data": {"video": (torch.zeros(2, 3, 4, 4), md)}},
        st.one_of(
            st.just(vlmcap.VideoMetadata.uniform(2, 2.0).to_vllm()),
            st.dictionaries(st.sampled_from(("fps", "total_num_frames", "x")), numbers()),
        ),
    )
    bad = st.one_of(
        st.just({"multi_modal_data": {"video": None}}),  # no prompt: rejected by the engine
        st.just({"prompt": "x", "multi_modal_data": {"images": None}}),  # unknown modality
        junk(),
    )
    return st.lists(st.one_of(ok, ok, with_md, bad), max_size=6)


@FUZZ
@given(
    model_inputs=st.one_of(_model_inputs(), junk()),
    stage2=st.one_of(
        st.none(), st.lists(st.one_of(st.none(), prompts_or_junk()), max_size=6), junk()
    ),
    max_inflight=st.one_of(st.integers(-2, 4), junk()),
    inflight_batching=st.booleans(),
    die_after=st.one_of(st.none(), st.integers(0, 3)),
    max_retries=st.integers(0, 2),
)
def test_caption_results_on_the_fake_engine(
    model_inputs: Any,
    stage2: Any,
    max_inflight: Any,
    inflight_batching: bool,
    die_after: int | None,
    max_retries: int,
) -> None:
    import attrs

    config = attrs.evolve(ECHO, max_retries=max_retries)
    out, err = works_or_typed_error(
        lambda: vlmcap.caption_results(
            model_inputs,
            FakeEngine(die_after=die_after),
            None,
            None,
            config,
            max_inflight,
            inflight_batching=inflight_batching,
            stage2_prompts=stage2,
            rebuild=FakeEngine,
        )
    )
    if err is None:
        assert len(out) == len(model_inputs)
        assert all(isinstance(r, vlmcap.CaptionResult) for r in out)
        assert all(r.ok == (r.error is None) for r in out)
