"""The executable plugin contract: what a plugin's outputs must be, as pure validators.

The same functions run in two places:

- at runtime, in the driver: every request is validated before it reaches the engine, and every
  stage-2 request when the plugin returns it; an invalid one becomes that input's error, whose
  message starts with the rule ID (``[C-INPUT-003] ...``), and the rest of the batch runs on;
- in the conformance suite (:mod:`vlmcap.testing`), which is built on them and adds the checks
  that need the original frames or many examples (pixels kept, inputs not mutated, ...).

vLLM takes a video in several forms (bare frames, ``(frames, metadata)``, a one-item list of
either). :class:`Video` is the one parser of those forms; nothing else in vlmcap unpacks them.
"""

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import numpy as np
import torch

from vlmcap._errors import PluginError
from vlmcap._records import VideoMetadata, VllmCaptionRequest


MODALITIES = frozenset({"image", "video", "audio"})
"""vLLM's modality names (singular)."""
VISUAL = frozenset({"video", "image"})


class PluginContractError(PluginError):
    """A plugin's output broke a contract rule; the message starts with ``[<rule ID>]``.

    Attributes:
        rule_id: e.g. ``"C-INPUT-003"`` (see ``contracts/README.md``).
        detail: what was wrong and how to fix it.
    """

    def __init__(self, rule_id: str, detail: str) -> None:
        self.rule_id = rule_id
        self.detail = detail
        super().__init__(f"[{rule_id}] {detail}")


VideoForm = Literal["bare", "tuple", "list", "list_tuple"]


def _is_frames_obj(x: object) -> bool:
    return isinstance(x, torch.Tensor | np.ndarray)


@attrs.frozen
class Video:
    """One video as vLLM takes it: the frames, their metadata if any, and the form it came in.

    Forms: ``"bare"`` (frames), ``"tuple"`` (``(frames, metadata)``), ``"list"`` (``[frames]``),
    ``"list_tuple"`` (``[(frames, metadata)]``). ``frames`` is a tensor or array (channels first
    or last) or a list of per-frame images/arrays.
    """

    frames: Any = attrs.field(eq=False)
    metadata: Mapping[str, Any] | None = attrs.field(eq=False)
    form: VideoForm

    @classmethod
    def parse(cls, value: Any) -> "Video | None":
        """The video in ``value``, or ``None`` if it is none of vLLM's video forms."""
        listed = False
        if isinstance(value, list) and len(value) == 1:
            inner = value[0]
            if isinstance(inner, tuple) or (_is_frames_obj(inner) and inner.ndim == 4):
                value, listed = inner, True
        if isinstance(value, tuple):
            if len(value) != 2 or not isinstance(value[1], Mapping):
                return None
            return cls(value[0], value[1], "list_tuple" if listed else "tuple")
        if _is_frames_obj(value) or (isinstance(value, list) and value):
            return cls(value, None, "list" if listed else "bare")
        return None

    def to_vllm(self) -> Any:
        """The value for ``multi_modal_data["video"]``, in this video's form."""
        if self.metadata is None:
            return [self.frames] if self.form == "list" else self.frames
        pair = (self.frames, self.metadata)
        return [pair] if self.form in ("list", "list_tuple") else pair

    def with_metadata(self, metadata: Mapping[str, Any]) -> "Video":
        """The video with ``metadata`` (a bare video becomes a tuple, a list a list_tuple)."""
        form: VideoForm = "list_tuple" if self.form in ("list", "list_tuple") else "tuple"
        return Video(self.frames, dict(metadata), form)

    @property
    def num_frames(self) -> int | None:
        """Frames in the video, or ``None`` if its layout is unreadable."""
        if isinstance(self.frames, list):
            return len(self.frames)
        shape = getattr(self.frames, "shape", None)
        return int(shape[0]) if shape is not None and len(shape) == 4 else None

    def tensor(self) -> torch.Tensor | None:
        """The frames as a CPU tensor in the layout given (``None`` for a list of frames)."""
        return as_tensor(self.frames)


def as_tensor(x: Any) -> torch.Tensor | None:
    """A tensor or array as a CPU tensor, else ``None``."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    return None


def is_pil_image(x: object) -> bool:
    """True for a PIL image."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL comes with transformers
        return False
    return isinstance(x, Image.Image)


def attach_video_metadata(
    inputs: Mapping[str, Any], metadata: VideoMetadata | Mapping[str, Any]
) -> dict[str, Any]:
    """``inputs`` with ``metadata`` attached to a video that carries none (a new dict).

    ``{"video": frames}`` and ``{"video": [frames]}`` become ``(frames, md)`` and
    ``[(frames, md)]`` (vLLM 0.31+ needs the metadata for Qwen-family models).

    A video that already carries metadata, an image input, or an unreadable video is left as is.
    """
    mm = inputs.get("multi_modal_data")
    if not isinstance(mm, Mapping) or "video" not in mm:
        return dict(inputs)
    video = Video.parse(mm["video"])
    if video is None or video.metadata is not None:
        return dict(inputs)
    md = metadata.to_vllm() if isinstance(metadata, VideoMetadata) else metadata
    return {**inputs, "multi_modal_data": {**mm, "video": video.with_metadata(md).to_vllm()}}


# ---------------------------------------------------------------------------------------------
# Validators. Each returns why a value breaks its rule, or None.
# ---------------------------------------------------------------------------------------------


def prompt_problem(inputs: Mapping[str, Any], vocab_size: int | None) -> str | None:  # noqa: PLR0911 - one return per case reads best
    """C-INPUT-002: why ``inputs`` is not a vLLM prompt with ``multi_modal_data``, or ``None``."""
    if "prompt_token_ids" in inputs:
        ids = inputs["prompt_token_ids"]
        if not isinstance(ids, list | tuple) or not ids:
            return (
                f"prompt_token_ids is {type(ids).__name__}"
                f"{' (empty)' if isinstance(ids, list | tuple) else ''}; it must be a non-empty "
                "list of int (e.g. processor.apply_chat_template(...)[0].tolist())"
            )
        bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool)]
        if bad:
            return (
                f"prompt_token_ids holds {type(bad[0]).__name__} values ({bad[0]!r}); "
                "convert them with int() or .tolist()"
            )
        lo, hi = min(ids), max(ids)
        if lo < 0 or (vocab_size is not None and hi >= vocab_size):
            out = lo if lo < 0 else hi
            return (
                f"prompt_token_ids holds {out}, outside the tokenizer's vocabulary of {vocab_size}"
            )
    elif "prompt" in inputs:
        prompt = inputs["prompt"]
        if not isinstance(prompt, str) or not prompt:
            return f"prompt is {prompt!r:.60}; it must be a non-empty str"
    else:
        return (
            f"the inputs have keys {sorted(map(str, inputs))}: neither prompt_token_ids nor "
            "prompt; vLLM needs one of them"
        )
    if not isinstance(inputs.get("multi_modal_data"), Mapping):
        return (
            f"multi_modal_data is {type(inputs.get('multi_modal_data')).__name__}; it must be a "
            "dict such as {'video': frames}"
        )
    return None


def modality_problem(mm: Any) -> str | None:
    """C-INPUT-003: why ``mm`` does not use vLLM's modality names, or ``None``."""
    if not isinstance(mm, Mapping):
        return "multi_modal_data is not a dict"
    unknown = sorted(str(k) for k in mm if k not in MODALITIES)
    if unknown:
        hints = []
        for key in unknown:
            stem = key.lower().removesuffix("s")
            match = difflib.get_close_matches(stem, sorted(MODALITIES), 1, 0.4)
            if match:
                hints.append(f"{key!r} -> {match[0]!r}")
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        return (
            f"multi_modal_data has key(s) {unknown}; vLLM knows only {sorted(MODALITIES)}, "
            f"singular{hint}"
        )
    if not VISUAL & set(mm):
        return f"multi_modal_data has no 'video' or 'image' (keys: {sorted(mm)})"
    return None


def layout_hint(shape: Sequence[int], num_frames: int | None = None) -> str:
    """How a wrongly laid-out video tensor probably came about."""
    if len(shape) == 4 and shape[0] == 3 and (num_frames is None or shape[1] == num_frames):
        return "it looks like (3, T, H, W): do not transpose(0, 1) the frames"
    if len(shape) == 3:
        return "it has no frames axis: pass all frames, (T, 3, H, W)"
    return "keep the (frames, 3, height, width) layout the plugin was given"


def video_problem(value: Any) -> str | None:
    """C-INPUT-004 (the part that needs no original frames): why the video is unusable.

    A video is one of vLLM's forms (:class:`Video`); its frames are a ``(T, 3, H, W)`` tensor or
    array, a channels-last ``(T, H, W, 3)`` one, or a list of T images/frames; metadata, if any,
    describes T frames.
    """
    video = Video.parse(value)
    if video is None:
        return (
            f"multi_modal_data['video'] is a {type(value).__name__}; pass the frames "
            "(or (frames, metadata), or [(frames, metadata)])"
        )
    if isinstance(video.frames, list):
        for item in video.frames:
            t = as_tensor(item)
            if not is_pil_image(item) and (
                t is None or t.ndim != 3 or 3 not in (t.shape[0], t.shape[-1])
            ):
                return "the video is a list, but not of PIL images or (3, H, W) frames"
    else:
        t = video.tensor()
        if t is None:
            return f"the video frames are a {type(video.frames).__name__}, not a tensor or array"
        shape = tuple(int(s) for s in t.shape)
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            return (
                f"multi_modal_data['video'] has shape {shape}; expected (T, 3, H, W) "
                f"(or channels-last (T, H, W, 3)): {layout_hint(shape)}"
            )
    n = video.num_frames
    if video.metadata is not None:
        total = video.metadata.get("total_num_frames")
        if total is not None and n is not None and total != n:
            return f"the video has {n} frames but its metadata says total_num_frames={total}"
    return None


def image_problem(images: Any, max_images: int | None = None) -> str | None:
    """C-INPUT-004 for images: 1.. PIL images or (3, H, W) tensors (at most ``max_images``)."""
    items = images if isinstance(images, list) else [images]
    if not items or (max_images is not None and len(items) > max_images):
        return f"multi_modal_data['image'] holds {len(items)} images for {max_images} frames"
    for item in items:
        if is_pil_image(item):
            continue
        t = as_tensor(item)
        if t is None or (
            not (t.ndim == 3 and int(t.shape[0]) == 3)
            and not (t.ndim == 4 and int(t.shape[1]) == 3)
        ):
            shape = None if t is None else tuple(t.shape)
            return (
                f"multi_modal_data['image'] holds a {type(item).__name__} (shape {shape}); "
                "use PIL images or (3, H, W) tensors"
            )
    return None


def llm_input_violation(
    inputs: object, vocab_size: int | None, *, stage: Literal[1, 2] = 1
) -> PluginContractError | None:
    """The first rule a plugin's vLLM input breaks (C-INPUT-001..004, or C-REFINE-009), or None.

    ``stage=2`` reports every problem as C-REFINE-009 (the stage-2 inputs are invalid).
    """

    def fail(rule: str, text: str) -> PluginContractError:
        where = "make_llm_input" if stage == 1 else "the stage-2 inputs"
        return PluginContractError(rule if stage == 1 else "C-REFINE-009", f"{where}: {text}")

    if not isinstance(inputs, Mapping):
        return fail("C-INPUT-001", f"a {type(inputs).__name__}, not a dict")
    problem = prompt_problem(inputs, vocab_size)
    if problem is not None:
        return fail("C-INPUT-002", problem)
    mm = inputs["multi_modal_data"]
    problem = modality_problem(mm)
    if problem is not None:
        return fail("C-INPUT-003", problem)
    if "video" in mm:
        problem = video_problem(mm["video"])
    if problem is None and "image" in mm:
        problem = image_problem(mm["image"])
    if problem is not None:
        return fail("C-INPUT-004", problem)
    return None


def check_llm_input(inputs: object, vocab_size: int | None) -> Mapping[str, Any]:
    """``inputs`` if it is a valid stage-1 vLLM input, else raise :class:`PluginContractError`."""
    violation = llm_input_violation(inputs, vocab_size)
    if violation is not None:
        raise violation
    assert isinstance(inputs, Mapping)  # noqa: S101 - llm_input_violation proved it
    return inputs


def refined_request_violation(
    stage1: VllmCaptionRequest, refined: object, vocab_size: int | None
) -> PluginContractError | None:
    """The first rule a stage-2 request breaks (C-REFINE-001/002/003/009), or None."""
    if not isinstance(refined, VllmCaptionRequest):
        return PluginContractError(
            "C-REFINE-001",
            f"make_refined_llm_request returned a {type(refined).__name__}; return a "
            "vlmcap.VllmCaptionRequest",
        )
    if refined.caption is not None or refined.stage2_prompt is not None:
        return PluginContractError(
            "C-REFINE-002",
            f"the stage-2 request has caption={refined.caption!r:.40} and "
            f"stage2_prompt={refined.stage2_prompt!r:.40}; both must be None (leave them unset)",
        )
    rid: object = refined.request_id  # attrs does not check types: a plugin may pass anything
    if not isinstance(rid, str) or not rid or rid == stage1.request_id:
        return PluginContractError(
            "C-REFINE-003",
            f"the stage-2 request_id is {rid!r}, stage 1's is {stage1.request_id!r}; use a new "
            "unique id (secrets.token_hex(8))",
        )
    return llm_input_violation(refined.inputs, vocab_size, stage=2)


def check_refined_request(
    stage1: VllmCaptionRequest, refined: object, vocab_size: int | None
) -> VllmCaptionRequest:
    """``refined`` if it is a valid stage-2 request for ``stage1``, else raise."""
    violation = refined_request_violation(stage1, refined, vocab_size)
    if violation is not None:
        raise violation
    assert isinstance(refined, VllmCaptionRequest)  # noqa: S101 - proved above
    return refined


def vocab_size_of(processor: Any) -> int | None:
    """The tokenizer's vocabulary size (added tokens included), or ``None`` if unknown."""
    tokenizer = getattr(processor, "tokenizer", None) or processor
    try:
        return len(tokenizer)
    except TypeError:
        size = getattr(tokenizer, "vocab_size", None)
        return int(size) if isinstance(size, int) else None


# ---------------------------------------------------------------------------------------------
# C-INPUT-007: placeholders for the items, items within the plugin's own limits (no engine)
# ---------------------------------------------------------------------------------------------


def item_counts(mm: Mapping[str, Any]) -> dict[str, int]:
    """How many items of each visual modality ``multi_modal_data`` holds."""
    counts: dict[str, int] = {}
    if "video" in mm:
        video = mm["video"]
        whole = isinstance(video, list) and all(
            isinstance(v, tuple) or getattr(v, "ndim", 0) == 4 for v in video
        )  # a list of whole videos, not a list of one video's frames
        counts["video"] = len(video) if whole and video else 1
    if "image" in mm:
        images = mm["image"]
        counts["image"] = len(images) if isinstance(images, list) else 1
    return counts


def placeholder_problem(inputs: Mapping[str, Any], processor: Any) -> str | None:
    """Why the prompt lacks the model's placeholder for an item it sends, or ``None``.

    The placeholder is what the processor declares (``processor.video_token`` and
    ``image_token``, as Hugging Face processors do); a processor that declares none is not
    checked. vLLM expands each placeholder into the item's tokens: a prompt without one makes
    the engine reject the request, or the model caption without seeing the frames.
    """
    mm = inputs.get("multi_modal_data")
    if not isinstance(mm, Mapping):
        return None
    tokenizer = getattr(processor, "tokenizer", None) or processor
    for modality, count in item_counts(mm).items():
        token = getattr(processor, f"{modality}_token", None)
        if not isinstance(token, str) or not token:
            continue
        if "prompt_token_ids" in inputs:
            token_id = getattr(processor, f"{modality}_token_id", None)
            if not isinstance(token_id, int):
                token_id = tokenizer.convert_tokens_to_ids(token)
            found = sum(1 for i in inputs["prompt_token_ids"] if i == token_id)
        else:
            found = str(inputs.get("prompt", "")).count(token)
        if found < count:
            return (
                f"the prompt has {found} {token!r} placeholder(s) for {count} {modality} "
                f"item(s); put one {{'type': '{modality}'}} entry per item in the chat message"
            )
    return None


def limit_problem(mm: Mapping[str, Any], limits: Mapping[str, Any]) -> str | None:
    """Why ``multi_modal_data`` sends more items than ``limit_mm_per_prompt`` allows, or None."""
    for modality, count in item_counts(mm).items():
        limit = limits.get(modality)
        if isinstance(limit, Mapping):  # vLLM's {"count": N, ...} form
            limit = limit.get("count")
        if isinstance(limit, int) and count > limit:
            return (
                f"it sends {count} {modality} item(s), but its model() allows "
                f"limit_mm_per_prompt[{modality!r}]={limit}; vLLM rejects the request"
            )
    return None
