"""The plugin contract, one ID per rule (the same table as ``contracts/README.md``).

Every check of :mod:`vlmcap.testing` verifies exactly one of these rules and reports a
failure under its ID, so a plugin author can look the rule and its reason up.
"""

from collections.abc import Mapping

import attrs


@attrs.frozen
class Contract:
    """One rule of the plugin contract."""

    id: str
    """``C-<FAMILY>-<NNN>``, e.g. ``C-REFINE-002``."""
    rule: str
    """What a plugin must do, in one sentence."""
    reason: str
    """Why: what breaks in vlmcap (or in vLLM) when the rule is broken."""


_TABLE = (
    Contract(
        "C-STRUCT-001",
        "The plugin is a class that implements model_variant, processor, model, make_llm_input, "
        "make_refined_llm_request and decode (itself or in a base class other than VllmPlugin), "
        "each as a @staticmethod or @classmethod.",
        "vlmcap never instantiates a plugin; it calls the methods on the class. "
        "isinstance(plugin, VllmPlugin) only checks names, and a subclass that forgets a method "
        "silently inherits the protocol's empty stub, which returns None.",
    ),
    Contract(
        "C-STRUCT-002",
        "model_variant() takes no argument and returns the same non-empty str, without "
        "surrounding whitespace, on every call.",
        "The variant is the registry key, VllmConfig.model_variant and the key that "
        "using_model_path() (and so --model-path) uses to reach cls.model_path().",
    ),
    Contract(
        "C-STRUCT-003",
        "processor() can be called with no argument (a first parameter named config is "
        "allowed, as in cosmos-curate HEAD); any other parameter is keyword-only with a "
        "default.",
        "vlmcap.auto_processor calls plugin.processor(), or plugin.processor(config) when the "
        "method declares a positional parameter, so any other positional parameter would "
        "receive the config.",
    ),
    Contract(
        "C-STRUCT-004",
        "model(config) takes exactly one required positional parameter, named config; any "
        "other parameter is an optional keyword argument.",
        "vlmcap.vllm_model calls plugin.model(config).",
    ),
    Contract(
        "C-STRUCT-005",
        "make_llm_input(prompt, frames, processor) (the guide's form) or make_llm_input(prompt, "
        "frames, metadata, processor, config) (cosmos-curate's current form): these parameters, "
        "in this order, positional-or-keyword; any other parameter is an optional keyword "
        "argument (in the guide's form vlmcap passes metadata= and config= when declared); the "
        "declared return type, if any, is a dict.",
        "vlmcap.make_model_inputs calls make_llm_input in the plugin's own form (a third "
        "positional parameter named metadata marks the current form); callers of both eras "
        "pass the arguments by these names.",
    ),
    Contract(
        "C-STRUCT-006",
        "make_refined_llm_request(request, processor, refine_prompt=None): these parameters, in "
        "this order, refine_prompt defaulting to None; any other parameter is an optional "
        "keyword argument; the declared return type, if any, is VllmCaptionRequest.",
        "vlmcap's stage 2 calls make_refined_llm_request(request, processor, stage2_prompt); "
        "seed-style callers omit refine_prompt to get the plugin's default prompt.",
    ),
    Contract(
        "C-STRUCT-007",
        "decode(vllm_output): one positional-or-keyword parameter named vllm_output; any other "
        "parameter is an optional keyword argument; the declared return type, if any, is str.",
        "vlmcap calls decode(output) once per finished vLLM request and stores the caption as "
        "text; mypy (through vlmcap.PluginClass) and the runtime check read the same protocol.",
    ),
    Contract(
        "C-STRUCT-008",
        "processor() loads a processor under vlmcap.using_model_path(variant, path), and it has "
        "a tokenizer (processor.tokenizer, or the processor is itself a tokenizer).",
        "--model-path and VllmConfig.model_path reach a plugin only through the inherited "
        "cls.model_path(); token-id prompts can only be checked (and stage 2 built) with the "
        "tokenizer.",
    ),
    Contract(
        "C-INPUT-001",
        "make_llm_input returns a dict, without raising, for every prompt and every frames "
        "tensor vlmcap sends: (T, 3, H, W), uint8 in [0, 255] or float32 in [0, 1] (and the "
        "dtypes the plugin lists in frame_dtypes).",
        "vlmcap hands the caller's frames to the plugin after check_frames(); a plugin that only "
        "works for float32 or for one size fails on real videos.",
    ),
    Contract(
        "C-INPUT-002",
        "The dict holds the text prompt as prompt_token_ids (a non-empty list of token ids "
        "within the tokenizer's vocabulary) or prompt (a non-empty str), and multi_modal_data "
        "(a dict).",
        "These are the only prompt forms vLLM accepts (TokensPrompt, TextPrompt); an id out of "
        "the vocabulary crashes the engine.",
    ),
    Contract(
        "C-INPUT-003",
        "multi_modal_data uses vLLM's modality names only ('video', 'image' or 'audio', "
        "singular), and holds 'video' or 'image'.",
        "vLLM rejects or ignores other keys ('video_frames', 'images'): the model would caption "
        "without seeing the video (plugin guide, common bug 2).",
    ),
    Contract(
        "C-INPUT-004",
        "The video in multi_modal_data is the input frames, or a tensor or array in the same "
        "layout (T, 3, H', W') or channels-last (T, H', W', 3), as vLLM takes numpy videos, with "
        "the same number of frames and, at the same size, the same pixels (up to a uint8/float "
        "conversion), bare or with metadata describing T frames; images are 1..T PIL images or "
        "(3, H', W') tensors.",
        "The frame contract is (frames, 3, height, width); a transposed or permuted tensor "
        "makes the model see noise (plugin guide, common bug 5). Dropping frames makes the video "
        "metadata (fps, frame indices) wrong.",
    ),
    Contract(
        "C-INPUT-005",
        "The prompt reaches the model: the decoded prompt_token_ids (or prompt) contain the "
        "prompt text.",
        "A plugin that ignores the prompt captions every video with a fixed instruction; "
        "prompt variants and custom prompts silently do nothing.",
    ),
    Contract(
        "C-INPUT-006",
        "make_llm_input does not modify the frames tensor it is given.",
        "The caller owns the frames: it may caption them again (retries, another prompt), and "
        "stage 2 reuses them.",
    ),
    Contract(
        "C-INPUT-007",
        "The prompt carries the model's placeholder for every item it sends (the processor's "
        "video_token/image_token, where it declares one), and the items per modality are "
        "within the plugin's own limit_mm_per_prompt (read from its model(config) through "
        "vlmcap.LLM, without building an engine).",
        "Without a placeholder vLLM rejects the request or the model never sees the frames; "
        "more items than the plugin's own limit are rejected by the engine. Both are found "
        "here without a model or an engine.",
    ),
    Contract(
        "C-REFINE-001",
        "make_refined_llm_request returns a vlmcap.VllmCaptionRequest, without raising, for "
        "every stage-1 request that has a caption.",
        "vlmcap submits the returned request as stage 2; anything else ends that input with "
        "an error.",
    ),
    Contract(
        "C-REFINE-002",
        "The stage-2 request has caption None and stage2_prompt None.",
        "A stage-2 request that keeps the stage-1 caption looks finished, and one that keeps "
        "stage2_prompt would be refined again (plugin guide, common bug 1).",
    ),
    Contract(
        "C-REFINE-003",
        "The stage-2 request_id is a non-empty str that differs from the stage-1 id and is "
        "unique across repeated refinements of the same request.",
        "vLLM and the caller key requests by id: a reused id collides with the stage-1 request "
        "or with another refinement (retries refine the same request again).",
    ),
    Contract(
        "C-REFINE-004",
        "The stage-2 request reuses the stage-1 video: the same object (or an equal tensor) as "
        "request.inputs['multi_modal_data']['video'] (or the same images).",
        "Decoding the video again is expensive and may give other frames; stage 2 must "
        "refine the caption of the very same frames (plugin guide, common bug 3).",
    ),
    Contract(
        "C-REFINE-005",
        "The stage-2 prompt contains the stage-1 caption.",
        "Stage 2 refines the stage-1 caption; without it the model captions from scratch.",
    ),
    Contract(
        "C-REFINE-006",
        "When refine_prompt is given, the stage-2 prompt contains it.",
        "Callers choose the refinement instruction per input (stage2_prompts); a plugin that "
        "ignores it silently uses another instruction.",
    ),
    Contract(
        "C-REFINE-007",
        "make_refined_llm_request does not modify the stage-1 request (its inputs, prompt, "
        "multi_modal_data and frames).",
        "The stage-1 request stays in use: retries resubmit it, and the caller may read it.",
    ),
    Contract(
        "C-REFINE-008",
        "A request whose caption is None makes make_refined_llm_request raise ValueError, "
        "TypeError or a vlmcap.VlmcapError whose message names the caption.",
        "A cryptic crash ('can only concatenate str') or a prompt containing 'None' hides the "
        "real problem (plugin guide, common bug 6).",
    ),
    Contract(
        "C-REFINE-009",
        "The stage-2 inputs are valid vLLM inputs: a prompt (prompt_token_ids in the "
        "vocabulary, or prompt) and multi_modal_data with vLLM's modality names.",
        "vLLM rejects the stage-2 request otherwise, and the input ends with an error after "
        "its stage-1 caption was already paid for.",
    ),
    Contract(
        "C-DECODE-001",
        "decode returns a str for every finished vllm.RequestOutput, including empty and "
        "truncated (finish_reason 'length') outputs.",
        "vlmcap stores the caption as text; anything else is an error for that input "
        "(plugin guide, common bug 4).",
    ),
    Contract(
        "C-DECODE-002",
        "decode returns the first completion's text, up to whitespace at the ends (and removal "
        "of special tokens it does not contain).",
        "Returning the token ids, the prompt or a fixed string loses the caption.",
    ),
    Contract(
        "C-ENGINE-001",
        "(engine=True only) With the tiny checkpoint, model(config) starts a real vLLM engine "
        "and vlmcap captions a clip through stage 1 and stage 2 with non-empty captions, with "
        "in-flight batching on and off.",
        "Only the engine shows that the inputs the plugin builds are what the model's vLLM "
        "processor accepts.",
    ),
)

CONTRACTS: Mapping[str, Contract] = {c.id: c for c in _TABLE}
"""Every contract rule by ID, in document order."""
