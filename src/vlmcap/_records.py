"""Immutable records: configuration, requests, results, video metadata.

All are frozen attrs classes; change them with :func:`attrs.evolve`. Field names follow
cosmos-curate's data model so that plugins written against its guide keep working.
"""

import enum
import math
import numbers
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from vlmcap._errors import ConfigError, MetadataError
from vlmcap._quality import QualitySettings


def _positive(_inst: object, attribute: "attrs.Attribute[Any]", value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_inst: object, attribute: "attrs.Attribute[Any]", value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"{attribute.name} must be >= 0, got {value!r}")


def _md_positive(_inst: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise MetadataError(f"{attribute.name} must be a number > 0, got {value!r}")


def _int_tuple(values: object) -> tuple[int, ...]:  # validates anything it is given
    if not isinstance(values, Iterable) or isinstance(values, str | bytes):
        raise MetadataError(f"expected a sequence of ints, got {values!r:.60}")
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"expected a sequence of ints, got {values!r}: {exc}") from exc


def _optional_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


@attrs.frozen
class VllmSamplingConfig:
    """Sampling settings; the defaults are cosmos-curate's (near-greedy, ``min_tokens=16``).

    ``max_tokens`` is not here: it is :attr:`VllmConfig.max_output_tokens`, the seed's name.
    """

    temperature: float = attrs.field(default=0.1, validator=_non_negative)
    top_p: float = attrs.field(default=0.001, validator=_positive)
    top_k: int = attrs.field(default=0, validator=_non_negative)
    """0 disables top-k."""
    min_p: float = attrs.field(default=0.0, validator=_non_negative)
    repetition_penalty: float = attrs.field(default=1.05, validator=_positive)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    min_tokens: int = attrs.field(default=16, validator=_non_negative)
    """Guards against empty captions under fp8 (cosmos-curate's default)."""
    seed: int | None = None
    ignore_eos: bool = False
    """Benchmarks only: pin the output length to ``max_output_tokens``."""


@attrs.frozen
class VllmConfig:
    """Everything that chooses and configures a model.

    The seed guide's fields (``model_variant``, ``num_gpus``, ``batch_size``,
    ``max_output_tokens``, ``fp8``, ``preprocess``, ``disable_mmcache``) keep their meaning.

    ``preprocess`` selects where resizing happens: ``False`` (default, as in cosmos-curate)
    means vlmcap resizes frames on the client to the model's grid; ``True`` means the model's
    own processor resizes them inside vLLM.
    """

    model_variant: str
    num_gpus: int = attrs.field(default=1, validator=_positive)
    batch_size: int = attrs.field(default=4, validator=_positive)
    max_output_tokens: int = attrs.field(default=8192, validator=_positive)
    fp8: bool = False
    preprocess: bool = False
    disable_mmcache: bool = False
    model_path: Path | None = attrs.field(default=None, converter=_optional_path)
    """A local checkpoint folder; wins over ``$VLMCAP_MODEL_DIR`` and the Hugging Face cache."""
    prompt_variant: str = "default"
    prompt_text: str | None = None
    stage2_caption: bool = False
    stage2_prompt_text: str | None = None
    sampling: VllmSamplingConfig = attrs.field(factory=VllmSamplingConfig)
    max_model_len: int | None = None
    """``None``: the plugin's default (32768 for the Qwen family)."""
    use_image_input: bool = False
    performance_mode: Literal["balanced", "interactivity", "throughput"] | None = attrs.field(
        default="throughput",
        validator=attrs.validators.in_(("balanced", "interactivity", "throughput", None)),
    )
    """cosmos-curate's field: plugins pass it to ``LLM(performance_mode=...)`` (vLLM's setting;
    ``"throughput"`` doubles the engine's batch limits). Dropped, with a warning, by a vLLM that
    lacks the setting."""
    copy_weights_to: Path | None = attrs.field(default=None, converter=_optional_path)
    """cosmos-curate's fast local copy: when set, ``model_path()`` resolves to
    ``copy_weights_to/<hf id>`` and :func:`vlmcap.vllm_model` copies the checkpoint there first
    if it is missing (e.g. a local NVMe disk under a network checkpoint store)."""
    quality: QualitySettings = attrs.field(factory=QualitySettings)
    """Thresholds of the caption quality flags, the flags that reject a window (error row) and
    the sampling of a retry (see :mod:`vlmcap._quality`); not part of the settings fingerprint."""
    max_video_tokens: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_positive)
    )
    """Visual token budget per window: the file job shrinks the frames, and if needed keeps
    fewer, so a window's video tokens stay within it (see :mod:`vlmcap._budget`); ``None``: the
    model's own frame size."""
    sampling_fps: float = attrs.field(default=2.0, validator=_positive)
    """fps assumed for bare frame tensors when no metadata is given."""
    gpu_memory_utilization: float | None = None
    """``None``: the plugin's default on GPU, a safe fraction of RAM on a CPU build of vLLM."""
    stall_timeout_s: float = attrs.field(default=600.0, validator=_positive)
    """An engine that finishes no request for this long ends the call with errors."""
    max_retries: int = attrs.field(default=3, validator=_non_negative)
    compile_mm_encoder: bool = True
    """Compile the vision encoder with torch.compile (vLLM's ``compilation_config=
    {"compile_mm_encoder": True}``) on GPU, where vLLM supports it for the model (Qwen2.5-VL in
    vLLM 0.26). Measured on an H200 (W1): vlmcap 11.0 vs 9.7 clips/s, two stages 7.1 vs 5.8.
    Costs compile time at engine start; ``False`` turns it off. Dropped on CPU builds."""

    @property
    def sampling_config(self) -> VllmSamplingConfig:
        """cosmos-curate's name for :attr:`sampling`."""
        return self.sampling


@attrs.frozen
class VllmCaptionRequest:
    """One request to the engine: stage 1 (``stage2_prompt`` set if a refinement follows) or 2.

    As in the seed guide, a plugin builds a stage-2 request with only ``request_id`` and
    ``inputs``; ``caption`` and ``stage2_prompt`` must stay ``None`` on it.
    """

    request_id: str
    inputs: Mapping[str, Any] = attrs.field(eq=False)
    caption: str | None = None
    stage2_prompt: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None


class CaptionStatus(enum.StrEnum):
    """Outcome of one input: ``success``, ``truncated`` (hit ``max_output_tokens``) or ``error``."""

    SUCCESS = "success"
    TRUNCATED = "truncated"
    ERROR = "error"


UNKNOWN_CAPTION = "Unknown caption"
"""The seed's sentinel for a failed input in ``vllm_caption``'s ``list[str]``."""


@attrs.frozen
class TokenCounts:
    """Prompt and output tokens, summed over the stages of one input."""

    prompt_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: "TokenCounts") -> "TokenCounts":
        """Sum two counts."""
        return TokenCounts(
            self.prompt_tokens + other.prompt_tokens, self.output_tokens + other.output_tokens
        )


@attrs.frozen
class CaptionResult:
    """The result for one input, in input order.

    ``text`` is the final stage's decoded caption (empty for errors); ``finish_reason`` is the
    final stage's; token counts are summed over stages; ``stages`` is how many ran.
    """

    text: str
    status: CaptionStatus
    finish_reason: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    stages: int = 0

    @property
    def ok(self) -> bool:
        """True for ``success`` and ``truncated``."""
        return self.status is not CaptionStatus.ERROR

    @classmethod
    def failure(
        cls, error: str, counts: TokenCounts | None = None, stages: int = 0
    ) -> "CaptionResult":
        """An error result carrying the cause."""
        c = counts or TokenCounts()
        return cls(
            text="",
            status=CaptionStatus.ERROR,
            prompt_tokens=c.prompt_tokens,
            output_tokens=c.output_tokens,
            error=error,
            stages=stages,
        )

    @classmethod
    def from_caption(
        cls, caption: str, finish_reason: str | None, counts: TokenCounts, stages: int
    ) -> "CaptionResult":
        """Classify a decoded caption as cosmos-curate does, with whitespace-only as an error."""
        text = caption.strip()
        if not text:
            return cls.failure(
                f"empty caption (finish_reason={finish_reason})", counts, stages
            ).with_finish_reason(finish_reason)
        status = CaptionStatus.TRUNCATED if finish_reason == "length" else CaptionStatus.SUCCESS
        return cls(
            text=text,
            status=status,
            finish_reason=finish_reason,
            prompt_tokens=counts.prompt_tokens,
            output_tokens=counts.output_tokens,
            stages=stages,
        )

    def with_finish_reason(self, finish_reason: str | None) -> "CaptionResult":
        """A copy with ``finish_reason`` set."""
        return attrs.evolve(self, finish_reason=finish_reason)

    def as_seed_string(self) -> str:
        """The seed's ``list[str]`` element: the caption, or ``"Unknown caption"``."""
        return self.text if self.ok else UNKNOWN_CAPTION


@attrs.frozen
class VideoMetadata:
    """What vLLM needs to know about the frames of one video (required by vLLM 0.31+ for Qwen).

    ``fps`` is the true rate of the frames *as sampled*, ``frames_indices`` index them (0..T-1),
    so timestamps ``i / fps`` are right for every Qwen generation.
    """

    fps: float = attrs.field(validator=_md_positive)
    total_num_frames: int = attrs.field(validator=_md_positive)
    frames_indices: tuple[int, ...] = attrs.field(converter=_int_tuple)
    duration: float = attrs.field(validator=_md_positive)
    width: int | None = None
    height: int | None = None
    video_backend: str = "pyav"
    do_sample_frames: Literal[False] = False

    def __attrs_post_init__(self) -> None:
        """Check that the fields agree with each other."""
        if len(self.frames_indices) != self.total_num_frames:
            raise MetadataError(
                f"frames_indices has {len(self.frames_indices)} entries, "
                f"total_num_frames is {self.total_num_frames}"
            )
        if not math.isfinite(self.fps) or not math.isfinite(self.duration):
            raise MetadataError(f"fps and duration must be finite: {self.fps}, {self.duration}")

    @classmethod
    def uniform(
        cls, num_frames: int, fps: float, *, width: int | None = None, height: int | None = None
    ) -> "VideoMetadata":
        """Metadata for ``num_frames`` frames sampled uniformly at ``fps``."""
        if not fps > 0:
            raise MetadataError(f"fps must be > 0, got {fps!r}")
        return cls(
            fps=fps,
            total_num_frames=num_frames,
            frames_indices=tuple(range(num_frames)),
            duration=num_frames / fps,
            width=width,
            height=height,
        )

    def check_matches(self, num_frames: int, field: str = "metadata") -> None:
        """Raise :class:`MetadataError` unless this describes ``num_frames`` frames."""
        if self.total_num_frames != num_frames:
            raise MetadataError(
                f"{field}: describes {self.total_num_frames} frames, the video has {num_frames}"
            )

    def to_vllm(self) -> dict[str, Any]:
        """The dict vLLM takes as the second element of a ``(frames, metadata)`` video."""
        d: dict[str, Any] = {
            "fps": self.fps,
            "duration": self.duration,
            "total_num_frames": self.total_num_frames,
            "frames_indices": list(self.frames_indices),
            "video_backend": "opencv",  # a label vLLM and transformers accept
            "do_sample_frames": False,
        }
        if self.width is not None:
            d["width"] = self.width
        if self.height is not None:
            d["height"] = self.height
        return d

    @classmethod
    def from_mapping(cls, md: Mapping[str, Any], field: str = "metadata") -> "VideoMetadata":
        """Parse a vLLM-style metadata dict."""
        try:
            n = int(md["total_num_frames"])
            fps = float(md["fps"])
            return cls(
                fps=fps,
                total_num_frames=n,
                frames_indices=_int_tuple(md.get("frames_indices", range(n))),
                duration=float(md.get("duration", n / fps)),
                width=md.get("width"),
                height=md.get("height"),
            )
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise MetadataError(f"{field}: malformed video metadata {dict(md)!r}: {exc}") from exc
