"""A tiny random checkpoint of *any* transformers architecture, built offline.

:func:`vlmcap.testing.tiny_checkpoint` knows only vlmcap's own recipes. A plugin author with a
model family vlmcap ships no recipe for (SmolVLM / Idefics3, Gemma 3, ...) needs a checkpoint of
the real architecture to run ``vlmcap check --engine`` and ``vlmcap caption`` on a CPU, without
downloading gigabytes. :func:`tiny_checkpoint_like` makes one from the model's transformers
config class and processor classes, with the same recipe as vlmcap's own checkpoints:

1. every size-like field of the config and of its sub-configs (``text_config``,
   ``vision_config``, ...) is shrunk to tiny values that are consistent with each other (hidden
   size, heads and their dimension, layers, experts, image size as a multiple of the patch size,
   layer indexes within the layers, ``mrope_section`` within the head);
2. vlmcap's byte-level BPE tokenizer is trained on its small embedded corpus, with the special
   tokens the processor needs (placeholders, image/row tags, the end-of-turn token) and the
   model's chat template; the vocabulary size and every token id of the config are set from it;
3. the model is built with random weights through transformers, its language head shaped so that
   greedy decoding emits whole visible words, and saved in bf16 with the processor that
   ``make_processor`` builds around the tokenizer.
"""

import copy
import functools
import hashlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vlmcap._errors import ConfigError
from vlmcap.testing._tiny_base import build_atomically, save_with_word_head
from vlmcap.testing._tiny_chat import _tokenizer, vision_tower_hub_layout


TEXT_SIZES: Mapping[str, int] = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "moe_intermediate_size": 64,
    "shared_expert_intermediate_size": 64,
    "num_experts": 4,
    "num_local_experts": 4,
    "n_routed_experts": 4,
    "num_experts_per_tok": 2,
}
"""Sizes of a language model (head dim 32: a size vLLM's CPU attention supports)."""

VISION_SIZES: Mapping[str, int] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "depth": 2,
    "num_attention_heads": 2,
    "num_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 32,
}
"""Sizes of a vision (or audio) encoder."""

PATCHES_PER_SIDE = 4
"""A vision ``image_size`` becomes ``PATCHES_PER_SIDE * patch_size``: 16 patches, which a 2x2
(or 4x4) merge, pixel shuffle or pooling divides evenly."""

MIN_POSITIONS = 32768
"""Text ``max_position_embeddings`` is raised to at least this (vlmcap's checks run 4,096)."""

_LAYER_LISTS = ("indexes", "indices", "_layers", "layer_ids", "layer_types", "block_type")
_FEEDS_TEXT = ("out_hidden_size", "projection_dim")
_TOKEN_FIELDS = ("_token_id", "_token_index", "_token_ids")
_BUILD_VERSION = "2"  # 2: only CLIP and SigLIP towers get the Hub's vision_model level
_NESTED_TOWERS = frozenset({"CLIPVisionModel", "SiglipVisionModel", "Siglip2VisionModel"})
"""Vision towers published with a ``vision_model`` level (``vision_tower.vision_model.*``, which
vLLM's loaders expect) that transformers 5 holds and saves without it. Other towers (InternVL's,
Pixtral's) are saved as transformers has them."""


def _sub_configs(config: Any) -> dict[str, Any]:
    """The config's sub-configs by attribute name (``text_config``, ``vision_config``, ...)."""
    from transformers import PretrainedConfig

    return {name: v for name, v in vars(config).items() if isinstance(v, PretrainedConfig)}


def _is_language_model(name: str, config: Any) -> bool:
    label = f"{name} {getattr(config, 'model_type', '')}".lower()
    return any(word in label for word in ("text", "language", "llm", "decoder"))


def _get(config: Any, field: str) -> Any:
    """``config.field``, or None (also for a per-layer field of a heterogeneous config)."""
    try:
        return getattr(config, field, None)
    except RuntimeError:  # transformers' AmbiguousGlobalPerLayerAttributeError
        return None


def _shrink_one(config: Any, sizes: Mapping[str, int], *, text: bool) -> None:
    before = _get(config, "num_hidden_layers") or _get(config, "depth")
    for field, value in sizes.items():
        if isinstance(_get(config, field), int):
            setattr(config, field, value)
    if isinstance(before, int):
        _shrink_layer_lists(config, before, min(before, sizes["num_hidden_layers"]))
    patch, image = _get(config, "patch_size"), _get(config, "image_size")
    if isinstance(patch, int) and isinstance(image, int):
        config.image_size = PATCHES_PER_SIDE * patch
    elif _int_pair(patch) and _int_pair(image):  # (height, width), as InternVL's
        config.image_size = type(image)(PATCHES_PER_SIDE * p for p in patch)
    if text:
        _fit_text(config, sizes)


def _int_pair(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) for v in value)
    )


def _shrink_layer_lists(config: Any, before: int, layers: int) -> None:
    """Per-layer lists cut from ``before`` to ``layers`` layers.

    Indexes are clamped into range; lists of layer kinds (``layer_types``, a hybrid's block
    types) keep each kind, in order.
    """
    for field, value in list(vars(config).items()):
        if (
            not field.endswith(_LAYER_LISTS)
            or field.startswith("num_")
            or not isinstance(value, list | tuple)
            or not value
        ):
            continue
        if all(isinstance(v, int) for v in value):
            setattr(config, field, sorted({min(v, layers - 1) for v in value}))
        elif all(isinstance(v, str) for v in value) and len(value) == before:
            kinds = list(dict.fromkeys(value))
            setattr(config, field, [*kinds, *[kinds[-1]] * layers][:layers])


def _fit_text(config: Any, sizes: Mapping[str, int]) -> None:
    """Positions for vlmcap's context lengths, ``mrope_section`` within the head, untied head."""
    positions = _get(config, "max_position_embeddings")
    if isinstance(positions, int):
        config.max_position_embeddings = max(positions, MIN_POSITIONS)
    rope = _get(config, "rope_parameters")
    head = _get(config, "head_dim") or sizes["hidden_size"] // sizes["num_attention_heads"]
    if isinstance(rope, dict) and isinstance(rope.get("mrope_section"), list):
        rope["mrope_section"] = _rescale(rope["mrope_section"], head // 2)
    if hasattr(config, "tie_word_embeddings"):
        config.tie_word_embeddings = False


def _rescale(sections: Sequence[int], total: int) -> list[int]:
    """``sections`` scaled to sum to ``total`` (each at least 1, the last takes the rounding)."""
    whole = sum(sections)
    scaled = [max(1, round(s * total / whole)) for s in sections[:-1]]
    return [*scaled, total - sum(scaled)]


def shrink_config(config: Any) -> Any:
    """A copy of ``config`` with every size-like field made tiny.

    ``config`` is a transformers config class (its defaults), instance, or the path of a
    ``config.json`` (or of a folder holding one, as a package may ship a model's config).
    Sub-configs whose name or ``model_type`` says text, language, llm or decoder get
    :data:`TEXT_SIZES`, the others (vision, audio, ... encoders) :data:`VISION_SIZES`; the top
    level gets :data:`TEXT_SIZES` too (it is the language model, or mirrors its sizes as Fuyu's
    and PaliGemma's do). Only fields the config has are set. Encoder fields that feed the
    language model (``out_hidden_size``, ``projection_dim``) follow the text hidden size. Word
    embeddings are untied (the head is shaped apart from them).

    Raises:
        ConfigError: ``config`` is none of these.
    """
    from transformers import PretrainedConfig

    if isinstance(config, str | Path):
        config = _read_config(Path(config))
    if isinstance(config, type) and issubclass(config, PretrainedConfig):
        config = _defaults(config)
    if not isinstance(config, PretrainedConfig):
        msg = f"expected a transformers config class, instance or config.json, got {config!r}"
        raise ConfigError(msg)
    config = copy.deepcopy(config)
    subs = _sub_configs(config)
    encoders = {n: c for n, c in subs.items() if not _is_language_model(n, c)}
    for name, sub in subs.items():
        encoder = name in encoders
        _shrink_one(sub, VISION_SIZES if encoder else TEXT_SIZES, text=not encoder)
    _shrink_one(config, TEXT_SIZES, text=True)
    for sub in encoders.values():
        for field in _FEEDS_TEXT:
            if isinstance(_get(sub, field), int):
                setattr(sub, field, TEXT_SIZES["hidden_size"])
    return config


def _read_config(path: Path) -> Any:
    """The transformers config in ``path`` (a ``config.json``, or a folder holding one)."""
    from transformers import AutoConfig

    file = path / "config.json" if path.is_dir() else path
    try:
        fields = json.loads(file.read_text())
        return AutoConfig.for_model(fields.pop("model_type"), **fields)
    except (OSError, ValueError, KeyError) as exc:
        msg = f"cannot read a transformers config from {file}: {type(exc).__name__}: {exc}"
        raise ConfigError(msg) from exc


def _defaults(config_class: Any) -> Any:
    """``config_class()``, without transformers' warnings about default ids it is about to lose."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return config_class()
    finally:
        hf_logging.set_verbosity(level)


def _configs(config: Any) -> list[Any]:
    return [config, *_sub_configs(config).values()]


def _set_path(config: Any, path: str, value: Any) -> None:
    *parents, field = path.split(".")
    target = config
    for name in parents:
        target = getattr(target, name)
    if not hasattr(target, field):
        msg = f"config {type(target).__name__} has no field {field!r} (from {path!r})"
        raise ConfigError(msg)
    setattr(target, field, value)


def _set_token_ids(
    config: Any, tokenizer: Any, eos: int, pad: int, token_ids: Mapping[str, str]
) -> None:
    vocab = len(tokenizer)
    for sub in _configs(config):
        if isinstance(_get(sub, "vocab_size"), int):
            sub.vocab_size = vocab
        for field, value in (("bos_token_id", pad), ("eos_token_id", eos), ("pad_token_id", pad)):
            if field in vars(sub) or _get(sub, field) is not None:
                setattr(sub, field, value)
    for path, token in token_ids.items():
        token_id = tokenizer.convert_tokens_to_ids(token)
        if not isinstance(token_id, int) or token_id >= vocab:
            msg = f"token {token!r} (for {path}) is not in the tokenizer; add it to special_tokens"
            raise ConfigError(msg)
        _set_path(config, path, token_id)
    stale = [
        f"{type(sub).__name__}.{field}={value}"
        for sub in _configs(config)
        for field, value in vars(sub).items()
        if field.endswith(_TOKEN_FIELDS)
        and any(isinstance(v, int) and not 0 <= v < vocab for v in _ints(value))
    ]
    if stale:
        msg = (
            f"token id(s) outside the tiny vocabulary of {vocab}: {', '.join(stale)}; map each to"
            " its token with token_ids={'field': '<token>'} and list the token in special_tokens"
        )
        raise ConfigError(msg)


def _ints(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _build_model(config: Any, architecture: str | None) -> Any:
    import transformers

    if architecture is None and config.architectures:
        architecture = config.architectures[0]
    if architecture is None:
        model = transformers.AutoModelForImageTextToText.from_config(config)
    else:
        cls = getattr(transformers, architecture, None)
        if cls is None:
            msg = f"transformers has no model class {architecture!r}"
            raise ConfigError(msg)
        model = cls(config)
    config.architectures = [type(model).__name__]
    return model


def _make_processor(make: Callable[..., Any], tokenizer: Any, config: Any) -> Any:
    """``make(tokenizer, config)``, or ``make(tokenizer)`` when it takes one argument."""
    try:
        inspect.signature(make).bind(tokenizer, config)
    except TypeError:
        return make(tokenizer)
    except ValueError:  # no signature to read (some builtins): give both
        pass
    return make(tokenizer, config)


def _key(parts: Sequence[Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()[:12]


def tiny_checkpoint_like(  # noqa: PLR0913 - each argument is one fact about the model
    dest: Path | str,
    config: Any,
    make_processor: Callable[..., Any],
    *,
    special_tokens: Sequence[str],
    chat_template: str,
    eos_token: str = "<|im_end|>",  # noqa: S107 - a token, not a password
    token_ids: Mapping[str, str] | None = None,
    named_tokens: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    architecture: str | None = None,
    seed: int = 0,
) -> Path:
    """Build (or reuse) a tiny random checkpoint of ``config``'s architecture in ``dest``.

    Offline and deterministic; a few MB. The folder loads with ``AutoProcessor`` and
    ``from_pretrained``, and vLLM serves it when vLLM serves the architecture.

    Args:
        dest: the checkpoint folder. A folder that already holds a complete build of the same
            arguments is reused; a new one is built beside it and moved into place.
        config: a transformers config class (``transformers.Idefics3Config``), instance, or
            the path of a model's ``config.json`` (or of its folder), e.g. one a package ships;
            it is not modified. Every size-like field of it and its sub-configs is shrunk
            (:func:`shrink_config`).
        make_processor: ``make_processor(tokenizer, config)`` (or ``make_processor(tokenizer)``)
            returns the model's processor around the tiny tokenizer, for the shrunk ``config``
            (read image sizes and tokens per image from it). It is saved with the checkpoint.
        special_tokens: tokens the processor and the model need as single tokens: placeholders
            (``"<image>"``), image/row tags, the end-of-turn token. vlmcap's recipe already has
            ``<|endoftext|>`` (padding), ``<|im_start|>`` and ``<|im_end|>``.
        chat_template: the model's chat template (Jinja), set on tokenizer and processor.
        eos_token: the end-of-turn token: the tokenizer's ``eos_token``, every ``eos_token_id``
            of the config and ``generation_config.json``.
        token_ids: config fields (dotted paths, e.g. ``"image_token_id"`` or
            ``"text_config.boi_token_id"``) to set to a token's id. ``vocab_size``,
            ``bos/eos/pad_token_id`` are set without it; any other token id left outside the
            tiny vocabulary is a :class:`~vlmcap.ConfigError` naming the field.
        named_tokens: the tokenizer's model-specific named tokens (each name ends in
            ``_token``), which some processors read off their tokenizer, e.g. Gemma 3's
            ``{"boi_token": "<start_of_image>"}`` (``tokenizer.boi_token``,
            ``tokenizer.boi_token_id``) or InternVL's ``context_image_token``. Each token must be
            in ``special_tokens``; they are saved in ``tokenizer_config.json``, as on the Hub.
        overrides: config fields (dotted paths) set after shrinking, for sizes the generic rules
            cannot know (e.g. ``{"vision_config.image_size": 64}``).
        architecture: the transformers model class to build (default: the config's
            ``architectures[0]``, else ``AutoModelForImageTextToText``).
        seed: seed of the random weights.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``config`` is not a transformers config, a field or token is unknown, a
            named token is not in ``special_tokens`` or its name does not end in ``_token``, or
            ``make_processor`` added tokens that are not in ``special_tokens``.
    """
    tokens = list(dict.fromkeys([*special_tokens, eos_token]))
    named = dict(named_tokens or {})
    _check_named_tokens(named, tokens)
    shrunk = shrink_config(config)
    for path, value in (overrides or {}).items():
        _set_path(shrunk, path, value)
    token_map = dict(token_ids or {})
    maker = getattr(make_processor, "__module__", ""), getattr(make_processor, "__qualname__", "")
    parts = [_BUILD_VERSION, shrunk.to_dict(), tokens, chat_template, eos_token, token_map, named]
    key = _key([*parts, architecture, maker, seed])
    build = functools.partial(
        _build,
        config=shrunk,
        make_processor=make_processor,
        tokens=tokens,
        chat_template=chat_template,
        eos_token=eos_token,
        token_ids=token_map,
        named_tokens=named,
        architecture=architecture,
        seed=seed,
    )
    return build_atomically(Path(dest), key, build)


def _check_named_tokens(named: Mapping[str, str], tokens: Sequence[str]) -> None:
    for name, token in named.items():
        if not name.endswith("_token"):
            msg = f"named token {name!r} must end in '_token' (e.g. 'boi_token')"
            raise ConfigError(msg)
        if token not in tokens:
            msg = f"named token {name}={token!r} is not in special_tokens; add it there"
            raise ConfigError(msg)


def _build(  # noqa: PLR0913
    dest: Path,
    *,
    config: Any,
    make_processor: Callable[..., Any],
    tokens: Sequence[str],
    chat_template: str,
    eos_token: str,
    token_ids: Mapping[str, str],
    named_tokens: Mapping[str, str],
    architecture: str | None,
    seed: int,
) -> None:
    import torch

    torch.manual_seed(seed)
    tokenizer, _ = _tokenizer(dest, chat_template, extra=tokens)
    if named_tokens:  # transformers reads custom ``*_token`` arguments as named special tokens
        tokenizer = type(tokenizer).from_pretrained(dest, **named_tokens)
    tokenizer.eos_token = eos_token
    before = set(tokenizer.get_vocab())
    processor = _make_processor(make_processor, tokenizer, config)
    added = sorted(set(tokenizer.get_vocab()) - before)
    if added:
        msg = (
            f"make_processor added token(s) {added} to the tokenizer; list every token the"
            " processor needs in special_tokens"
        )
        raise ConfigError(msg)
    if getattr(processor, "chat_template", None) is None and hasattr(processor, "chat_template"):
        processor.chat_template = chat_template
    eos = int(tokenizer.convert_tokens_to_ids(eos_token))
    pad = int(tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    _set_token_ids(config, tokenizer, eos, pad, token_ids)
    model = _build_model(config, architecture)
    _save(model, tokenizer, processor, dest, eos=eos, pad=pad)


def _save(  # noqa: PLR0913 - the parts of one checkpoint
    model: Any, tokenizer: Any, processor: Any, dest: Path, *, eos: int, pad: int
) -> None:
    """Weights (word-emitting head, bf16, the Hub's layout), processor, generation config."""
    save_with_word_head(model, tokenizer, dest)
    towers = {type(m).__name__ for n, m in model.named_modules() if n.endswith("vision_tower")}
    if towers & _NESTED_TOWERS:
        vision_tower_hub_layout(dest / "model.safetensors")
    processor.save_pretrained(dest)
    gen = {"bos_token_id": pad, "eos_token_id": [eos]}
    (dest / "generation_config.json").write_text(json.dumps(gen, indent=2))
