"""The plugin protocol (the seed guide's seven methods) and how vlmcap calls a plugin.

A plugin is a class whose methods are static or class methods; it is never instantiated. Write
one by subclassing :class:`VllmPlugin` (``model_id`` and ``model_path`` are inherited), or by
writing a class with the same methods: both are accepted, checked structurally at runtime.
"""

import contextlib
import functools
import inspect
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

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
    """**Protocol:** a vision-language model served by vLLM (contracts C-STRUCT-*).

    Subclass it and implement five methods, as in cosmos-curate's plugin guide:
    ``model_variant``, ``processor``, ``model``, ``make_llm_input``,
    ``make_refined_llm_request`` and ``decode``; ``model_id`` and ``model_path`` are inherited.

    ``make_llm_input(prompt, frames, processor)`` receives frames as a
    ``(frames, 3, height, width)`` tensor, uint8 in [0, 255] or float in [0, 1]. It may also
    declare optional keyword arguments ``metadata`` (a :class:`VideoMetadata`) and ``config``;
    vlmcap passes them when declared.
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
    def model_path(cls, config: VllmConfig | None = None) -> Path:
        """Local checkpoint folder (inherited: see :func:`resolve_model_path`)."""
        return resolve_model_path(cls.model_variant(), config)

    @classmethod
    def processor(cls) -> Any:
        """The Hugging Face processor (tokenizer, chat template)."""
        ...

    @classmethod
    def model(cls, config: VllmConfig) -> Any:
        """Build the vLLM engine."""
        ...

    @staticmethod
    def make_llm_input(
        prompt: str,
        frames: Frames,
        processor: Any,
    ) -> dict[str, Any]:
        """Turn a prompt and frames into a vLLM prompt dict with ``multi_modal_data``."""
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


REQUIRED_METHODS = (
    "model_variant",
    "processor",
    "model",
    "make_llm_input",
    "make_refined_llm_request",
    "decode",
)
"""Methods a plugin must define; ``model_id`` and ``model_path`` have fallbacks."""


def _implements(plugin: object, name: str) -> bool:
    """True if ``plugin`` defines ``name`` itself (a stub inherited from VllmPlugin is not)."""
    if not callable(getattr(plugin, name, None)):
        return False
    for klass in getattr(plugin, "__mro__", (type(plugin),)):
        if name in vars(klass):
            return klass is not VllmPlugin
    return True


def check_plugin_structure(plugin: object) -> None:
    """Raise :class:`PluginError` unless ``plugin`` has every required callable method."""
    missing = [m for m in REQUIRED_METHODS if not _implements(plugin, m)]
    if missing:
        name = getattr(plugin, "__name__", type(plugin).__name__)
        raise PluginError(f"plugin {name} lacks method(s) {', '.join(missing)} of VllmPlugin")


def plugin_model_id(plugin: Any) -> str:
    """``plugin.model_id()`` if defined, else the pinned table."""
    if callable(getattr(plugin, "model_id", None)):
        return str(plugin.model_id())
    return model_id_for(str(plugin.model_variant()))


@functools.cache
def _accepts(func: Any, name: str) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return name in params and params[name].kind in kinds


def call_processor(plugin: Any, config: VllmConfig) -> Any:
    """``plugin.processor()``; plugins written for cosmos-curate HEAD take ``config`` too."""
    variant = str(plugin.model_variant())
    with using_model_path(variant, config.model_path):
        if _accepts(plugin.processor, "config"):
            return plugin.processor(config=config)
        return plugin.processor()


def call_model(plugin: Any, config: VllmConfig) -> Any:
    """``plugin.model(config)`` with ``config.model_path`` visible to ``cls.model_path()``."""
    with using_model_path(str(plugin.model_variant()), config.model_path):
        return plugin.model(config)


def call_make_llm_input(  # noqa: PLR0913 - the seed's three plus two optional extras
    plugin: Any,
    prompt: str,
    frames: Frames,
    processor: Any,
    *,
    metadata: VideoMetadata,
    config: VllmConfig,
) -> dict[str, Any]:
    """Call ``make_llm_input`` the seed's way, adding ``metadata``/``config`` where declared."""
    kwargs: dict[str, Any] = {}
    if _accepts(plugin.make_llm_input, "metadata"):
        kwargs["metadata"] = metadata
    if _accepts(plugin.make_llm_input, "config"):
        kwargs["config"] = config
    out = plugin.make_llm_input(prompt, frames, processor, **kwargs)
    if not isinstance(out, dict):
        raise PluginError(
            f"{plugin.__name__}.make_llm_input returned {type(out).__name__}, expected dict"
        )
    return out
