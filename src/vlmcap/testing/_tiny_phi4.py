"""The tiny Phi-4-multimodal checkpoint: local "remote code", tiny weights, a vision LoRA.

vLLM serves microsoft/Phi-4-multimodal-instruct as ``Phi4MMForCausalLM``, which loads its config
and its HF processor through the model repository's remote code (``trust_remote_code``:
``configuration_phi4mm.py`` and ``processing_phi4mm.py``, named by ``auto_map``). That code cannot
be downloaded here, so this checkpoint carries its own two modules, written for vlmcap (real
files of the package `vlmcap.testing._phi4_remote`, copied into the checkpoint):

- ``configuration_phi4mm.py``: ``Phi4MMConfig``, the remote config's fields (Phi-3 style language
  model, ``embd_layer``, ``img_processor``, ``audio_processor``, the LoRA settings).
- ``processing_phi4mm.py``: the remote interface (``input_image_embeds``, ``image_sizes``,
  ``image_attention_mask``, ``num_img_tokens``; ``<|image_i|>`` placeholders expanded to the
  image token ``<|endoftext10|>``) as thin subclasses of transformers' native
  ``phi4_multimodal`` image processor and feature extractor, so the real dynamic-HD crops,
  masks and token counts are computed by transformers.

Shapes that vLLM fixes are kept: a 200064-entry vocabulary (the image placeholder id 200010 is
hard-coded in vLLM), SigLIP's width 1152, 448-pixel crops and 14-pixel patches. Everything vLLM
lets a config choose is tiny: a 2-layer language model of width 64, a tied embedding, a SigLIP
tower with its patch and position embeddings and no encoder layer, and a 1-block audio encoder
(random weights of vLLM's own module shapes, so an engine with audio enabled starts as with the
real model; vlmcap's plugin sets the audio limit to 0, so vLLM skips it).

vLLM reads the vision tower's depth from ``img_processor["layer_idx"]`` (a dict) but also looks
``img_processor`` up as the encoder's name in a table keyed by ``"siglip-so400m-patch14-448"``;
``Phi4MMConfig`` therefore keeps it as a dict that hashes and compares as that name.

The language head (tied to the embedding) is shaped as in :mod:`vlmcap.testing._tiny_base`: rows of
tokens that are not whole words are zero, so greedy decoding emits words. ``vision-lora/`` is a
PEFT adapter on every projection of the language model (rank 8, random, non-zero), the folder
the ``phi4`` plugin attaches to every request.
"""

import json
import shutil
from pathlib import Path
from typing import Any

from vlmcap.testing._tiny_base import CORPUS, TOKENIZER_VOCAB, word_token_mask


IMAGE_TOKEN_ID = 200010
"""``<|endoftext10|>``: the image placeholder id that vLLM's Phi4MM processor hard-codes."""
AUDIO_TOKEN_ID = 200011
VOCAB_SIZE = 200064
HIDDEN = 64
LORA_RANK = 8
DYNAMIC_HD = 2
"""Most 448-pixel crops per image (the real processor allows 36): keeps vLLM's profile small."""
SIGLIP_NAME = "siglip-so400m-patch14-448"
SIGLIP_WIDTH = 1152
SIGLIP_PATCHES = (448 // 14) ** 2
VISION_LAYER_IDX = -28
"""vLLM builds ``27 + layer_idx + 1`` SigLIP encoder layers: none (embeddings only)."""

_SPECIAL = ("<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
_PLACEHOLDERS = tuple(f"<|image_{i}|>" for i in range(1, 101)) + tuple(
    f"<|audio_{i}|>" for i in range(1, 101)
)
_SPARSE = {"<|endoftext10|>": IMAGE_TOKEN_ID, "<|endoftext11|>": AUDIO_TOKEN_ID}

# Phi-4's chat format (written for vlmcap): "<|role|>content<|end|>" turns, then "<|assistant|>".
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)

REMOTE_CODE = Path(__file__).with_name("_phi4_remote")
"""The checkpoint's remote-code modules (real package files, linted and type-checked)."""
REMOTE_MODULES = ("configuration_phi4mm.py", "processing_phi4mm.py")


def _train_tokenizer(dest: Path) -> Any:
    """Byte-level BPE on the shared corpus, with Phi-4's chat and placeholder tokens.

    ``<|endoftext10|>``/``<|endoftext11|>`` sit at Phi-4's ids 200010/200011 (a sparse
    vocabulary: vLLM hard-codes the image token id).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast


    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB + len(_PLACEHOLDERS),  # as many merges as the others
        special_tokens=[*_SPECIAL, *_PLACEHOLDERS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    spec = json.loads(tok.to_str())
    spec["model"]["vocab"].update(_SPARSE)
    for content, token_id in _SPARSE.items():
        spec["added_tokens"].append(
            {
                "id": token_id,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        )
    tok = Tokenizer.from_str(json.dumps(spec))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",  # noqa: S106 - special tokens, not passwords
        eos_token="<|endoftext|>",  # noqa: S106
        pad_token="<|endoftext|>",  # noqa: S106
        unk_token=None,
        additional_special_tokens=[*_SPECIAL[1:], *_PLACEHOLDERS, *_SPARSE],
    )
    fast.chat_template = _CHAT_TEMPLATE
    fast.save_pretrained(dest)
    return fast


def _config(ids: dict[str, int]) -> dict[str, Any]:
    return {
        "architectures": ["Phi4MMForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_phi4mm.Phi4MMConfig"},
        "model_type": "phi4mm",
        "torch_dtype": "bfloat16",
        "vocab_size": VOCAB_SIZE,
        "hidden_size": HIDDEN,
        "intermediate_size": 2 * HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 1,  # head_dim 64: vLLM's CPU rotary kernel needs 8 | rot_dim / 2
        "num_key_value_heads": 1,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "original_max_position_embeddings": 32768,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "partial_rotary_factor": 0.75,
        "tie_word_embeddings": False,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|endoftext|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "sliding_window": None,
        "img_processor": {"layer_idx": VISION_LAYER_IDX, "type_feature": "patch"},
        "embd_layer": {
            "embedding_cls": "image_audio",
            "image_embd_layer": {
                "crop_size": 448,
                "embedding_cls": "tune_image",
                "hd_transform_order": "sub_glb",
                "image_token_compression_cls": "avg_pool_2d",
                "projection_cls": "mlp",
                "use_hd_transform": True,
                "with_learnable_separator": True,
            },
            "audio_embd_layer": {
                "compression_rate": 8,
                "downsample_rate": 1,
                "embedding_cls": "audio",
                "projection_cls": "mlp",
                "use_conv_downsample": False,
                "use_qformer": False,
            },
        },
        "audio_processor": {
            "name": "cascades",
            "config": {
                "activation": "swish",
                "attention_dim": 16,
                "attention_heads": 2,
                "batch_norm": False,
                "bias_in_glu": True,
                "causal": True,
                "chunk_size": -1,
                "cnn_layer_norm": True,
                "conv_activation": "swish",
                "conv_glu_type": "swish",
                "depthwise_multiplier": 1,
                "depthwise_seperable_out_channel": 16,
                "dropout_rate": 0.0,
                "encoder_embedding_config": {"input_size": 80},
                "ext_pw_kernel_size": 1,
                "ext_pw_out_channel": 16,
                "input_layer": "nemo_conv",
                "input_size": 80,
                "kernel_size": 3,
                "left_chunk": 18,
                "linear_units": 32,
                "nemo_conv_settings": {"conv_channels": 16},
                "num_blocks": 1,
                "relative_attention_bias_args": {"t5_bias_max_distance": 500, "type": "t5"},
                "time_reduction": 8,
            },
        },
        "vision_lora": {
            "dp": 0.0,
            "layer": r"layers.*((self_attn\.(qkv_proj|o_proj))|(mlp\.(gate_up_proj|down_proj)))",
            "lora_alpha": 2 * LORA_RANK,
            "r": LORA_RANK,
        },
        "speech_lora": None,
    }


def _weights(cfg: dict[str, Any], word_rows: Any, gen: Any) -> dict[str, Any]:
    """Checkpoint tensors under the names of the real checkpoint (bf16)."""
    import torch

    def randn(*shape: int, std: float) -> Any:
        return torch.randn(*shape, generator=gen) * std

    hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
    head_dim = hidden // cfg["num_attention_heads"]
    qkv = hidden + 2 * cfg["num_key_value_heads"] * head_dim
    # The head is shaped as in vlmcap.testing._tiny_base: word rows scaled up, every other row zero.
    used = len(word_rows)
    embed = torch.zeros(VOCAB_SIZE, hidden)
    embed[:used] = randn(used, hidden, std=0.02)
    head = torch.zeros(VOCAB_SIZE, hidden)
    head[:used][word_rows] = randn(int(word_rows.sum()), hidden, std=0.16)
    w: dict[str, Any] = {
        "model.embed_tokens.weight": embed,
        "lm_head.weight": head,
        "model.norm.weight": torch.ones(hidden),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "self_attn.qkv_proj.weight"] = randn(qkv, hidden, std=0.08)
        w[p + "self_attn.o_proj.weight"] = randn(hidden, hidden, std=0.08)
        w[p + "mlp.gate_up_proj.weight"] = randn(2 * inter, hidden, std=0.08)
        w[p + "mlp.down_proj.weight"] = randn(hidden, inter, std=0.08)
        w[p + "input_layernorm.weight"] = torch.ones(hidden)
        w[p + "post_attention_layernorm.weight"] = torch.ones(hidden)
    v = "model.embed_tokens_extend.image_embed."
    w[v + "img_processor.embeddings.patch_embedding.weight"] = randn(
        SIGLIP_WIDTH, 3, 14, 14, std=0.05
    )
    w[v + "img_processor.embeddings.patch_embedding.bias"] = torch.zeros(SIGLIP_WIDTH)
    w[v + "img_processor.embeddings.position_embedding.weight"] = randn(
        SIGLIP_PATCHES, SIGLIP_WIDTH, std=0.02
    )
    w[v + "glb_GN"] = randn(1, 1, SIGLIP_WIDTH, std=0.5)
    w[v + "sub_GN"] = randn(1, 1, 1, SIGLIP_WIDTH, std=0.5)
    w[v + "img_projection.0.weight"] = randn(hidden, SIGLIP_WIDTH, std=0.1)
    w[v + "img_projection.0.bias"] = torch.zeros(hidden)
    w[v + "img_projection.2.weight"] = randn(hidden, hidden, std=0.3)
    w[v + "img_projection.2.bias"] = torch.zeros(hidden)
    return {k: t.to(torch.bfloat16).contiguous() for k, t in w.items()}


def _vision_lora(cfg: dict[str, Any], dest: Path, gen: Any) -> None:
    """A PEFT adapter (``adapter_config.json`` + safetensors) on the language model's linears."""
    import torch
    from safetensors.torch import save_file

    hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
    head_dim = hidden // cfg["num_attention_heads"]
    shapes = {  # module: (out, in)
        "self_attn.qkv_proj": (hidden + 2 * cfg["num_key_value_heads"] * head_dim, hidden),
        "self_attn.o_proj": (hidden, hidden),
        "mlp.gate_up_proj": (2 * inter, hidden),
        "mlp.down_proj": (hidden, inter),
    }
    tensors = {}
    for i in range(cfg["num_hidden_layers"]):
        for module, (out, inp) in shapes.items():
            p = f"base_model.model.model.layers.{i}.{module}."
            tensors[p + "lora_A.weight"] = torch.randn(LORA_RANK, inp, generator=gen) * 0.1
            tensors[p + "lora_B.weight"] = torch.randn(out, LORA_RANK, generator=gen) * 0.1
    dest.mkdir()
    save_file({k: t.to(torch.bfloat16).contiguous() for k, t in tensors.items()},
              dest / "adapter_model.safetensors", metadata={"format": "pt"})
    adapter = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": LORA_RANK,
        "lora_alpha": 2 * LORA_RANK,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        "base_model_name_or_path": "vlmcap-tiny-phi4",
    }
    (dest / "adapter_config.json").write_text(json.dumps(adapter, indent=2))


def build_phi4(dest: Path, seed: int) -> None:
    """Write the tiny Phi-4-multimodal checkpoint into ``dest`` (see the module docstring)."""
    import torch
    from safetensors.torch import save_file


    gen = torch.Generator().manual_seed(seed)
    tokenizer = _train_tokenizer(dest)
    ids = {t: int(tokenizer.convert_tokens_to_ids(t)) for t in _SPECIAL}
    cfg = _config(ids)
    dense = max(i for i in tokenizer.get_vocab().values() if i < IMAGE_TOKEN_ID) + 1
    word_rows = word_token_mask(tokenizer, dense)
    save_file(_weights(cfg, word_rows, gen), dest / "model.safetensors",
              metadata={"format": "pt"})
    _vision_lora(cfg, dest / "vision-lora", gen)
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    for name in REMOTE_MODULES:
        shutil.copyfile(REMOTE_CODE / name, dest / name)
    auto_map = {
        "AutoProcessor": "processing_phi4mm.Phi4MMProcessor",
        "AutoImageProcessor": "processing_phi4mm.Phi4MMImageProcessor",
        "AutoFeatureExtractor": "processing_phi4mm.Phi4MMAudioFeatureExtractor",
    }
    preprocessor = {
        "auto_map": auto_map,
        "processor_class": "Phi4MMProcessor",
        "image_processor_type": "Phi4MMImageProcessor",
        "feature_extractor_type": "Phi4MMAudioFeatureExtractor",
        "dynamic_hd": DYNAMIC_HD,
        "audio_compression_rate": 8,
        "audio_downsample_rate": 1,
        "audio_feat_stride": 1,
    }
    (dest / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    processor = {"auto_map": {"AutoProcessor": auto_map["AutoProcessor"]},
                 "processor_class": "Phi4MMProcessor"}
    (dest / "processor_config.json").write_text(json.dumps(processor, indent=2))
    gen_cfg = {"bos_token_id": ids["<|endoftext|>"],
               "eos_token_id": [ids["<|endoftext|>"], ids["<|end|>"]],
               "pad_token_id": ids["<|endoftext|>"]}
    (dest / "generation_config.json").write_text(json.dumps(gen_cfg, indent=2))
    _audio_tower(dest, seed)


_AUDIO = "model.embed_tokens_extend.audio_embed."
_AUDIO_PREFIXES = (  # vLLM's module name -> the checkpoint's (vLLM's hf_to_vllm_mapper, reversed)
    ("audio_projection_for_vision.", _AUDIO + "audio_projection.vision."),
    ("audio_projection.", _AUDIO + "audio_projection.speech."),
    ("", _AUDIO),
)


def _audio_tower(dest: Path, seed: int) -> None:
    """Random audio-tower weights: an engine with audio on starts, as with the real model.

    cosmos-curate's Phi-4 plugin leaves audio on.
    The tensor names and shapes are read from vLLM's own ``AudioEmbedding`` built from this
    checkpoint's config (a 1-block conformer, about 22k parameters), and saved under the names
    of the published checkpoint in a second safetensors file with an index.
    """
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig

    from vlmcap._vllm_compat import phi4_audio_embedding

    torch.manual_seed(seed + 1)
    config = AutoConfig.from_pretrained(dest, trust_remote_code=True)
    layer = config.embd_layer["audio_embd_layer"]
    tower = phi4_audio_embedding(config, **{"embedding_cls": layer["embedding_cls"], **layer})
    audio: dict[str, Any] = {}
    for name, tensor in tower.state_dict().items():
        vllm_prefix, ckpt_prefix = next(p for p in _AUDIO_PREFIXES if name.startswith(p[0]))
        key = ckpt_prefix + name.removeprefix(vllm_prefix)
        audio[key] = tensor.detach().to(torch.bfloat16).contiguous()
    main = load_file(dest / "model.safetensors")
    save_file(audio, dest / "model-audio.safetensors", metadata={"format": "pt"})
    index = {
        "metadata": {},
        "weight_map": {
            **dict.fromkeys(main, "model.safetensors"),
            **dict.fromkeys(audio, "model-audio.safetensors"),
        },
    }
    (dest / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
