"""vlmcap: caption video clips with any vision-language model served by vLLM, through a plugin.

The seed API (cosmos-curate's "vLLM interface"): :class:`VllmPlugin`, :class:`VllmConfig`,
:class:`VllmCaptionRequest`, :func:`vllm_model`, :func:`auto_processor`,
:func:`sampling_params`, :func:`make_model_inputs`, :func:`vllm_caption`; plus the typed
:func:`caption_results`. Plugin authors import :class:`LLM` from here instead of ``vllm``.
Plugins of both cosmos-curate forms (:class:`GuidePlugin`, :class:`CurrentPlugin`) are typed
together as :data:`PluginClass`.
"""

from vlmcap import _beartype_rng as _beartype_rng  # first: beartype keeps off global `random`
from vlmcap._boundary import ArgumentTypeError as ArgumentTypeError
from vlmcap._captioner import (
    Captioner as Captioner,
    auto_processor as auto_processor,
    caption_results as caption_results,
    caption_stream as caption_stream,
    make_model_inputs as make_model_inputs,
    sampling_params as sampling_params,
    vllm_caption as vllm_caption,
    vllm_model as vllm_model,
)
from vlmcap._contract import (
    PluginContractError as PluginContractError,
)
from vlmcap._driver import AddsInParallel as AddsInParallel, Engine as Engine
from vlmcap._errors import (
    ConfigError as ConfigError,
    EngineDeadError as EngineDeadError,
    EngineStalledError as EngineStalledError,
    FrameContractError as FrameContractError,
    MetadataError as MetadataError,
    ModelNotFoundError as ModelNotFoundError,
    PluginError as PluginError,
    PromptError as PromptError,
    UnknownVariantError as UnknownVariantError,
    UnsupportedSettingError as UnsupportedSettingError,
    VlmcapError as VlmcapError,
)
from vlmcap._frames import (
    Frames as Frames,
    check_frames as check_frames,
)
from vlmcap._model_ids import (
    MODEL_IDS as MODEL_IDS,
    ModelId as ModelId,
    register_model_id as register_model_id,
)
from vlmcap._plugin import (
    SENT_FRAME_DTYPES as SENT_FRAME_DTYPES,
    CurrentPlugin as CurrentPlugin,
    GuidePlugin as GuidePlugin,
    PinsNoModel as PinsNoModel,
    PluginClass as PluginClass,
    PluginForm as PluginForm,
    SupportsLoRA as SupportsLoRA,
    VllmPlugin as VllmPlugin,
    plugin_form as plugin_form,
    resolve_model_path as resolve_model_path,
    using_model_path as using_model_path,
)
from vlmcap._prompts import (
    DEFAULT_STAGE2_PROMPT as DEFAULT_STAGE2_PROMPT,
    PROMPTS as PROMPTS,
    get_prompt as get_prompt,
    get_stage2_prompt as get_stage2_prompt,
)
from vlmcap._quality import QualitySettings as QualitySettings
from vlmcap._records import (
    UNKNOWN_CAPTION as UNKNOWN_CAPTION,
    CaptionResult as CaptionResult,
    CaptionStatus as CaptionStatus,
    TokenCounts as TokenCounts,
    VideoMetadata as VideoMetadata,
    VllmCaptionRequest as VllmCaptionRequest,
    VllmConfig as VllmConfig,
    VllmSamplingConfig as VllmSamplingConfig,
)
from vlmcap._registry import (
    available_variants as available_variants,
    get_plugin as get_plugin,
    register_plugin as register_plugin,
)
from vlmcap._resize import smart_resize as smart_resize
from vlmcap._vllm_compat import LLM as LLM
from vlmcap.video import (
    MediaError as MediaError,
    caption_paths as caption_paths,
)


__all__ = [
    "DEFAULT_STAGE2_PROMPT",
    "LLM",
    "MODEL_IDS",
    "PROMPTS",
    "SENT_FRAME_DTYPES",
    "UNKNOWN_CAPTION",
    "AddsInParallel",
    "ArgumentTypeError",
    "CaptionResult",
    "CaptionStatus",
    "Captioner",
    "ConfigError",
    "CurrentPlugin",
    "Engine",
    "EngineDeadError",
    "EngineStalledError",
    "FrameContractError",
    "Frames",
    "GuidePlugin",
    "MediaError",
    "MetadataError",
    "ModelId",
    "ModelNotFoundError",
    "PinsNoModel",
    "PluginClass",
    "PluginContractError",
    "PluginError",
    "PluginForm",
    "PromptError",
    "QualitySettings",
    "SupportsLoRA",
    "TokenCounts",
    "UnknownVariantError",
    "UnsupportedSettingError",
    "VideoMetadata",
    "VllmCaptionRequest",
    "VllmConfig",
    "VllmPlugin",
    "VllmSamplingConfig",
    "VlmcapError",
    "auto_processor",
    "available_variants",
    "caption_paths",
    "caption_results",
    "caption_stream",
    "check_frames",
    "get_plugin",
    "get_prompt",
    "get_stage2_prompt",
    "make_model_inputs",
    "plugin_form",
    "register_model_id",
    "register_plugin",
    "resolve_model_path",
    "sampling_params",
    "smart_resize",
    "using_model_path",
    "vllm_caption",
    "vllm_model",
]
