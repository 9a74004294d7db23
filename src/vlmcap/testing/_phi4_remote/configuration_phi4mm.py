"""Phi4MMConfig of vlmcap's tiny Phi-4-multimodal checkpoint (local remote code).

The fields of microsoft/Phi-4-multimodal-instruct's ``configuration_phi4mm.py`` that vLLM's
``Phi4MMForCausalLM`` reads; written for vlmcap, not copied.
"""

from typing import Any, ClassVar

from transformers import PretrainedConfig


SIGLIP_NAME = "siglip-so400m-patch14-448"


class VisionEncoderSettings(dict[str, Any]):
    """``img_processor`` as a dict (vLLM reads ``layer_idx`` from it) that is also a name.

    vLLM looks ``img_processor`` up in a table keyed by the SigLIP encoder's name.
    """

    def __hash__(self) -> int:  # type: ignore[override] # a dict that hashes as the name
        return hash(SIGLIP_NAME)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return other == SIGLIP_NAME
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)


class Phi4MMConfig(PretrainedConfig):  # type: ignore[misc] # transformers is untyped
    """The configuration vLLM's ``Phi4MMForCausalLM`` reads (the remote one's fields)."""

    model_type = "phi4mm"
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["past_key_values"]

    def __init__(  # noqa: PLR0913 - the remote configuration's fields, all optional
        self,
        vocab_size: int = 200064,
        hidden_size: int = 3072,
        intermediate_size: int = 8192,
        num_hidden_layers: int = 32,
        num_attention_heads: int = 32,
        num_key_value_heads: int | None = None,
        resid_pdrop: float = 0.0,
        embd_pdrop: float = 0.0,
        attention_dropout: float = 0.0,
        hidden_act: str = "silu",
        max_position_embeddings: int = 4096,
        original_max_position_embeddings: int = 4096,
        initializer_range: float = 0.02,
        rms_norm_eps: float = 1e-5,
        use_cache: bool = True,
        tie_word_embeddings: bool = False,
        rope_theta: float = 10000.0,
        rope_scaling: dict[str, Any] | None = None,
        partial_rotary_factor: float = 1.0,
        bos_token_id: int = 199999,
        eos_token_id: int | list[int] = 199999,
        pad_token_id: int = 199999,
        sliding_window: int | None = None,
        embd_layer: str | dict[str, Any] = "default",
        img_processor: dict[str, Any] | None = None,
        audio_processor: dict[str, Any] | None = None,
        vision_lora: dict[str, Any] | None = None,
        speech_lora: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        if num_key_value_heads is None:
            num_key_value_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.resid_pdrop = resid_pdrop
        self.embd_pdrop = embd_pdrop
        self.attention_dropout = attention_dropout
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.original_max_position_embeddings = original_max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.use_cache = use_cache
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self.partial_rotary_factor = partial_rotary_factor
        self.sliding_window = sliding_window
        self.embd_layer = embd_layer
        if isinstance(img_processor, dict):
            img_processor = VisionEncoderSettings(img_processor)
        self.img_processor = img_processor
        self.audio_processor = audio_processor
        self.vision_lora = vision_lora
        self.speech_lora = speech_lora
        super().__init__(
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
