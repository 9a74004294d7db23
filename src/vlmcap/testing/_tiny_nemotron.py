"""The tiny Nemotron Nano 12B v2 VL checkpoint (``tiny_checkpoint("nemotron_vl")``).

vLLM serves nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16 as ``NemotronH_Nano_VL_V2``: a RADIO
vision transformer, a pixel-shuffle + MLP projector (``mlp1``) and a NemotronH language model
(Mamba2, attention and MLP layers). vLLM brings its own multimodal processor for it; only the
config is the repository's remote code (``trust_remote_code``), which cannot be downloaded here.
So this checkpoint carries ``configuration_nemotron_vl.py``, written for vlmcap: the fields vLLM
reads (``force_image_size``, ``patch_size``, ``downsample_ratio``, ``ps_version``, ``template``,
``image_tag_type``, ``norm_mean``/``norm_std``, ``projector_hidden_size``, ``vit_hidden_size``,
``use_thumbnail``, a RADIO ``vision_config`` with its timm ``args``, and the language model under
``llm_config``, as transformers' native ``nemotron_h`` config, exposed as ``text_config``).

Tiny sizes: 128-pixel frames in 16-pixel patches (16 vision tokens per frame after the 2x2
pixel shuffle), a 1-block RADIO of width 64 (the timm preset's sizes are overridden through
``args``), and a 4-layer language model of width 128: Mamba2, MLP, attention, MLP
(``hybrid_override_pattern`` ``"M-*-"``). The tokenizer is the shared tiny one plus the
``<image>``, ``<img>``, ``</img>`` and ``<video>`` tokens that vLLM's processor expands; the chat
template (written for vlmcap) renders a video item as ``<video>``. The language head emits
words, as in :mod:`vlmcap.testing._tiny_base`. Weight names are the published checkpoint's:
``vision_model.radio_model.model.*``, ``mlp1.*``, ``language_model.backbone.*``.
"""

import json
import tempfile
from pathlib import Path
from typing import Any

from vlmcap.testing._tiny_base import save_with_word_head
from vlmcap.testing._tiny_chat import _tokenizer


PLACEHOLDERS = ("<image>", "<img>", "</img>", "<video>")
"""Tokens vLLM's Nemotron VL processor looks up: image context, frame start/end, video."""
IMAGE_SIZE = 128
PATCH = 16
VIT_WIDTH = 64
VIT_LAYERS = 1
LLM_WIDTH = 128
PROJECTOR = 256
ATTN_QK_SCALE = 20.0

# Nemotron's chat format, written for vlmcap: ChatML turns, media placeholders before the text.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'video' %}<video>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CONFIGURATION = '''\
"""Config of vlmcap's tiny Nemotron Nano VL v2 checkpoint (local remote code).

The fields vLLM's ``NemotronH_Nano_VL_V2`` reads; written for vlmcap, not copied.
"""

from transformers import AutoConfig, PretrainedConfig


class RadioVisionConfig(PretrainedConfig):
    model_type = "radio"

    def __init__(self, args=None, preferred_resolution=(512, 512), patch_size=16,
                 video_temporal_patch_size=1, **kwargs):
        self.args = dict(args or {})
        self.preferred_resolution = list(preferred_resolution)
        self.patch_size = patch_size
        self.video_temporal_patch_size = video_temporal_patch_size
        super().__init__(**kwargs)


class NemotronNanoVLConfig(PretrainedConfig):
    model_type = "NemotronH_Nano_VL_V2"

    def __init__(self, vision_config=None, llm_config=None, force_image_size=512, patch_size=16,
                 downsample_ratio=0.5, template="nemotron-h-5p5", ps_version="v2",
                 image_tag_type="internvl", projector_hidden_size=4096, vit_hidden_size=1280,
                 norm_mean=(0.48145466, 0.4578275, 0.40821073),
                 norm_std=(0.26862954, 0.26130258, 0.27577711), use_thumbnail=True, **kwargs):
        text = kwargs.pop("text_config", None) if llm_config is None else llm_config
        if not isinstance(vision_config, PretrainedConfig):
            vision_config = RadioVisionConfig(**(vision_config or {}))
        if not isinstance(text, PretrainedConfig):
            text = dict(text or {})
            text = AutoConfig.for_model(text.pop("model_type", "nemotron_h"), **text)
        self.vision_config = vision_config
        self.text_config = text
        self.force_image_size = force_image_size
        self.patch_size = patch_size
        self.downsample_ratio = downsample_ratio
        self.template = template
        self.ps_version = ps_version
        self.image_tag_type = image_tag_type
        self.projector_hidden_size = projector_hidden_size
        self.vit_hidden_size = vit_hidden_size
        self.norm_mean = list(norm_mean)
        self.norm_std = list(norm_std)
        self.use_thumbnail = use_thumbnail
        super().__init__(**kwargs)
'''


def _llm_config(vocab: int, ids: dict[str, int]) -> dict[str, Any]:
    return {
        "model_type": "nemotron_h",
        "torch_dtype": "bfloat16",  # vLLM takes the vision dtype from the language config
        "vocab_size": vocab,
        "hidden_size": LLM_WIDTH,
        "hybrid_override_pattern": "M-*-",
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 64,
        "intermediate_size": 256,
        "mlp_hidden_act": "relu2",
        "mamba_num_heads": 4,
        "mamba_head_dim": 32,
        "n_groups": 1,
        "ssm_state_size": 16,
        "conv_kernel": 4,
        "chunk_size": 128,
        "max_position_embeddings": 32768,
        "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": False,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def _config(vocab: int, ids: dict[str, int]) -> dict[str, Any]:
    return {
        "architectures": ["NemotronH_Nano_VL_V2"],
        "auto_map": {"AutoConfig": "configuration_nemotron_vl.NemotronNanoVLConfig"},
        "model_type": "NemotronH_Nano_VL_V2",
        "torch_dtype": "bfloat16",
        "force_image_size": IMAGE_SIZE,
        "patch_size": PATCH,
        "downsample_ratio": 0.5,
        "template": "nemotron-h-5p5",
        "ps_version": "v2",
        "image_tag_type": "internvl",
        "projector_hidden_size": PROJECTOR,
        "vit_hidden_size": VIT_WIDTH,
        "use_thumbnail": True,
        "img_context_token_id": ids["<image>"],
        "vision_config": {
            "model_type": "radio",
            "patch_size": PATCH,
            "preferred_resolution": [IMAGE_SIZE, IMAGE_SIZE],
            "args": {  # timm preset, then the tiny sizes that override it
                "model": "vit_small_patch16_224",
                "hidden_size": VIT_WIDTH,
                "num_hidden_layers": VIT_LAYERS,
                "num_attention_heads": 2,
                "intermediate_size": 2 * VIT_WIDTH,
                "cpe_max_size": 2 * IMAGE_SIZE,
                "cls_token_per_teacher": False,
                "teachers": [],
            },
        },
        "llm_config": _llm_config(vocab, ids),
    }


def _vision_weights(gen: Any) -> dict[str, Any]:
    """RADIO + projector tensors under the published checkpoint's names (float32)."""
    import torch

    def randn(*shape: int, std: float) -> Any:
        return torch.randn(*shape, generator=gen) * std

    d = VIT_WIDTH
    rows = 2 * IMAGE_SIZE // PATCH  # cpe_max_size / patch
    v = "vision_model.radio_model.model."
    w: dict[str, Any] = {
        v + "patch_generator.embedder.weight": randn(d, 3 * PATCH * PATCH, std=0.05),
        v + "patch_generator.pos_embed": randn(1, rows * rows, d, std=0.02),
        v + "patch_generator.cls_token.token": randn(1, d, std=0.02),
    }
    for i in range(VIT_LAYERS):
        b = f"{v}blocks.{i}."
        for norm in ("norm1", "norm2"):
            w[b + norm + ".weight"] = torch.ones(d)
            w[b + norm + ".bias"] = torch.zeros(d)
        w[b + "attn.qkv.weight"] = randn(3 * d, d, std=0.1)
        w[b + "attn.qkv.bias"] = torch.zeros(3 * d)
        w[b + "attn.proj.weight"] = randn(d, d, std=0.1)
        w[b + "attn.proj.bias"] = torch.zeros(d)
        w[b + "mlp.fc1.weight"] = randn(2 * d, d, std=0.1)
        w[b + "mlp.fc1.bias"] = torch.zeros(2 * d)
        w[b + "mlp.fc2.weight"] = randn(d, 2 * d, std=0.1)
        w[b + "mlp.fc2.bias"] = torch.zeros(d)
    shuffled = 4 * d  # 2x2 pixel shuffle
    w["mlp1.0.weight"] = torch.ones(shuffled)
    w["mlp1.1.weight"] = randn(PROJECTOR, shuffled, std=0.1)
    w["mlp1.3.weight"] = randn(LLM_WIDTH, PROJECTOR, std=0.1)
    return w


def _sharpen_attention(language: Any) -> None:
    """Scale the attention layer up, so that the answer depends on what the frames show.

    At transformers' initial scale, attention is near uniform: the last prompt token sees the
    average of a few hundred tokens, nearly the same for every clip, and greedy decoding then
    writes the same caption for every video. Larger query/key weights make attention pick
    tokens by content; larger value/output weights make what it picks outweigh the token itself.
    """
    import torch

    scale = {"q_proj": ATTN_QK_SCALE, "k_proj": ATTN_QK_SCALE, "v_proj": 4.0, "o_proj": 4.0}
    with torch.no_grad():
        for name, param in language.named_parameters():
            module = name.rsplit(".", 2)[-2] if name.endswith(".weight") else ""
            if module in scale:
                param.mul_(scale[module])


def build_nemotron_vl(dest: Path, seed: int) -> None:
    """Write the tiny Nemotron Nano VL v2 checkpoint into ``dest`` (see the module docstring)."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, NemotronHForCausalLM


    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    tokenizer, ids = _tokenizer(dest, CHAT_TEMPLATE, PLACEHOLDERS)
    cfg = _config(len(tokenizer), ids)
    llm = dict(cfg["llm_config"])
    language = NemotronHForCausalLM(AutoConfig.for_model(llm.pop("model_type"), **llm))
    _sharpen_attention(language)
    with tempfile.TemporaryDirectory() as tmp:  # saved in the hub layout (backbone.*), bf16
        save_with_word_head(language, tokenizer, Path(tmp))
        saved = load_file(Path(tmp) / "model.safetensors")
    tensors = {f"language_model.{k}": t for k, t in saved.items()}
    tensors |= {k: t.to(torch.bfloat16).contiguous() for k, t in _vision_weights(gen).items()}
    save_file(tensors, dest / "model.safetensors", metadata={"format": "pt"})
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    (dest / "configuration_nemotron_vl.py").write_text(CONFIGURATION)
    gen_cfg = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": [ids["<|im_end|>"]]}
    (dest / "generation_config.json").write_text(json.dumps(gen_cfg, indent=2))
