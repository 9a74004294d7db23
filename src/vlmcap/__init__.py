"""vlmcap: caption video clips with any vision-language model served by vLLM, through a plugin.

The seed API (cosmos-curate's "vLLM interface"): :class:`VllmPlugin`, :class:`VllmConfig`,
:class:`VllmCaptionRequest`, :func:`vllm_model`, :func:`auto_processor`,
:func:`sampling_params`, :func:`make_model_inputs`, :func:`vllm_caption`; plus the typed
:func:`caption_results`. Plugin authors import :class:`LLM` from here instead of ``vllm``.
"""

from vlmcap._captioner import (
    Engine as Engine,
)
from vlmcap._captioner import (
    auto_processor as auto_processor,
)
from vlmcap._captioner import (
    caption_results as caption_results,
)
from vlmcap._captioner import (
    make_model_inputs as make_model_inputs,
)
from vlmcap._captioner import (
    sampling_params as sampling_params,
)
from vlmcap._captioner import (
    vllm_caption as vllm_caption,
)
from vlmcap._captioner import (
    vllm_model as vllm_model,
)
from vlmcap._errors import (
    ConfigError as ConfigError,
)
from vlmcap._errors import (
    EngineStalledError as EngineStalledError,
)
from vlmcap._errors import (
    FrameContractError as FrameContractError,
)
from vlmcap._errors import (
    MetadataError as MetadataError,
)
from vlmcap._errors import (
    ModelNotFoundError as ModelNotFoundError,
)
from vlmcap._errors import (
    PluginError as PluginError,
)
from vlmcap._errors import (
    PromptError as PromptError,
)
from vlmcap._errors import (
    UnknownVariantError as UnknownVariantError,
)
from vlmcap._errors import (
    UnsupportedSettingError as UnsupportedSettingError,
)
from vlmcap._errors import (
    VlmcapError as VlmcapError,
)
from vlmcap._frames import (
    ByteFrames as ByteFrames,
)
from vlmcap._frames import (
    FloatFrames as FloatFrames,
)
from vlmcap._frames import (
    Frames as Frames,
)
from vlmcap._frames import (
    check_frames as check_frames,
)
from vlmcap._model_ids import (
    MODEL_IDS as MODEL_IDS,
)
from vlmcap._model_ids import (
    ModelId as ModelId,
)
from vlmcap._model_ids import (
    register_model_id as register_model_id,
)
from vlmcap._plugin import (
    VllmPlugin as VllmPlugin,
)
from vlmcap._plugin import (
    resolve_model_path as resolve_model_path,
)
from vlmcap._plugin import (
    using_model_path as using_model_path,
)
from vlmcap._prompts import (
    DEFAULT_STAGE2_PROMPT as DEFAULT_STAGE2_PROMPT,
)
from vlmcap._prompts import (
    PROMPTS as PROMPTS,
)
from vlmcap._prompts import (
    get_prompt as get_prompt,
)
from vlmcap._prompts import (
    get_stage2_prompt as get_stage2_prompt,
)
from vlmcap._records import (
    UNKNOWN_CAPTION as UNKNOWN_CAPTION,
)
from vlmcap._records import (
    CaptionResult as CaptionResult,
)
from vlmcap._records import (
    CaptionStatus as CaptionStatus,
)
from vlmcap._records import (
    TokenCounts as TokenCounts,
)
from vlmcap._records import (
    VideoMetadata as VideoMetadata,
)
from vlmcap._records import (
    VllmCaptionRequest as VllmCaptionRequest,
)
from vlmcap._records import (
    VllmConfig as VllmConfig,
)
from vlmcap._records import (
    VllmSamplingConfig as VllmSamplingConfig,
)
from vlmcap._registry import (
    ENTRY_POINT_GROUP as ENTRY_POINT_GROUP,
)
from vlmcap._registry import (
    available_variants as available_variants,
)
from vlmcap._registry import (
    get_plugin as get_plugin,
)
from vlmcap._registry import (
    register_plugin as register_plugin,
)
from vlmcap._resize import smart_resize as smart_resize
from vlmcap._vllm_compat import LLM as LLM


__all__ = [
    "DEFAULT_STAGE2_PROMPT",
    "ENTRY_POINT_GROUP",
    "LLM",
    "MODEL_IDS",
    "PROMPTS",
    "UNKNOWN_CAPTION",
    "ByteFrames",
    "CaptionResult",
    "CaptionStatus",
    "ConfigError",
    "Engine",
    "EngineStalledError",
    "FloatFrames",
    "FrameContractError",
    "Frames",
    "MetadataError",
    "ModelId",
    "ModelNotFoundError",
    "PluginError",
    "PromptError",
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
    "caption_results",
    "check_frames",
    "get_plugin",
    "get_prompt",
    "get_stage2_prompt",
    "make_model_inputs",
    "register_model_id",
    "register_plugin",
    "resolve_model_path",
    "sampling_params",
    "smart_resize",
    "using_model_path",
    "vllm_caption",
    "vllm_model",
]
