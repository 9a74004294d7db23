"""The plugin conformance suite: named checks, a runner and a pytest decorator.

Three layers, as scikit-learn's ``check_estimator``:

- :func:`plugin_checks` yields :class:`Check` objects, one per contract rule
  (``contracts/README.md``); ``check(plugin)`` raises :class:`ContractViolation` naming the rule.
- :func:`check_plugin` runs them all and returns a :class:`ConformanceReport` with every
  failure (it never stops at the first).
- :func:`parametrize_with_checks` turns them into pytest parameters (pytest is imported only
  there; the checks themselves never import pytest).

Behavioural rules are properties: each check runs the plugin on ``max_examples`` inputs drawn by
Hypothesis (:mod:`vlmcap.testing.strategies`), derandomized so that a run is reproducible, and
reports the smallest failing input it finds.

**The processor.** Token-id plugins need their real processor. The checks load it through the
plugin's own ``processor()`` inside ``vlmcap.using_model_path(variant, model_path)``, so a
plugin that calls the inherited ``cls.model_path()`` finds ``model_path``. When no
``model_path`` is given, the checks use vlmcap's tiny checkpoint for the plugin's variant if
:func:`vlmcap.testing.tiny_variants` has one, else the tiny Qwen2.5-VL checkpoint
(``tiny_checkpoint("qwen")``): most video VLMs take a Qwen-like processor and chat template.

**Independence.** A check that needs something another rule guarantees (a method with the
right signature, a loadable processor, a call that returns) does not fail when that is
missing: it is skipped (:class:`CheckSkipped`), so each broken rule is reported once.
"""

import contextlib
import copy
import gc
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import numpy as np
import torch

from vlmcap._contract import (
    VISUAL,
    Video,
    as_tensor,
    attach_video_metadata,
    image_problem,
    is_pil_image,
    layout_hint,
    limit_problem,
    llm_input_violation,
    modality_problem,
    placeholder_problem,
    prompt_problem,
    video_problem,
    vocab_size_of,
)
from vlmcap._errors import VlmcapError
from vlmcap._plugin import (
    REQUIRED_METHODS,
    call_make_llm_input,
    call_model,
    call_processor,
    frame_dtypes,
    plugin_label,
    signature_problem,
    structure_problem,
)
from vlmcap._records import VideoMetadata, VllmCaptionRequest, VllmConfig
from vlmcap._vllm_compat import LLM as VLMCAP_LLM, capture_llm_kwargs, declared_limits
from vlmcap.testing._report import (
    CheckSkipped,
    ConformanceReport,
    ContractFailure,
    ContractViolation,
    SkippedCheck,
)


DEFAULT_MAX_EXAMPLES = 20
"""Inputs drawn per property check."""

REFINE_REPEATS = 4
"""How many times C-REFINE-003 refines the same request to look for repeated ids."""

_PIXEL_TOLERANCE = 1.0 / 255.0 + 1e-3


def _optional_path(value: Path | str | None) -> Path | None:
    return None if value is None else Path(value)


@attrs.frozen
class CheckOptions:
    """What every check of one run shares."""

    model_path: Path | None = attrs.field(default=None, converter=_optional_path)
    """Checkpoint folder for ``processor()``; ``None``: a tiny checkpoint (module docstring)."""
    max_examples: int = DEFAULT_MAX_EXAMPLES
    """Hypothesis examples per property."""


CheckFunc = Callable[[Any, CheckOptions], None]
_TestFunc = TypeVar("_TestFunc", bound=Callable[..., object])

_BROKEN: dict[tuple[str, Any, CheckOptions], bool] = {}
"""(rule, plugin, options) -> whether that rule's check failed; filled as checks run."""
_BROKEN_SIZE = 512


@attrs.frozen
class Check:
    """One named check, bound to its options: call ``check(plugin)``.

    Raises :class:`ContractViolation` when the plugin breaks ``contract_id``,
    :class:`CheckSkipped` when the check does not apply: a rule in ``requires`` failed (the
    message says which), so the broken rule is reported once, not again as a false failure here.
    """

    name: str
    contract_id: str
    func: CheckFunc = attrs.field(repr=False)
    options: CheckOptions = attrs.field(factory=CheckOptions, repr=False)
    requires: tuple[str, ...] = ()
    """Rules this check needs kept; each is checked first (once per plugin and options)."""

    def __call__(self, plugin: Any) -> None:
        """Run the check on ``plugin``."""
        for rule in self.requires:
            if _rule_broken(rule, plugin, self.options):
                raise CheckSkipped(f"skipped because {rule} failed")
        try:
            self.func(plugin, self.options)
        except ContractViolation:
            _remember(self.contract_id, plugin, self.options, broken=True)
            raise
        except CheckSkipped:
            raise
        except Exception:
            _remember(self.contract_id, plugin, self.options, broken=True)
            raise
        _remember(self.contract_id, plugin, self.options, broken=False)

    def __str__(self) -> str:
        return self.name


def _remember(rule: str, plugin: Any, options: CheckOptions, *, broken: bool) -> None:
    if len(_BROKEN) >= _BROKEN_SIZE:
        _BROKEN.pop(next(iter(_BROKEN)))
    _BROKEN[(rule, plugin, options)] = broken


def _rule_broken(rule: str, plugin: Any, options: CheckOptions) -> bool:
    """Whether ``rule``'s check fails for ``plugin`` (run now unless already known)."""
    key = (rule, plugin, options)
    if key not in _BROKEN:
        check = next(c for c in _yield_checks(options, engine=True) if c.contract_id == rule)
        with contextlib.suppress(ContractViolation, CheckSkipped, Exception):
            check(plugin)
    return _BROKEN.get(key, False)


def _check(contract_id: str) -> Callable[[CheckFunc], CheckFunc]:
    """Mark ``func`` as the check of ``contract_id`` (listed in :func:`_yield_checks`)."""

    def mark(func: CheckFunc) -> CheckFunc:
        func.contract_id = contract_id  # type: ignore[attr-defined]
        return func

    return mark


# ---------------------------------------------------------------------------------------------
# Helpers: plugin structure, processor, calls
# ---------------------------------------------------------------------------------------------


plugin_name = plugin_label
"""``module:Class`` of a plugin class (or the repr of anything else)."""


def load_plugin(spec: str) -> Any:
    """The plugin named by ``"pkg.module:Class"``, or the registered plugin of a variant name.

    Raises:
        PluginError: the module cannot be imported or lacks the attribute.
        UnknownVariantError: a bare name that no plugin provides.
    """
    from vlmcap._registry import get_plugin, load_object

    return load_object(spec) if ":" in spec else get_plugin(spec)


def default_model_path(variant: str) -> Path:
    """The tiny checkpoint used when no model path is given (see the module docstring)."""
    from vlmcap.testing._tiny import tiny_checkpoint, tiny_variants

    return tiny_checkpoint(variant if variant in tiny_variants() else "qwen")


_SIGNATURE_IDS = {
    "model_variant": "C-STRUCT-002",
    "processor": "C-STRUCT-003",
    "model": "C-STRUCT-004",
    "make_llm_input": "C-STRUCT-005",
    "make_refined_llm_request": "C-STRUCT-006",
    "decode": "C-STRUCT-007",
}


def _method(plugin: Any, name: str) -> Callable[..., Any]:
    """``plugin.<name>`` if it keeps C-STRUCT-001 and its signature rule, else skip."""
    if structure_problem(plugin, name) is not None:
        raise CheckSkipped(f"skipped because C-STRUCT-001 failed ({name}())")
    if signature_problem(plugin, name) is not None:
        raise CheckSkipped(f"skipped because {_SIGNATURE_IDS[name]} failed ({name}())")
    method: Callable[..., Any] = getattr(plugin, name)
    return method


def _variant(plugin: Any) -> str:
    fn = _method(plugin, "model_variant")
    try:
        variant = fn()
    except Exception as exc:
        raise CheckSkipped("skipped because C-STRUCT-002 failed (model_variant() raised)") from exc
    if not isinstance(variant, str):
        raise CheckSkipped("skipped because C-STRUCT-002 failed (model_variant() is no str)")
    return variant


def _model_path(options: CheckOptions, variant: str) -> Path:
    return options.model_path if options.model_path is not None else default_model_path(variant)


@attrs.frozen
class Checkpoint:
    """The checkpoint a run of the checks loads: where, which architecture, and whose."""

    path: Path
    architecture: str
    own: bool
    """True when it is the plugin's own (``model_path`` given, or a tiny recipe of its variant);
    False for the tiny Qwen2.5-VL stand-in, whose processor serves the static checks only."""

    def describe(self) -> str:
        """One line for reports."""
        whose = "the plugin's own" if self.own else "a stand-in: tiny Qwen2.5-VL, not its model"
        return f"checkpoint {self.path} ({self.architecture}; {whose})"


def checkpoint_for(plugin: Any, model_path: Path | str | None = None) -> Checkpoint | None:
    """The checkpoint the checks of ``plugin`` load (``None`` if its variant is unreadable)."""
    from vlmcap.testing._tiny import tiny_variants

    try:
        variant = _variant(plugin)
    except CheckSkipped:
        return None
    options = CheckOptions(model_path=model_path)
    path = _model_path(options, variant)
    own = model_path is not None or variant in tiny_variants()
    return Checkpoint(path, _architecture(path), own)


def _config(variant: str, options: CheckOptions) -> VllmConfig:
    return VllmConfig(model_variant=variant, model_path=_model_path(options, variant))


_PROCESSORS: dict[tuple[Any, str], tuple[Any, BaseException | None]] = {}
_PROCESSOR_CACHE_SIZE = 32


def _load_processor(plugin: Any, options: CheckOptions) -> Any:
    """The plugin's processor, loaded once per (plugin, path); re-raises a failed load."""
    variant = _variant(plugin)
    config = _config(variant, options)
    key = (plugin, str(config.model_path))
    if key not in _PROCESSORS:
        if len(_PROCESSORS) >= _PROCESSOR_CACHE_SIZE:
            _PROCESSORS.pop(next(iter(_PROCESSORS)))
        _method(plugin, "processor")
        try:
            _PROCESSORS[key] = (call_processor(plugin, config), None)
        except Exception as exc:  # noqa: BLE001 - a plugin may raise anything; it is reported
            _PROCESSORS[key] = (None, exc)
    processor, error = _PROCESSORS[key]
    if error is not None:
        raise error
    return processor


def _tokenizer(processor: Any) -> Any:
    return getattr(processor, "tokenizer", None) or processor


def _processor(plugin: Any, options: CheckOptions) -> Any:
    """The processor for behavioural checks, or skip (C-STRUCT-008 reports the problem)."""
    try:
        processor = _load_processor(plugin, options)
    except CheckSkipped:
        raise
    except Exception as exc:
        raise CheckSkipped(
            "skipped because C-STRUCT-008 failed (processor() does not load)"
        ) from exc
    if processor is None or not callable(getattr(_tokenizer(processor), "decode", None)):
        raise CheckSkipped("skipped because C-STRUCT-008 failed (processor() has no tokenizer)")
    return processor


def _metadata(frames: torch.Tensor) -> VideoMetadata:
    return VideoMetadata.uniform(
        int(frames.shape[0]), 2.0, width=int(frames.shape[3]), height=int(frames.shape[2])
    )


@attrs.frozen
class _Plugin:
    """A plugin with what the behavioural checks need, resolved once per check."""

    plugin: Any
    variant: str
    processor: Any
    options: CheckOptions

    @classmethod
    def resolve(cls, plugin: Any, options: CheckOptions, method: str) -> "_Plugin":
        """Resolve ``plugin``, or skip when ``method``, the variant or the processor is broken."""
        _method(plugin, method)
        variant = _variant(plugin)
        return cls(plugin, variant, _processor(plugin, options), options)

    @property
    def tokenizer(self) -> Any:
        return _tokenizer(self.processor)

    @property
    def vocab_size(self) -> int | None:
        return vocab_size_of(self.processor)

    def make_llm_input(self, prompt: str, frames: torch.Tensor) -> Any:
        """Call ``make_llm_input`` exactly as vlmcap does, in the plugin's own form."""
        _method(self.plugin, "make_llm_input")
        return call_make_llm_input(
            self.plugin,
            prompt,
            frames,
            self.processor,
            metadata=_metadata(frames),
            config=_config(self.variant, self.options),
        )

    def try_make_llm_input(self, prompt: str, frames: torch.Tensor) -> dict[str, Any] | None:
        """``make_llm_input``'s dict; ``None`` if it raises or returns no dict (C-INPUT-001)."""
        try:
            out = self.make_llm_input(prompt, frames)
        except CheckSkipped:
            raise
        except Exception:  # noqa: BLE001 - a plugin may raise anything; it is reported
            return None
        return out if isinstance(out, dict) else None

    def refine(self, request: VllmCaptionRequest, refine_prompt: str | None) -> Any:
        """Call ``make_refined_llm_request`` as vlmcap's stage 2 does (three positionals)."""
        fn = _method(self.plugin, "make_refined_llm_request")
        return fn(request, self.processor, refine_prompt)

    def try_refine(
        self, request: VllmCaptionRequest, refine_prompt: str | None
    ) -> VllmCaptionRequest | None:
        """The stage-2 request, or ``None`` when the call fails (C-REFINE-001 reports it)."""
        try:
            out = self.refine(request, refine_prompt)
        except CheckSkipped:
            raise
        except Exception:  # noqa: BLE001 - a plugin may raise anything; it is reported
            return None
        return out if isinstance(out, VllmCaptionRequest) else None

    def stage1(
        self,
        frames: torch.Tensor,
        prompt: str,
        caption: str | None,
        refine_prompt: str | None,
        request_id: str,
    ) -> VllmCaptionRequest:
        """The stage-1 request vlmcap builds: the plugin's own inputs, video metadata attached.

        The C-REFINE checks run only when C-INPUT-001..004 pass (:func:`plugin_checks`); an
        example whose stage-1 inputs are still invalid skips the check rather than inventing
        other inputs, which could make a good refinement fail (a false failure).
        """
        out = self.try_make_llm_input(prompt, frames)
        violation = llm_input_violation(out, self.vocab_size)
        if out is None or violation is not None:
            rule = violation.rule_id if violation is not None else "C-INPUT-001"
            raise CheckSkipped(
                f"skipped because {rule} failed (make_llm_input on {_describe_frames(frames)})"
            )
        inputs = attach_video_metadata(out, _metadata(frames))
        return VllmCaptionRequest(
            request_id=request_id, inputs=inputs, caption=caption, stage2_prompt=refine_prompt
        )


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    try:
        text = tokenizer.decode(
            list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
    except TypeError:
        text = tokenizer.decode(list(ids))
    return str(text)


def _for_all(options: CheckOptions, strategy: Any, body: Callable[[Any], None]) -> None:
    """Run ``body`` on ``options.max_examples`` values of ``strategy``; raise the smallest failure.

    Derandomized (a run is reproducible) and without an example database (nothing is written to
    the working directory).
    """
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings

    @settings(
        max_examples=options.max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        # No explain phase: it reruns the plugin hundreds of times to annotate the example.
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
    )
    @given(strategy)
    def run(value: Any) -> None:
        body(value)

    run()


def _describe_frames(frames: torch.Tensor) -> str:
    return f"frames of shape {tuple(frames.shape)} {str(frames.dtype).removeprefix('torch.')}"


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _tail(text: str, limit: int = 160) -> str:
    """The end of a long prompt, where the prompt text and caption go."""
    return repr(text if len(text) <= limit else "..." + text[3 - limit :])


def _squash(text: str) -> str:
    return "".join(text.split())


# ---------------------------------------------------------------------------------------------
# Checks that need the original frames (the rest of each rule is vlmcap._contract's validator)
# ---------------------------------------------------------------------------------------------


def _prompt_text(inputs: Mapping[str, Any], tokenizer: Any) -> str | None:
    """The prompt as text (decoded token ids, or ``prompt``), or ``None`` if malformed."""
    if prompt_problem(inputs, vocab_size_of(tokenizer)) is not None:
        return None
    if "prompt_token_ids" in inputs:
        return _decode(tokenizer, inputs["prompt_token_ids"])
    return str(inputs["prompt"])


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _video_layout_problem(value: Any, original: torch.Tensor, frames_obj: Any) -> str | None:  # noqa: PLR0911 - one return per case reads best
    """C-INPUT-004: :func:`vlmcap._contract.video_problem`, then the pixels against the input."""
    problem = video_problem(value)
    if problem is not None:
        return problem
    video = Video.parse(value)
    assert video is not None  # video_problem parsed it
    if video.frames is frames_obj:
        return None
    t = int(original.shape[0])
    if isinstance(video.frames, list):
        if len(video.frames) != t:
            return f"the video is a list of {len(video.frames)} items for {t} input frames"
        return None
    tensor = video.tensor()
    assert tensor is not None  # video_problem checked it
    shape = tuple(int(s) for s in tensor.shape)
    if shape[1] != 3 and shape[3] == 3:  # channels-last, as vLLM also takes numpy videos
        tensor = tensor.permute(0, 3, 1, 2)
    if int(tensor.shape[0]) != t:
        return (
            f"multi_modal_data['video'] has shape {shape} for input frames of shape "
            f"{tuple(original.shape)}: {int(tensor.shape[0])} frames, not {t} "
            f"({layout_hint(shape, t)}; plugin guide, common bug 5)"
        )
    if tuple(tensor.shape[2:]) == tuple(original.shape[2:]) and not torch.allclose(
        _unit(tensor), _unit(original), atol=_PIXEL_TOLERANCE, rtol=0.0
    ):
        return (
            f"multi_modal_data['video'] has the input's shape {shape} but other pixels: the "
            "frames were reordered or altered (a transpose or permute followed by a reshape?)"
        )
    return None


def _image_layout_problem(images: Any, original: torch.Tensor) -> str | None:
    return image_problem(images, max_images=int(original.shape[0]))


def _snapshot(obj: Any) -> Any:  # noqa: PLR0911 - one return per case reads best
    """A deep copy for before/after comparison (tensors cloned)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, Mapping):
        return {k: _snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_snapshot(v) for v in obj)
    try:
        return copy.deepcopy(obj)
    except Exception:  # noqa: BLE001 - a plugin may raise anything; it is reported
        return obj


def _difference(before: Any, after: Any, path: str) -> str | None:  # noqa: C901, PLR0911, PLR0912 - one branch per container type
    """Where ``after`` differs from the snapshot ``before``, or ``None``."""
    if isinstance(before, torch.Tensor):
        if not isinstance(after, torch.Tensor):
            return f"{path} was replaced by a {type(after).__name__}"
        if before.shape != after.shape or before.dtype != after.dtype:
            return (
                f"{path} changed from {tuple(before.shape)} {before.dtype} "
                f"to {tuple(after.shape)} {after.dtype}"
            )
        if not torch.equal(before, after.detach().to(before.device)):
            return f"{path} had its values changed in place"
        return None
    if isinstance(before, np.ndarray):
        if not isinstance(after, np.ndarray) or not np.array_equal(before, after):
            return f"{path} was changed"
        return None
    if isinstance(before, dict):
        if not isinstance(after, Mapping):
            return f"{path} was replaced by a {type(after).__name__}"
        if set(before) != set(after):
            added = sorted(map(str, set(after) - set(before)))
            removed = sorted(map(str, set(before) - set(after)))
            return f"{path} changed keys (added {added}, removed {removed})"
        for k in before:
            diff = _difference(before[k], after[k], f"{path}[{k!r}]")
            if diff:
                return diff
        return None
    if isinstance(before, list | tuple):
        if type(after) is not type(before) or len(after) != len(before):
            return f"{path} was changed (length or type)"
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            diff = _difference(b, a, f"{path}[{i}]")
            if diff:
                return diff
        return None
    try:
        same = bool(before == after)
    except Exception:  # noqa: BLE001 - a plugin may raise anything; it is reported
        same = before is after
    return None if same else f"{path} changed from {before!r:.60} to {after!r:.60}"


def _same_video(before: Any, after: Any) -> bool:
    if before is after:
        return True
    b, a = Video.parse(before), Video.parse(after)
    if b is None or a is None:
        return b is a and bool(before == after) if not isinstance(before, list) else False
    if b.frames is a.frames:
        return True
    bt, at = b.tensor(), a.tensor()
    if bt is not None and at is not None:
        return bt.shape == at.shape and bt.dtype == at.dtype and torch.equal(bt, at)
    if isinstance(b.frames, list) and isinstance(a.frames, list) and len(a.frames) == len(b.frames):
        return all(x is y or _same_item(x, y) for x, y in zip(b.frames, a.frames, strict=True))
    return False


def _same_item(x: Any, y: Any) -> bool:
    xt, yt = as_tensor(x), as_tensor(y)
    if xt is not None and yt is not None:
        return xt.shape == yt.shape and torch.equal(xt, yt)
    return bool(x == y) if is_pil_image(x) else False


# ---------------------------------------------------------------------------------------------
# C-STRUCT: structure and signatures
# ---------------------------------------------------------------------------------------------


@_check("C-STRUCT-001")
def check_methods_implemented(plugin: Any, options: CheckOptions) -> None:  # noqa: ARG001 - every check takes (plugin, options)
    """C-STRUCT-001: a class implementing the six required methods as static/class methods."""
    problems = [p for name in REQUIRED_METHODS if (p := structure_problem(plugin, name))]
    if not isinstance(plugin, type):
        problems = problems[:1]
    if problems:
        raise ContractViolation("C-STRUCT-001", "; ".join(problems))


@_check("C-STRUCT-002")
def check_model_variant(plugin: Any, options: CheckOptions) -> None:  # noqa: ARG001 - every check takes (plugin, options)
    """C-STRUCT-002: ``model_variant()`` returns the same non-empty str every time."""
    if structure_problem(plugin, "model_variant") is not None:
        raise CheckSkipped("skipped because C-STRUCT-001 failed (model_variant())")
    problem = signature_problem(plugin, "model_variant")
    if problem is not None:
        raise ContractViolation("C-STRUCT-002", problem)
    try:
        first, second = plugin.model_variant(), plugin.model_variant()
    except Exception as exc:
        raise ContractViolation(
            "C-STRUCT-002", f"model_variant() raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(first, str):
        raise ContractViolation(
            "C-STRUCT-002",
            f"model_variant() returned {type(first).__name__} {first!r}; return a str",
        )
    if not first.strip() or first != first.strip():
        raise ContractViolation(
            "C-STRUCT-002",
            f"model_variant() returned {first!r}; return a non-empty name without surrounding "
            "whitespace, such as 'videollama'",
        )
    if first != second:
        raise ContractViolation(
            "C-STRUCT-002",
            f"model_variant() returned {first!r}, then {second!r}; it must be constant",
        )


def _signature_check(plugin: Any, name: str) -> None:
    if structure_problem(plugin, name) is not None:
        raise CheckSkipped(f"skipped because C-STRUCT-001 failed ({name}())")
    problem = signature_problem(plugin, name)
    if problem is not None:
        raise ContractViolation(_SIGNATURE_IDS[name], problem)


@_check("C-STRUCT-003")
def check_processor_signature(plugin: Any, options: CheckOptions) -> None:  # noqa: ARG001 - every check takes (plugin, options)
    """C-STRUCT-003: ``processor()`` takes no argument (or an optional first ``config``)."""
    _signature_check(plugin, "processor")


@_check("C-STRUCT-004")
def check_model_signature(plugin: Any, options: CheckOptions) -> None:  # noqa: ARG001 - every check takes (plugin, options)
    """C-STRUCT-004: ``model(config)``."""
    _signature_check(plugin, "model")


@_check("C-STRUCT-005")
def check_make_llm_input_signature(plugin: Any, options: CheckOptions) -> None:  # noqa: ARG001 - every check takes (plugin, options)
    """C-STRUCT-005: ``make_llm_input(prompt, frames, processor, *, optional extras)``."""
    _signature_check(plugin, "make_llm_input")


@_check("C-STRUCT-006")
def check_make_refined_llm_request_signature(plugin: Any, options: CheckOptions) -> None:  # noqa: ARG001 - every check takes (plugin, options)
    """C-STRUCT-006: ``make_refined_llm_request(request, processor, refine_prompt=None)``."""
    _signature_check(plugin, "make_refined_llm_request")


@_check("C-STRUCT-007")
def check_decode_signature(plugin: Any, options: CheckOptions) -> None:  # noqa: ARG001 - every check takes (plugin, options)
    """C-STRUCT-007: ``decode(vllm_output)``."""
    _signature_check(plugin, "decode")


@_check("C-STRUCT-008")
def check_processor_loads(plugin: Any, options: CheckOptions) -> None:
    """C-STRUCT-008: ``processor()`` loads under ``using_model_path`` and has a tokenizer."""
    variant = _variant(plugin)
    path = _model_path(options, variant)
    try:
        processor = _load_processor(plugin, options)
    except CheckSkipped:
        raise
    except Exception as exc:
        raise ContractViolation(
            "C-STRUCT-008",
            f"processor() raised {type(exc).__name__}: {exc} (model path {path}); load it from "
            "cls.model_path(), which vlmcap points at the checkpoint folder",
        ) from exc
    if processor is None:
        raise ContractViolation("C-STRUCT-008", "processor() returned None")
    tokenizer = _tokenizer(processor)
    if not callable(getattr(tokenizer, "decode", None)):
        raise ContractViolation(
            "C-STRUCT-008",
            f"processor() returned a {type(processor).__name__} with no tokenizer "
            "(no .tokenizer and no .decode); return the Hugging Face processor or tokenizer",
        )


# ---------------------------------------------------------------------------------------------
# C-INPUT: make_llm_input
# ---------------------------------------------------------------------------------------------


def _input_cases(plugin: Any) -> Any:
    """Frames of every dtype vlmcap sends this plugin (:func:`vlmcap.frame_dtypes`), prompts."""
    from hypothesis import strategies as st

    from vlmcap.testing import strategies as vst

    return st.tuples(vst.frames(dtypes=frame_dtypes(plugin)), vst.prompts())


@_check("C-INPUT-001")
def check_input_accepts_valid_frames(plugin: Any, options: CheckOptions) -> None:
    """C-INPUT-001: ``make_llm_input`` returns a dict for every valid frames tensor and prompt."""
    p = _Plugin.resolve(plugin, options, "make_llm_input")

    def body(case: tuple[torch.Tensor, str]) -> None:
        frames, prompt = case
        try:
            out = p.make_llm_input(prompt, frames)
        except CheckSkipped:
            raise
        except Exception as exc:
            raise ContractViolation(
                "C-INPUT-001",
                f"make_llm_input raised {type(exc).__name__}: {exc} for {_describe_frames(frames)} "
                f"and prompt {_short(prompt)}; accept (T, 3, H, W) uint8 in [0, 255] and float in "
                "[0, 1] frames of any size",
            ) from exc
        if not isinstance(out, dict):
            raise ContractViolation(
                "C-INPUT-001",
                f"make_llm_input returned a {type(out).__name__} for {_describe_frames(frames)}; "
                "return a dict with prompt_token_ids (or prompt) and multi_modal_data",
            )

    _for_all(options, _input_cases(plugin), body)


@_check("C-INPUT-002")
def check_input_has_prompt(plugin: Any, options: CheckOptions) -> None:
    """C-INPUT-002: the inputs hold a valid prompt and a ``multi_modal_data`` dict."""
    p = _Plugin.resolve(plugin, options, "make_llm_input")

    def body(case: tuple[torch.Tensor, str]) -> None:
        frames, prompt = case
        out = p.try_make_llm_input(prompt, frames)
        if out is None:
            return
        problem = prompt_problem(out, p.vocab_size)
        if problem is not None:
            raise ContractViolation(
                "C-INPUT-002", f"make_llm_input for {_describe_frames(frames)}: {problem}"
            )

    _for_all(options, _input_cases(plugin), body)


@_check("C-INPUT-003")
def check_input_modality_keys(plugin: Any, options: CheckOptions) -> None:
    """C-INPUT-003: ``multi_modal_data`` keys are vLLM's (``video``/``image``; seed bug 2)."""
    p = _Plugin.resolve(plugin, options, "make_llm_input")

    def body(case: tuple[torch.Tensor, str]) -> None:
        frames, prompt = case
        out = p.try_make_llm_input(prompt, frames)
        if out is None or not isinstance(out.get("multi_modal_data"), Mapping):
            return
        problem = modality_problem(out["multi_modal_data"])
        if problem is not None:
            raise ContractViolation(
                "C-INPUT-003", f"make_llm_input: {problem} (plugin guide, common bug 2)"
            )

    _for_all(options, _input_cases(plugin), body)


@_check("C-INPUT-004")
def check_input_frame_layout(plugin: Any, options: CheckOptions) -> None:
    """C-INPUT-004: the video is the input frames or a same-layout derivative (common bug 5)."""
    p = _Plugin.resolve(plugin, options, "make_llm_input")

    def body(case: tuple[torch.Tensor, str]) -> None:
        frames, prompt = case
        original = frames.clone()
        out = p.try_make_llm_input(prompt, frames)
        if out is None or not isinstance(out.get("multi_modal_data"), Mapping):
            return
        mm = out["multi_modal_data"]
        problem = None
        if "video" in mm:
            problem = _video_layout_problem(mm["video"], original, frames)
        if problem is None and "image" in mm:
            problem = _image_layout_problem(mm["image"], original)
        if problem is not None:
            raise ContractViolation(
                "C-INPUT-004", f"make_llm_input for {_describe_frames(original)}: {problem}"
            )

    _for_all(options, _input_cases(plugin), body)


@_check("C-INPUT-005")
def check_input_includes_prompt(plugin: Any, options: CheckOptions) -> None:
    """C-INPUT-005: the decoded prompt of the inputs contains the prompt text."""
    p = _Plugin.resolve(plugin, options, "make_llm_input")

    def body(case: tuple[torch.Tensor, str]) -> None:
        frames, prompt = case
        out = p.try_make_llm_input(prompt, frames)
        if out is None:
            return
        text = _prompt_text(out, p.tokenizer)
        if text is not None and _squash(prompt) not in _squash(text):
            raise ContractViolation(
                "C-INPUT-005",
                f"the prompt {_short(prompt)} is not in the model's prompt {_tail(text)}; "
                "put the prompt argument into the chat message",
            )

    _for_all(options, _input_cases(plugin), body)


@_check("C-INPUT-006")
def check_input_leaves_frames_unchanged(plugin: Any, options: CheckOptions) -> None:
    """C-INPUT-006: ``make_llm_input`` does not modify the frames in place."""
    p = _Plugin.resolve(plugin, options, "make_llm_input")

    def body(case: tuple[torch.Tensor, str]) -> None:
        frames, prompt = case
        before = frames.clone()
        p.try_make_llm_input(prompt, frames)
        diff = _difference(before, frames, "frames")
        if diff is not None:
            raise ContractViolation(
                "C-INPUT-006",
                f"make_llm_input changed its input: {diff} (for {_describe_frames(before)}); "
                "work on a copy (frames.float() / 255, not frames.div_(255))",
            )

    _for_all(options, _input_cases(plugin), body)


def _declared_limits(plugin: Any, options: CheckOptions, variant: str) -> dict[str, Any] | None:
    """The plugin's ``limit_mm_per_prompt``, read from its own ``model(config)`` without an engine.

    ``None`` when it cannot be read that way: ``model()`` is broken (C-STRUCT-004 and C-ENGINE
    report that), or the plugin builds ``vllm.LLM`` itself, which would start a real engine.
    """
    module = sys.modules.get(getattr(plugin, "__module__", ""), None)
    if getattr(module, "LLM", VLMCAP_LLM) is not VLMCAP_LLM:
        return None
    with capture_llm_kwargs() as calls:
        try:
            call_model(plugin, _config(variant, options))
        except Exception:  # noqa: BLE001 - a plugin may raise anything; other rules report it
            return None
    return declared_limits(calls)


@_check("C-INPUT-007")
def check_input_placeholders_and_limits(plugin: Any, options: CheckOptions) -> None:
    """C-INPUT-007: one placeholder per item; items within the plugin's own limits (no engine)."""
    p = _Plugin.resolve(plugin, options, "make_llm_input")
    limits = _declared_limits(plugin, options, p.variant)

    def body(case: tuple[torch.Tensor, str]) -> None:
        frames, prompt = case
        out = p.try_make_llm_input(prompt, frames)
        if out is None or llm_input_violation(out, p.vocab_size) is not None:
            return  # C-INPUT-001..004 report it
        problem = placeholder_problem(out, p.processor)
        if problem is None and limits is not None:
            problem = limit_problem(out["multi_modal_data"], limits)
        if problem is not None:
            raise ContractViolation(
                "C-INPUT-007", f"make_llm_input for {_describe_frames(frames)}: {problem}"
            )

    _for_all(options, _input_cases(plugin), body)


# ---------------------------------------------------------------------------------------------
# C-REFINE: make_refined_llm_request
# ---------------------------------------------------------------------------------------------


@attrs.frozen
class _RefineCase:
    frames: torch.Tensor
    prompt: str
    caption: str
    refine_prompt: str | None
    request_id: str

    def request(self, p: _Plugin, caption: str | None = None) -> VllmCaptionRequest:
        return p.stage1(
            self.frames,
            self.prompt,
            self.caption if caption is None else caption,
            self.refine_prompt,
            self.request_id,
        )

    def describe(self) -> str:
        rp = "None" if self.refine_prompt is None else _short(self.refine_prompt)
        return (
            f"stage-1 request {self.request_id!r} with caption {_short(self.caption)}, "
            f"refine_prompt {rp}, {_describe_frames(self.frames)}"
        )


def _refine_cases(plugin: Any, *, refine_prompt: str = "maybe") -> Any:
    from hypothesis import strategies as st

    from vlmcap.testing import strategies as vst

    prompts = {"maybe": st.none() | vst.prompts(), "always": vst.prompts()}[refine_prompt]
    return st.builds(
        _RefineCase,
        vst.frames(dtypes=frame_dtypes(plugin)),
        vst.prompts(),
        vst.captions(),
        prompts,
        vst.request_ids(),
    )


@_check("C-REFINE-001")
def check_refine_returns_request(plugin: Any, options: CheckOptions) -> None:
    """C-REFINE-001: a ``VllmCaptionRequest`` for every stage-1 request with a caption."""
    p = _Plugin.resolve(plugin, options, "make_refined_llm_request")

    def body(case: _RefineCase) -> None:
        request = case.request(p)
        try:
            out = p.refine(request, case.refine_prompt)
        except CheckSkipped:
            raise
        except Exception as exc:
            raise ContractViolation(
                "C-REFINE-001",
                f"make_refined_llm_request raised {type(exc).__name__}: {exc} for "
                f"{case.describe()}",
            ) from exc
        if not isinstance(out, VllmCaptionRequest):
            raise ContractViolation(
                "C-REFINE-001",
                f"make_refined_llm_request returned a {type(out).__name__}; return "
                "vlmcap.VllmCaptionRequest(request_id=..., inputs=...)",
            )

    _for_all(options, _refine_cases(plugin), body)


@_check("C-REFINE-002")
def check_refine_resets_caption(plugin: Any, options: CheckOptions) -> None:
    """C-REFINE-002: the stage-2 request has ``caption``, ``stage2_prompt`` None (common bug 1)."""
    p = _Plugin.resolve(plugin, options, "make_refined_llm_request")

    def body(case: _RefineCase) -> None:
        out = p.try_refine(case.request(p), case.refine_prompt)
        if out is None:
            return
        kept = [
            f"{field}={getattr(out, field)!r:.60}"
            for field in ("caption", "stage2_prompt")
            if getattr(out, field) is not None
        ]
        if kept:
            raise ContractViolation(
                "C-REFINE-002",
                f"the stage-2 request keeps {', '.join(kept)}; build it with only request_id and "
                "inputs so both stay None (plugin guide, common bug 1)",
            )

    _for_all(options, _refine_cases(plugin), body)


@_check("C-REFINE-003")
def check_refine_new_request_id(plugin: Any, options: CheckOptions) -> None:
    """C-REFINE-003: a fresh, unique ``request_id`` on every refinement."""
    p = _Plugin.resolve(plugin, options, "make_refined_llm_request")

    def body(case: _RefineCase) -> None:
        request = case.request(p)
        ids: list[object] = []
        for _ in range(REFINE_REPEATS):
            out = p.try_refine(request, case.refine_prompt)
            if out is None:
                return
            rid: object = out.request_id
            ids.append(rid)
        for rid in ids:
            if not isinstance(rid, str) or not rid:
                raise ContractViolation(
                    "C-REFINE-003", f"the stage-2 request_id is {rid!r}; use a non-empty str"
                )
            if rid == request.request_id:
                raise ContractViolation(
                    "C-REFINE-003",
                    f"the stage-2 request reuses the stage-1 id {rid!r}; make a new one, e.g. "
                    "secrets.token_hex(8)",
                )
        if len(set(ids)) != len(ids):
            raise ContractViolation(
                "C-REFINE-003",
                f"refining the same request {REFINE_REPEATS} times gave repeated ids {ids}; make "
                "each id unique, e.g. secrets.token_hex(8)",
            )

    _for_all(options, _refine_cases(plugin), body)


@_check("C-REFINE-004")
def check_refine_reuses_frames(plugin: Any, options: CheckOptions) -> None:
    """C-REFINE-004: stage 2 reuses the stage-1 video object (common bug 3)."""
    p = _Plugin.resolve(plugin, options, "make_refined_llm_request")

    def body(case: _RefineCase) -> None:
        request = case.request(p)
        before = request.inputs["multi_modal_data"]
        out = p.try_refine(request, case.refine_prompt)
        if out is None or not isinstance(out.inputs, Mapping):
            return
        after = out.inputs.get("multi_modal_data")
        if not isinstance(after, Mapping):
            return
        for key in sorted(VISUAL & set(before)):
            if key not in after:
                raise ContractViolation(
                    "C-REFINE-004",
                    f"the stage-2 multi_modal_data has no {key!r}; pass "
                    f"request.inputs['multi_modal_data'][{key!r}] on (plugin guide, common bug 3)",
                )
            if not _same_video(before[key], after[key]):
                parsed = Video.parse(after[key])
                got = parsed.tensor() if parsed is not None else None
                what = f"shape {tuple(got.shape)}" if got is not None else type(after[key]).__name__
                raise ContractViolation(
                    "C-REFINE-004",
                    f"the stage-2 {key!r} ({what}) is not the stage-1 one; reuse "
                    f"request.inputs['multi_modal_data'][{key!r}] instead of decoding or "
                    "building frames again (plugin guide, common bug 3)",
                )

    _for_all(options, _refine_cases(plugin), body)


@_check("C-REFINE-005")
def check_refine_includes_caption(plugin: Any, options: CheckOptions) -> None:
    """C-REFINE-005: the stage-2 prompt contains the stage-1 caption."""
    p = _Plugin.resolve(plugin, options, "make_refined_llm_request")

    def body(case: _RefineCase) -> None:
        out = p.try_refine(case.request(p), case.refine_prompt)
        if out is None or not isinstance(out.inputs, Mapping):
            return
        text = _prompt_text(out.inputs, p.tokenizer)
        if text is not None and _squash(case.caption) not in _squash(text):
            raise ContractViolation(
                "C-REFINE-005",
                f"the stage-1 caption {_short(case.caption)} is not in the stage-2 prompt "
                f"{_tail(text)}; build it as refine_prompt + request.caption",
            )

    _for_all(options, _refine_cases(plugin), body)


@_check("C-REFINE-006")
def check_refine_uses_refine_prompt(plugin: Any, options: CheckOptions) -> None:
    """C-REFINE-006: a given ``refine_prompt`` is in the stage-2 prompt."""
    p = _Plugin.resolve(plugin, options, "make_refined_llm_request")

    def body(case: _RefineCase) -> None:
        assert case.refine_prompt is not None
        out = p.try_refine(case.request(p), case.refine_prompt)
        if out is None or not isinstance(out.inputs, Mapping):
            return
        text = _prompt_text(out.inputs, p.tokenizer)
        if text is not None and _squash(case.refine_prompt) not in _squash(text):
            raise ContractViolation(
                "C-REFINE-006",
                f"refine_prompt {_short(case.refine_prompt)} is not in the stage-2 prompt "
                f"{_tail(text)}; use the default only when refine_prompt is None",
            )

    _for_all(options, _refine_cases(plugin, refine_prompt="always"), body)


@_check("C-REFINE-007")
def check_refine_leaves_request_unchanged(plugin: Any, options: CheckOptions) -> None:
    """C-REFINE-007: the stage-1 request (inputs, tensors included) is not modified."""
    p = _Plugin.resolve(plugin, options, "make_refined_llm_request")

    def body(case: _RefineCase) -> None:
        request = case.request(p)
        before = _snapshot(dict(request.inputs))
        p.try_refine(request, case.refine_prompt)
        diff = _difference(before, request.inputs, "request.inputs")
        if diff is not None:
            raise ContractViolation(
                "C-REFINE-007",
                f"make_refined_llm_request modified the stage-1 request: {diff}; build new "
                "inputs instead of changing request.inputs",
            )

    _for_all(options, _refine_cases(plugin), body)


@_check("C-REFINE-008")
def check_refine_rejects_missing_caption(plugin: Any, options: CheckOptions) -> None:
    """C-REFINE-008: a request without caption raises a clear error (common bug 6)."""
    p = _Plugin.resolve(plugin, options, "make_refined_llm_request")
    fix = (
        "check it first: if request.caption is None: raise ValueError('request caption is None: "
        "stage 2 needs the stage-1 caption') (plugin guide, common bug 6)"
    )

    def body(case: _RefineCase) -> None:
        request = attrs.evolve(case.request(p), caption=None)
        try:
            out = p.refine(request, case.refine_prompt)
        except CheckSkipped:
            raise
        except (ValueError, TypeError, VlmcapError) as exc:
            if "caption" in str(exc).lower():
                return
            raise ContractViolation(
                "C-REFINE-008",
                f"a request with caption None made it raise "
                f"{type(exc).__name__}({str(exc)!r:.80}), "
                f"which does not say what is wrong; {fix}",
            ) from exc
        except Exception as exc:
            raise ContractViolation(
                "C-REFINE-008",
                f"a request with caption None made it raise {type(exc).__name__}: {exc}; "
                f"expected a ValueError naming the caption; {fix}",
            ) from exc
        raise ContractViolation(
            "C-REFINE-008",
            f"a request with caption None was accepted (returned {type(out).__name__}); {fix}",
        )

    _for_all(options, _refine_cases(plugin), body)


@_check("C-REFINE-009")
def check_refine_inputs_valid(plugin: Any, options: CheckOptions) -> None:
    """C-REFINE-009: the stage-2 inputs are valid vLLM inputs."""
    p = _Plugin.resolve(plugin, options, "make_refined_llm_request")

    def body(case: _RefineCase) -> None:
        out = p.try_refine(case.request(p), case.refine_prompt)
        if out is None:
            return
        violation = llm_input_violation(out.inputs, p.vocab_size, stage=2)
        problem = violation.detail if violation is not None else None
        if problem is not None:
            raise ContractViolation("C-REFINE-009", problem)

    _for_all(options, _refine_cases(plugin), body)


# ---------------------------------------------------------------------------------------------
# C-DECODE: decode
# ---------------------------------------------------------------------------------------------


def _output_text(output: Any) -> str:
    return str(output.outputs[0].text)


@_check("C-DECODE-001")
def check_decode_returns_str(plugin: Any, options: CheckOptions) -> None:
    """C-DECODE-001: ``decode`` returns a str for every finished output (common bug 4)."""
    decode = _method(plugin, "decode")
    from vlmcap.testing import strategies as vst

    def body(output: Any) -> None:
        desc = (
            f"an output with text {_short(_output_text(output))} and finish_reason "
            f"{output.outputs[0].finish_reason!r}"
        )
        try:
            caption = decode(output)
        except Exception as exc:
            raise ContractViolation(
                "C-DECODE-001", f"decode raised {type(exc).__name__}: {exc} for {desc}"
            ) from exc
        if not isinstance(caption, str):
            raise ContractViolation(
                "C-DECODE-001",
                f"decode returned a {type(caption).__name__} ({caption!r:.60}) for {desc}; return "
                "vllm_output.outputs[0].text (plugin guide, common bug 4)",
            )

    _for_all(options, vst.request_outputs(), body)


@_check("C-DECODE-002")
def check_decode_returns_text(plugin: Any, options: CheckOptions) -> None:
    """C-DECODE-002: ``decode`` returns the first completion's text (ends stripped)."""
    decode = _method(plugin, "decode")
    from vlmcap.testing import strategies as vst

    def body(output: Any) -> None:
        try:
            caption = decode(output)
        except Exception:  # noqa: BLE001 - a plugin may raise anything; it is reported
            return
        if not isinstance(caption, str):
            return
        text = _output_text(output)
        if " ".join(caption.split()) != " ".join(text.split()):
            raise ContractViolation(
                "C-DECODE-002",
                f"decode returned {_short(caption)} for an output whose text is {_short(text)}; "
                "return vllm_output.outputs[0].text (stripping whitespace is fine)",
            )

    _for_all(options, vst.request_outputs(), body)


# ---------------------------------------------------------------------------------------------
# C-ENGINE: the real engine (engine=True)
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def registered(plugin: Any, variant: str) -> Iterator[None]:
    """Make ``get_plugin(variant)`` return ``plugin`` inside the block, then restore."""
    from vlmcap._registry import get_plugin, register_plugin, unregister_plugin

    def current() -> Any:
        try:
            return get_plugin(variant)
        except VlmcapError:
            return None

    previous = current()
    if previous is plugin:
        yield
        return
    register_plugin(plugin)
    try:
        yield
    finally:
        unregister_plugin(variant)
        if previous is not None and current() is not previous:
            register_plugin(previous)


def _shutdown(llm: Any) -> None:
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    shutdown = getattr(core, "shutdown", None)
    if callable(shutdown):
        with contextlib.suppress(Exception):
            shutdown()


ENGINE_PROMPT = "Describe the video."
ENGINE_REFINE_PROMPT = "Improve the following video description: "


@_check("C-ENGINE-001")
def check_engine_round_trip(plugin: Any, options: CheckOptions) -> None:
    """C-ENGINE-001: stage 1 and stage 2 through a real vLLM engine, in-flight batching on and off.

    The report's message names the checkpoint and architecture the engine ran.
    """
    from vlmcap._captioner import (
        auto_processor,
        caption_results,
        make_model_inputs,
        sampling_params,
        vllm_model,
    )
    from vlmcap.testing._media import synthetic_clip

    for name in REQUIRED_METHODS:
        _method(plugin, name)
    variant = _variant(plugin)
    checkpoint = checkpoint_for(plugin, options.model_path)
    if checkpoint is not None and not checkpoint.own:
        raise CheckSkipped(
            f"not run: vlmcap has no checkpoint of {variant!r}'s architecture (no tiny recipe), "
            "and an engine on the stand-in would prove nothing about this plugin; pass "
            "model_path (--model-path) to a checkpoint of its model"
        )
    config = VllmConfig(
        model_variant=variant,
        model_path=_model_path(options, variant),
        max_output_tokens=16,
        max_model_len=4096,
    )
    ran_on = f"checkpoint {config.model_path} ({_architecture(config.model_path)})"
    with registered(plugin, variant):
        try:
            llm = vllm_model(config)
        except Exception as exc:
            raise ContractViolation(
                "C-ENGINE-001",
                f"model(config) did not start an engine on {ran_on}: {type(exc).__name__}: {exc}",
            ) from exc
        try:
            processor = auto_processor(config)
            clips = [synthetic_clip(8, 56, 56, seed=s) for s in range(2)]
            inputs = make_model_inputs(clips, config, processor, ENGINE_PROMPT)
            runs = {
                inflight: caption_results(
                    inputs,
                    llm,
                    processor,
                    sampling_params(config),
                    config,
                    0,
                    inflight_batching=inflight,
                    stage2_prompts=[None, ENGINE_REFINE_PROMPT],
                )
                for inflight in (True, False)
            }
        except Exception as exc:
            raise ContractViolation(
                "C-ENGINE-001", f"captioning on {ran_on} failed: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            _shutdown(llm)
            del llm
            gc.collect()
    for inflight, results in runs.items():
        for i, (result, stages) in enumerate(zip(results, (1, 2), strict=True)):
            if not result.ok or not result.text or result.stages != stages:
                raise ContractViolation(
                    "C-ENGINE-001",
                    f"on {ran_on}, in-flight batching {'on' if inflight else 'off'}: clip {i} "
                    f"({stages} stage(s)) ended {result.status} after {result.stages} "
                    f"stage(s): {result.error or repr(result.text)}",
                )


def _architecture(path: Path | None) -> str:
    """The architecture named by a checkpoint's config.json, or what is known of it."""
    import json

    try:
        archs = json.loads((Path(str(path)) / "config.json").read_text()).get("architectures")
    except (OSError, ValueError):
        return "architecture unknown"
    return ", ".join(archs) if isinstance(archs, list) and archs else "architecture unknown"


# ---------------------------------------------------------------------------------------------
# Runner and pytest decorator
# ---------------------------------------------------------------------------------------------


_STAGE1_RULES = ("C-INPUT-001", "C-INPUT-002", "C-INPUT-003", "C-INPUT-004")
"""What the C-REFINE checks need: they refine the plugin's own stage-1 inputs."""


def _yield_checks(options: CheckOptions, *, engine: bool) -> Iterator[Check]:
    """Every check, in order, with what each needs: the one list of the suite.

    Structure first (the later checks skip a method whose structure or signature is broken);
    stage-1 inputs; stage-2 requests, only over valid stage-1 inputs; decode; the engine last.
    """

    def make(func: CheckFunc, requires: tuple[str, ...] = ()) -> Check:
        rule: str = func.contract_id  # type: ignore[attr-defined]
        return Check(func.__name__, rule, func, options, requires)

    yield make(check_methods_implemented)
    yield make(check_model_variant)
    yield make(check_processor_signature)
    yield make(check_model_signature)
    yield make(check_make_llm_input_signature)
    yield make(check_make_refined_llm_request_signature)
    yield make(check_decode_signature)
    yield make(check_processor_loads)
    yield make(check_input_accepts_valid_frames)
    yield make(check_input_has_prompt)
    yield make(check_input_modality_keys)
    yield make(check_input_frame_layout)
    yield make(check_input_includes_prompt)
    yield make(check_input_leaves_frames_unchanged)
    yield make(check_input_placeholders_and_limits)
    for refine_check in (
        check_refine_returns_request,
        check_refine_resets_caption,
        check_refine_new_request_id,
        check_refine_reuses_frames,
        check_refine_includes_caption,
        check_refine_uses_refine_prompt,
        check_refine_leaves_request_unchanged,
        check_refine_rejects_missing_caption,
        check_refine_inputs_valid,
    ):
        yield make(refine_check, _STAGE1_RULES)
    yield make(check_decode_returns_str)
    yield make(check_decode_returns_text)
    if engine:
        yield make(check_engine_round_trip, ("C-STRUCT-001", "C-STRUCT-008"))


def plugin_checks(
    plugin: Any,  # noqa: ARG001 - mirrors check_plugin
    *,
    model_path: Path | str | None = None,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    engine: bool = False,
) -> Iterator[Check]:
    """Every check of the contract, in ``contracts/README.md`` order; call ``check(plugin)``.

    Args:
        plugin: the plugin class (checks do not depend on it yet; kept for symmetry).
        model_path: checkpoint folder for ``processor()`` (default: a tiny checkpoint).
        max_examples: Hypothesis examples per property check.
        engine: include C-ENGINE-001, which starts a real vLLM engine (~25 s on CPU).
    """
    options = CheckOptions(model_path=model_path, max_examples=max_examples)
    yield from _yield_checks(options, engine=engine)


def _violation_in(exc: BaseException) -> ContractViolation | None:
    if isinstance(exc, ContractViolation):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _violation_in(inner)
            if found is not None:
                return found
    return None


def run_check(check: Check, plugin: Any) -> ContractFailure | SkippedCheck | None:
    """Run one check; its failure, its skip, or ``None`` when it passed."""
    try:
        check(plugin)
    except ContractViolation as exc:
        return ContractFailure(exc.contract_id, check.name, exc.message)
    except CheckSkipped as exc:
        return SkippedCheck(check.name, str(exc))
    except Exception as exc:  # noqa: BLE001 - a plugin may raise anything; it is reported
        found = _violation_in(exc)
        if found is not None:
            return ContractFailure(
                found.contract_id,
                check.name,
                f"{found.message} (intermittent: {type(exc).__name__})",
            )
        return ContractFailure(
            check.contract_id, check.name, f"the check crashed: {type(exc).__name__}: {exc}"
        )
    return None


def check_plugin(
    plugin: Any,
    *,
    model_path: Path | str | None = None,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    engine: bool = False,
) -> ConformanceReport:
    """Run every conformance check on ``plugin`` and report all failures.

    Args:
        plugin: the plugin class (written as in the seed guide, subclassing
            :class:`~vlmcap.VllmPlugin` or not).
        model_path: checkpoint folder that the plugin's ``processor()`` (and, with
            ``engine=True``, ``model()``) load through ``cls.model_path()``. ``None``: vlmcap's
            tiny checkpoint for the plugin's variant, or the tiny Qwen2.5-VL one.
        max_examples: Hypothesis examples per property check.
        engine: also run C-ENGINE-001 (a real vLLM engine, stage 1 and stage 2).

    Returns:
        A :class:`ConformanceReport`; ``report.ok`` is True when nothing failed, and
        ``report.raise_if_failed()`` raises with every failure.
    """
    names: list[str] = []
    failures: list[ContractFailure] = []
    skipped: list[SkippedCheck] = []
    for check in plugin_checks(
        plugin, model_path=model_path, max_examples=max_examples, engine=engine
    ):
        names.append(check.name)
        outcome = run_check(check, plugin)
        if isinstance(outcome, ContractFailure):
            failures.append(outcome)
        elif isinstance(outcome, SkippedCheck):
            skipped.append(outcome)
    checkpoint = checkpoint_for(plugin, model_path)
    return ConformanceReport(
        plugin=plugin_name(plugin),
        checks=tuple(names),
        failures=tuple(failures),
        skipped=tuple(skipped),
        checkpoint=checkpoint.describe() if checkpoint is not None else "",
    )


def parametrize_with_checks(
    plugins: Sequence[Any],
    *,
    model_path: Path | str | None = None,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    engine: bool = False,
) -> Callable[[_TestFunc], _TestFunc]:
    """A ``pytest.mark.parametrize`` over ``(plugin, check)`` for every plugin and check.

    Returns the ``pytest.MarkDecorator``, typed as a decorator so that pytest is imported only
    when this function is called.

    Test ids read ``<Class>-<check name>``, so ``pytest -k check_refine`` selects checks::

        @parametrize_with_checks([MyPlugin])
        def test_conformance(plugin, check):
            check(plugin)
    """
    import pytest

    params = []
    ids = []
    for plugin in plugins:
        label = getattr(plugin, "__qualname__", repr(plugin))
        for check in plugin_checks(
            plugin, model_path=model_path, max_examples=max_examples, engine=engine
        ):
            params.append((plugin, check))
            ids.append(f"{label}-{check.name}")
    mark: Callable[[_TestFunc], _TestFunc] = pytest.mark.parametrize(
        ("plugin", "check"), params, ids=ids
    )
    return mark
