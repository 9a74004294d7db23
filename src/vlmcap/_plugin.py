"""The plugin protocols (the seven methods, in both cosmos-curate eras); how vlmcap calls them.

A plugin is a class whose methods are static or class methods; it is never instantiated. Write
one by subclassing :class:`VllmPlugin` (``model_id`` and ``model_path`` are inherited), or by
writing a class with the same methods. Two forms exist in the wild, and both work unchanged:

- the guide's (:class:`GuidePlugin`): ``make_llm_input(prompt, frames, processor)``, optionally
  with keyword-only extras ``metadata=`` (a :class:`VideoMetadata`) and ``config=``;
- cosmos-curate's current one (:class:`CurrentPlugin`):
  ``make_llm_input(prompt, frames, metadata, processor, config)``, ``metadata`` a plain dict.

:data:`PluginClass` (either protocol's class object) types the registry and every host call
site, so mypy checks plugins; :func:`protocol_problems` checks a class against the same
protocols at runtime and names the missing or mistyped member.
"""

import contextlib
import enum
import functools
import inspect
import os
import shutil
import tempfile
import typing
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, TypeVar, cast, runtime_checkable

import attrs
import torch
from beartype.door import is_subhint

from vlmcap._errors import ModelNotFoundError, PluginError, UnknownVariantError
from vlmcap._frames import Frames
from vlmcap._model_ids import MODEL_IDS
from vlmcap._records import VideoMetadata, VllmCaptionRequest, VllmConfig


_MODEL_PATHS: ContextVar[Mapping[str, Path]] = ContextVar(
    "vlmcap_model_paths",
    default=MappingProxyType({}),  # read-only; using_model_path sets a new mapping
)


@contextlib.contextmanager
def using_model_path(variant: str, path: Path | str | None) -> Iterator[None]:
    """Make ``model_path()`` of ``variant``'s plugin resolve to ``path`` inside the block.

    ``None`` changes nothing. This is how ``VllmConfig.model_path`` and ``vlmcap check
    --model-path`` reach plugins that call the inherited ``cls.model_path()`` with no argument.
    """
    if path is None:
        yield
        return
    token = _MODEL_PATHS.set({**_MODEL_PATHS.get(), variant: Path(path)})
    try:
        yield
    finally:
        _MODEL_PATHS.reset(token)


def model_id_for(variant: str) -> str:
    """The pinned Hugging Face id of ``variant``."""
    try:
        return MODEL_IDS[variant].repo_id
    except KeyError:
        raise UnknownVariantError(variant, MODEL_IDS, what="model id") from None


def explicit_model_path(variant: str, config: VllmConfig | None = None) -> Path | None:
    """The folder given for ``variant``: ``config.model_path``, else :func:`using_model_path`'s."""
    explicit = config.model_path if config is not None else None
    return explicit if explicit is not None else _MODEL_PATHS.get().get(variant)


def resolve_model_path(variant: str, config: VllmConfig | None = None) -> Path:
    """Find the local checkpoint of ``variant``.

    Order: ``config.model_path``, else a path set with :func:`using_model_path` (either one,
    when given, must exist); ``$VLMCAP_MODEL_DIR/<hf id>``; the Hugging Face cache at the
    pinned revision.

    Raises:
        ModelNotFoundError: nothing found; the message names every place tried.
    """
    tried: list[str] = []
    explicit = explicit_model_path(variant, config)
    entry = MODEL_IDS.get(variant)
    copy = config.copy_weights_to if config is not None else None
    if copy is not None and entry is not None and (copy / entry.repo_id).is_dir():
        return copy / entry.repo_id  # cosmos-curate's fast local copy wins when present
    if explicit is not None:  # an explicit path that is wrong is an error, not a hint
        if explicit.is_dir():
            return explicit
        raise ModelNotFoundError(
            variant, entry.repo_id if entry else "?", [f"model_path {explicit} (not a folder)"]
        )
    repo = entry.repo_id if entry else None
    root = os.environ.get("VLMCAP_MODEL_DIR")
    if repo is None:
        tried.append(f"no pinned Hugging Face id for {variant!r}")
    elif root:
        candidate = Path(root) / repo
        if candidate.is_dir():
            return candidate
        tried.append(f"$VLMCAP_MODEL_DIR/{repo} = {candidate} (missing)")
    else:
        tried.append("$VLMCAP_MODEL_DIR (not set)")
    if entry is not None:
        try:
            from huggingface_hub import snapshot_download

            return Path(
                snapshot_download(entry.repo_id, revision=entry.revision, local_files_only=True)
            )
        except Exception as exc:  # noqa: BLE001 - any miss is reported below
            tried.append(
                f"Hugging Face cache {entry.repo_id}@{entry.revision} ({type(exc).__name__})"
            )
    raise ModelNotFoundError(variant, repo or "?", tried)


@runtime_checkable
class VllmPlugin(Protocol):
    """**Protocol:** a vision-language model served by vLLM (contracts C-STRUCT-*); subclass it.

    Implement six methods, as in cosmos-curate's plugin guide: ``model_variant``,
    ``processor``, ``model``, ``make_llm_input``, ``make_refined_llm_request`` and ``decode``;
    ``model_id`` and ``model_path`` are inherited. ``make_llm_input`` may take either form
    (module docstring); the registry checks the class against :class:`GuidePlugin` or
    :class:`CurrentPlugin`, statically (mypy, through :data:`PluginClass`) and at runtime.

    Frames given to ``make_llm_input`` are a ``(T, 3, H, W)`` tensor (``T`` frames, RGB, channels
    first), either uint8 in [0, 255] (vlmcap's decoders and most callers) or float32 in [0, 1];
    other float dtypes are converted to float32 before the plugin sees them, unless the plugin
    lists them in a ``frame_dtypes`` class attribute (:data:`SENT_FRAME_DTYPES`).
    """

    @staticmethod
    def model_variant() -> str:
        """Unique variant name, e.g. ``"qwen"``."""
        ...

    @classmethod
    def model_id(cls) -> str:
        """Hugging Face id of the checkpoint (inherited: looked up in vlmcap's pinned table)."""
        return model_id_for(cls.model_variant())

    @classmethod
    def model_path(cls, *args: Any, **kwargs: Any) -> Path:
        """Local checkpoint folder: ``model_path()`` or ``model_path(config)`` (inherited).

        See :func:`resolve_model_path`. Both forms are accepted, so a subclass may override it
        as the guide does (no argument) or as cosmos-curate does now (``config``).
        """
        config = args[0] if args else kwargs.get("config")
        if config is not None and not isinstance(config, VllmConfig):
            raise PluginError(f"model_path(config): expected a VllmConfig, got {config!r:.60}")
        return resolve_model_path(cls.model_variant(), config)

    @classmethod
    def processor(cls, *args: Any, **kwargs: Any) -> Any:
        """The Hugging Face processor: ``processor()`` or ``processor(config)``."""
        ...

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        """Build the vLLM engine."""
        ...

    @staticmethod
    def make_llm_input(prompt: str, frames: Frames, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """A vLLM prompt dict with ``multi_modal_data``, in either form (module docstring)."""
        ...

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest,
        processor: Any,
        refine_prompt: str | None = None,
    ) -> VllmCaptionRequest:
        """Stage 2: a new request (new id, caption and stage2_prompt None) over the same frames."""
        ...

    @staticmethod
    def decode(vllm_output: Any) -> str:
        """The caption text of a finished vLLM output."""
        ...


class _Common(Protocol):
    """The members both plugin forms share."""

    @staticmethod
    def model_variant() -> str: ...

    @classmethod
    def processor(cls, *args: Any, **kwargs: Any) -> Any: ...

    @classmethod
    def model(cls, config: VllmConfig) -> Any: ...

    @staticmethod
    def make_refined_llm_request(
        request: VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> VllmCaptionRequest: ...

    @staticmethod
    def decode(vllm_output: Any) -> str: ...


@runtime_checkable
class GuidePlugin(_Common, Protocol):
    """**Protocol:** the guide's plugin form, ``make_llm_input(prompt, frames, processor)``."""

    @staticmethod
    def make_llm_input(prompt: str, frames: Frames, processor: Any) -> dict[str, Any]: ...


@runtime_checkable
class CurrentPlugin(_Common, Protocol):
    """**Protocol:** cosmos-curate's current form of ``make_llm_input``.

    ``make_llm_input(prompt, frames, metadata, processor, config)``, all positional, with
    ``metadata`` a plain dict (:meth:`VideoMetadata.to_vllm`).
    """

    @staticmethod
    def make_llm_input(
        prompt: str,
        frames: Frames,
        metadata: dict[str, Any],
        processor: Any,
        config: VllmConfig,
    ) -> dict[str, Any]: ...


PluginClass: TypeAlias = type[GuidePlugin] | type[CurrentPlugin]
"""A plugin, as the registry and every host function take it: the class object of either form."""

G = TypeVar("G", bound=type[GuidePlugin])
C = TypeVar("C", bound=type[CurrentPlugin])


class PluginForm(enum.StrEnum):
    """Which ``make_llm_input`` form a plugin implements."""

    GUIDE = "guide"
    CURRENT = "current"

    @property
    def protocol(self) -> type[Any]:
        """The protocol of this form."""
        return GuidePlugin if self is PluginForm.GUIDE else CurrentPlugin


SENT_FRAME_DTYPES: tuple[torch.dtype, ...] = (torch.uint8, torch.float32)
"""What vlmcap gives ``make_llm_input``: uint8 in [0, 255] or float32 in [0, 1], (T, 3, H, W).

A plugin may widen this with a class attribute ``frame_dtypes`` (e.g. ``(torch.uint8,
torch.float32, torch.bfloat16)``): frames of those dtypes then reach it as given, and the
conformance suite tests them too."""


def frame_dtypes(plugin: object) -> tuple[torch.dtype, ...]:
    """The frame dtypes ``plugin`` receives (:data:`SENT_FRAME_DTYPES` unless it declares more)."""
    declared = getattr(plugin, "frame_dtypes", None)
    if isinstance(declared, tuple | list) and all(isinstance(d, torch.dtype) for d in declared):
        return tuple(dict.fromkeys((*SENT_FRAME_DTYPES, *declared)))
    return SENT_FRAME_DTYPES


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _signature(func: object) -> inspect.Signature | None:
    try:
        return inspect.signature(cast("Callable[..., Any]", func))
    except (TypeError, ValueError):
        return None


@functools.cache
def _form_of(make_llm_input: object) -> PluginForm:
    sig = _signature(make_llm_input)
    if sig is None:
        return PluginForm.GUIDE
    names = [p.name for p in sig.parameters.values() if p.kind in _POSITIONAL]
    return PluginForm.CURRENT if names[2:3] == ["metadata"] else PluginForm.GUIDE


def plugin_form(plugin: object) -> PluginForm:
    """The form ``plugin``'s ``make_llm_input`` has: a third positional ``metadata`` is current."""
    return _form_of(getattr(plugin, "make_llm_input", None))


def _protocol_members(protocol: type[Any]) -> dict[str, Any]:
    """Name -> raw member (staticmethod/classmethod) of ``protocol`` and its protocol bases."""
    members: dict[str, Any] = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object, Protocol, typing.Generic) or not getattr(klass, "_is_protocol", False):
            continue
        members.update(
            (name, raw)
            for name, raw in vars(klass).items()
            if isinstance(raw, staticmethod | classmethod)
        )
    return members


REQUIRED_METHODS: tuple[str, ...] = tuple(_protocol_members(GuidePlugin))
"""Methods a plugin must define (read off the protocol); ``model_id``/``model_path`` are
inherited or optional."""


def _definition(plugin: type, name: str) -> tuple[type | None, Any]:
    for klass in inspect.getmro(plugin):
        if name in vars(klass):
            return klass, vars(klass)[name]
    return None, None


def structure_problem(plugin: object, name: str) -> str | None:  # noqa: PLR0911 - one return per case reads best
    """Why ``plugin`` does not implement member ``name`` as a static/class method, or ``None``."""
    if not isinstance(plugin, type):
        return (
            f"the plugin must be a class, got an instance of {type(plugin).__name__}; "
            "pass the class itself (vlmcap never instantiates plugins)"
        )
    owner, raw = _definition(plugin, name)
    if raw is None:
        return f"{name}() is missing; implement it as a @staticmethod or @classmethod"
    if owner in (VllmPlugin, _Common, GuidePlugin, CurrentPlugin):
        return (
            f"{name}() is not implemented: the class inherits VllmPlugin's empty stub, which "
            "returns None; implement it"
        )
    if isinstance(raw, staticmethod | classmethod):
        return None
    if inspect.isfunction(raw):
        return (
            f"{name}() is an instance method; vlmcap calls it on the class, so decorate it "
            "with @staticmethod (or @classmethod and take cls)"
        )
    if not callable(getattr(plugin, name, None)):
        return f"{name} is not callable"
    return None


def _is_gradual(params: list[inspect.Parameter]) -> bool:
    kinds = {p.kind for p in params}
    return inspect.Parameter.VAR_POSITIONAL in kinds and inspect.Parameter.VAR_KEYWORD in kinds


def _want(name: str, params: list[inspect.Parameter]) -> str:
    shown = [p.name if p.default is inspect.Parameter.empty else f"{p.name}=None" for p in params]
    return f"{name}({', '.join(shown)})"


def _extras_problem(
    shown: str, params: list[inspect.Parameter], *, keyword_only: bool = False
) -> str | None:
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return (
                f"{shown}: *{p.name} is not part of the protocol; extra parameters must be "
                "optional keyword arguments"
            )
        if p.default is inspect.Parameter.empty:
            return (
                f"{shown}: extra parameter {p.name!r} is required, but vlmcap never passes it; "
                "give it a default (an optional keyword argument)"
            )
        if keyword_only and p.kind is not inspect.Parameter.KEYWORD_ONLY:
            return (
                f"{shown}: extra parameter {p.name!r} is positional, so vlmcap's "
                "processor(config) call would fill it; make it keyword-only (after *)"
            )
    return None


def _config_only_problem(name: str, sig: inspect.Signature) -> str | None:
    """``name()`` or ``name(config)``: any other parameter keyword-only with a default."""
    params = list(sig.parameters.values())
    if params and params[0].name == "config" and params[0].kind in _POSITIONAL:
        params = params[1:]
    return _extras_problem(f"{name}{sig}", params, keyword_only=True)


def _arity_problem(name: str, sig: inspect.Signature, expected: inspect.Signature) -> str | None:
    """Why ``sig`` cannot be called as the protocol's ``expected`` signature, or ``None``."""
    want_params = [p for p in expected.parameters.values() if p.name != "cls"]
    if _is_gradual(want_params):
        return None
    params = list(sig.parameters.values())
    shown, want = f"{name}{sig}", _want(name, want_params)
    for i, w in enumerate(want_params):
        if i >= len(params):
            return f"{shown} lacks parameter {w.name!r}; the protocol is {want}"
        p = params[i]
        if p.name != w.name:
            return (
                f"{shown}: parameter {i + 1} is named {p.name!r}, expected {w.name!r}; "
                f"the protocol is {want}"
            )
        if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            return (
                f"{shown}: {w.name!r} is {p.kind.description}, expected positional or keyword; "
                f"the protocol is {want}"
            )
        if w.default is not inspect.Parameter.empty and p.default is not w.default:
            has = (
                "has no default"
                if p.default is inspect.Parameter.empty
                else (f"defaults to {p.default!r}")
            )
            return f"{shown}: {w.name!r} {has}; it must default to {w.default!r} ({want})"
    return _extras_problem(shown, params[len(want_params) :])


def _return_hint(func: object) -> object:
    try:
        return typing.get_type_hints(func).get("return", Any)
    except Exception:  # noqa: BLE001 - unresolvable annotations (TYPE_CHECKING imports) are not checked
        return Any


def _return_problem(name: str, func: object, expected: object) -> str | None:
    """Why ``func``'s declared return type is not the protocol's, or ``None`` (unknown is fine)."""
    want, got = _return_hint(expected), _return_hint(func)
    if want is Any or got is Any:
        return None
    try:
        ok = is_subhint(got, want)
    except Exception:  # noqa: BLE001 - hints beartype cannot compare are not checked
        return None
    if ok:
        return None
    return (
        f"{name}() is declared to return {_hint_name(got)}; the protocol needs {_hint_name(want)}"
    )


def _hint_name(hint: object) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def signature_problem(plugin: object, name: str) -> str | None:
    """Why member ``name`` of ``plugin`` breaks its protocol's signature, or ``None``.

    The protocol is :class:`GuidePlugin` or :class:`CurrentPlugin` (:func:`plugin_form`); the
    parameters (names, order, kinds, defaults) and the declared return type are compared with
    the protocol's own member. ``processor`` takes no argument or a first ``config``.
    """
    func = getattr(plugin, name, None)
    sig = _signature(func)
    if sig is None:
        return f"cannot read the signature of {name}(); define it with def"
    if name == "processor":
        return _config_only_problem(name, sig)
    if name == "model_path":
        return _config_only_problem(name, sig)
    expected = getattr(plugin_form(plugin).protocol, name)
    expected_sig = _signature(expected)
    if expected_sig is not None:
        problem = _arity_problem(name, sig, expected_sig)
        if problem is not None:
            return problem
    return _return_problem(name, func, expected)


def protocol_problems(plugin: object) -> dict[str, str]:
    """Member -> what is wrong with it, for every member of ``plugin``'s protocol (empty if none).

    This is the runtime form of the static check: the same protocols (:data:`PluginClass`).
    """
    problems: dict[str, str] = {}
    for name in REQUIRED_METHODS:
        problem = structure_problem(plugin, name) or signature_problem(plugin, name)
        if problem is not None:
            problems[name] = problem
    if isinstance(plugin, type) and "model_path" in vars(plugin):
        problem = signature_problem(plugin, "model_path")
        if problem is not None:
            problems["model_path"] = problem
    return problems


def check_plugin_structure(plugin: object) -> PluginClass:
    """``plugin`` typed as a :data:`PluginClass`; :class:`PluginError` naming each bad member."""
    problems = protocol_problems(plugin)
    if problems:
        name = getattr(plugin, "__name__", type(plugin).__name__)
        listed = "; ".join(problems.values())
        raise PluginError(
            f"plugin {name} does not satisfy vlmcap's plugin protocol "
            f"({plugin_form(plugin).value} form): {listed}"
        )
    return cast("PluginClass", plugin)


def plugin_label(plugin: object) -> str:
    """``module:Class`` of a plugin class (or the repr of anything else)."""
    if isinstance(plugin, type):
        return f"{plugin.__module__}:{plugin.__qualname__}"
    return repr(plugin)


class PinsNoModel(Protocol):
    """**Capability:** a plugin that pins no model; its checkpoint is ``VllmConfig.model_path``.

    Declare it with a class attribute ``pins_no_model: ClassVar[Literal[True]] = True`` (the
    ``chat`` plugin does); vlmcap then lists it as needing ``--model-path`` and never offers
    ``vlmcap download`` for it. A plugin whose variant has no pinned id in vlmcap's table and
    that defines no ``model_id()`` of its own is treated the same.
    """

    pins_no_model: ClassVar[Literal[True]]


@runtime_checkable
class SupportsLoRA(Protocol):
    """**Capability:** a plugin whose model needs a LoRA adapter on every request.

    ``lora_request(config)`` returns vLLM's ``LoRARequest`` for the checkpoint; vlmcap's engine
    adapter attaches it to every request it adds (Phi-4-multimodal's vision works this way).
    """

    @classmethod
    def lora_request(cls, config: VllmConfig | None = None) -> Any:
        """The adapter every request of ``config``'s engine carries."""
        ...


def pins_no_model(plugin: object) -> bool:
    """True when ``plugin`` declares :class:`PinsNoModel`, or has no model id to give."""
    if getattr(plugin, "pins_no_model", False) is True:
        return True
    own_id = isinstance(plugin, type) and any(
        "model_id" in vars(k) for k in plugin.__mro__ if k is not VllmPlugin
    )
    variant = getattr(plugin, "model_variant", None)
    return not own_id and callable(variant) and str(variant()) not in MODEL_IDS


def plugin_model_id(plugin: PluginClass) -> str:
    """``plugin.model_id()`` if defined, else the pinned table."""
    own = getattr(plugin, "model_id", None)
    if callable(own):
        return str(own())
    return model_id_for(plugin.model_variant())


@functools.cache
def _takes_config(func: object) -> bool:
    sig = _signature(func)
    if sig is None:
        return False
    params = [p for p in sig.parameters.values() if p.kind in _POSITIONAL]
    return bool(params) and params[0].name == "config"


def call_model_path(plugin: PluginClass, config: VllmConfig) -> Path:
    """``plugin.model_path()``, or ``model_path(config)`` where it takes the config."""
    own = getattr(plugin, "model_path", None)
    if not callable(own):
        return resolve_model_path(plugin.model_variant(), config)
    with using_model_path(plugin.model_variant(), config.model_path):
        return Path(own(config) if _takes_config(own) else own())


def call_processor(plugin: PluginClass, config: VllmConfig) -> Any:
    """``plugin.processor()``; plugins written for cosmos-curate HEAD take ``config`` too."""
    with using_model_path(plugin.model_variant(), config.model_path):
        if _takes_config(plugin.processor):
            return plugin.processor(config)
        return plugin.processor()


def copy_weights(plugin: PluginClass, config: VllmConfig) -> None:
    """cosmos-curate's ``copy_weights_to``: copy the checkpoint there first if it is missing.

    The target is ``copy_weights_to/<hf id>``; a plugin without a pinned id has no such place,
    and nothing is copied.

    The copy goes to a temporary folder beside the target and is renamed into place, so a copy
    cut short is never taken for a checkpoint.
    """
    entry = MODEL_IDS.get(plugin.model_variant())
    if config.copy_weights_to is None or entry is None:
        return
    target = config.copy_weights_to / entry.repo_id
    if target.is_dir():
        return
    source = resolve_model_path(plugin.model_variant(), attrs.evolve(config, copy_weights_to=None))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def call_model(plugin: PluginClass, config: VllmConfig) -> Any:
    """``plugin.model(config)`` with ``config.model_path`` visible to ``cls.model_path()``."""
    copy_weights(plugin, config)
    with using_model_path(plugin.model_variant(), config.model_path):
        return plugin.model(config)


def call_make_llm_input(  # noqa: PLR0913 - the current form's five arguments plus the plugin
    plugin: PluginClass,
    prompt: str,
    frames: Frames,
    processor: Any,
    *,
    metadata: VideoMetadata,
    config: VllmConfig,
) -> object:
    """Call ``make_llm_input`` in the plugin's own form.

    Current form: ``(prompt, frames, metadata_dict, processor, config)`` with cosmos-curate's
    metadata keys. Guide form: ``(prompt, frames, processor)``, plus ``metadata=`` (the
    :class:`VideoMetadata`) and ``config=`` where declared. Returns what the plugin returned
    (the caller validates it: :func:`vlmcap._contract.check_llm_input`).
    """
    if plugin_form(plugin) is PluginForm.CURRENT:
        current = cast("type[CurrentPlugin]", plugin)
        return current.make_llm_input(prompt, frames, metadata.to_vllm(), processor, config)
    guide = cast("type[GuidePlugin]", plugin)
    kwargs: dict[str, Any] = {}
    if _accepts(guide.make_llm_input, "metadata"):
        kwargs["metadata"] = metadata
    if _accepts(guide.make_llm_input, "config"):
        kwargs["config"] = config
    make: Callable[..., object] = guide.make_llm_input
    return make(prompt, frames, processor, **kwargs)


@functools.cache
def _accepts(func: Any, name: str) -> bool:
    sig = _signature(func)
    if sig is None:
        return False
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return name in sig.parameters and sig.parameters[name].kind in kinds
