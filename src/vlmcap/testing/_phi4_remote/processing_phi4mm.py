"""Phi4MMProcessor of vlmcap's tiny Phi-4-multimodal checkpoint (local remote code).

The interface of microsoft/Phi-4-multimodal-instruct's ``processing_phi4mm.py`` that vLLM's
``Phi4MMForCausalLM`` uses, written for vlmcap as thin adapters over transformers' native
``phi4_multimodal`` processors (which compute the dynamic-HD crops, masks and token counts):

- ``Phi4MMImageProcessor``: ``input_image_embeds`` (the native ``image_pixel_values``),
  ``image_sizes``, ``image_attention_mask``, ``num_img_tokens``; ``dynamic_hd`` and
  ``find_closest_aspect_ratio`` as the remote one.
- ``Phi4MMAudioFeatureExtractor``: ``input_audio_embeds`` (the native ``audio_input_features``).
- ``Phi4MMProcessor``: ``processor(text=..., images=..., audios=...)``; each ``<|image_i|>``
  (``<|audio_i|>``) placeholder of the text becomes ``num_img_tokens[i - 1]`` image tokens
  ``<|endoftext10|>`` (audio: ``<|endoftext11|>``) when that modality is given.
"""

import re
from typing import Any, ClassVar

import torch
import transformers
from transformers import BatchFeature, ProcessorMixin


_IMAGE_TOKEN = "<|endoftext10|>"  # noqa: S105 - a placeholder token, not a secret
_AUDIO_TOKEN = "<|endoftext11|>"  # noqa: S105
_PLACEHOLDER = re.compile(r"<\|(image|audio)_(\d+)\|>")

_NativeImageProcessor = getattr(transformers, "Phi4MultimodalImageProcessor", None)
if _NativeImageProcessor is None:  # transformers 4.x names it ...Fast
    _NativeImageProcessor = transformers.Phi4MultimodalImageProcessorFast


class Phi4MMImageProcessor(_NativeImageProcessor):  # type: ignore[misc,valid-type] # untyped
    """transformers' native image processor, under the remote one's output names."""

    model_input_names: ClassVar[list[str]] = [
        "input_image_embeds",
        "image_sizes",
        "image_attention_mask",
    ]

    def preprocess(self, images: Any, **kwargs: Any) -> Any:
        """The native processor's output with ``input_image_embeds`` for its pixel values."""
        out = super().preprocess(images, **kwargs)
        out["input_image_embeds"] = out.pop("image_pixel_values")
        return out


class Phi4MMAudioFeatureExtractor(transformers.Phi4MultimodalFeatureExtractor):  # type: ignore[misc]
    """transformers' native audio feature extractor, under the remote one's names."""

    model_input_names: list[str] = [  # noqa: RUF012 - swapped per call in __call__
        "input_audio_embeds",
        "audio_embed_sizes",
        "audio_attention_mask",
    ]

    def __call__(self, raw_speech: Any, *args: Any, **kwargs: Any) -> Any:
        """Features of ``raw_speech``: waveforms, or the remote interface's (waveform, rate)."""
        pairs = isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0
        if pairs and isinstance(raw_speech[0], tuple):
            kwargs.setdefault("sampling_rate", raw_speech[0][1])
            raw_speech = [audio for audio, _sr in raw_speech]
        # The base class pads by its own first input name; ours (the remote interface's) differ.
        self.model_input_names = ["audio_input_features", "audio_embed_sizes"]
        try:
            out = super().__call__(raw_speech, *args, **kwargs)
        finally:
            del self.model_input_names
        out["input_audio_embeds"] = out.pop("audio_input_features")
        return out


class Phi4MMProcessor(ProcessorMixin):  # type: ignore[misc] # transformers is untyped
    """Text, images and audio in; token ids with expanded placeholders and features out."""

    attributes: ClassVar[list[str]] = ["image_processor", "audio_processor", "tokenizer"]
    image_processor_class = "AutoImageProcessor"
    audio_processor_class = "AutoFeatureExtractor"
    tokenizer_class = "AutoTokenizer"

    def __init__(
        self, image_processor: Any, audio_processor: Any, tokenizer: Any, **kwargs: Any
    ) -> None:
        super().__init__(image_processor, audio_processor, tokenizer, **kwargs)

    @property
    def special_image_token_id(self) -> int:
        """The id every image placeholder expands into."""
        return int(self.tokenizer.convert_tokens_to_ids(_IMAGE_TOKEN))

    def __call__(
        self,
        text: str | list[str] | None = None,
        images: Any = None,
        audios: Any = None,
        return_tensors: str = "pt",
        **kwargs: Any,  # noqa: ARG002 - the remote signature takes (and ignores) more
    ) -> Any:
        """The model's inputs: padded ids, attention mask, image and audio features."""
        texts = [text] if isinstance(text, str) else list(text or [""])
        image_inputs: dict[str, Any] = {}
        if images is not None and len(images) > 0:
            image_inputs = dict(self.image_processor(images, return_tensors="pt"))
        # Like the published processor: no audio still gives an (empty) input_audio_embeds,
        # which vLLM 0.26's Phi4MM reads unconditionally.
        audio_inputs: dict[str, Any] = {"input_audio_embeds": torch.tensor([])}
        if audios is not None and len(audios) > 0:
            audio_inputs = dict(self.audio_processor(audios, return_tensors="pt"))
        counts = {
            "image": [int(n) for n in image_inputs.pop("num_img_tokens", [])],
            "audio": [int(n) for n in audio_inputs.get("audio_embed_sizes", [])],
        }
        token = {
            "image": self.tokenizer.convert_tokens_to_ids(_IMAGE_TOKEN),
            "audio": self.tokenizer.convert_tokens_to_ids(_AUDIO_TOKEN),
        }
        input_ids = [self._expand(t, counts, token) for t in texts]
        longest = max(len(ids) for ids in input_ids)
        pad = self.tokenizer.pad_token_id or 0
        data = {
            "input_ids": [ids + [pad] * (longest - len(ids)) for ids in input_ids],
            "attention_mask": [[1] * len(ids) + [0] * (longest - len(ids)) for ids in input_ids],
            **image_inputs,
            **audio_inputs,
        }
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _expand(self, text: str, counts: dict[str, list[int]], token: dict[str, int]) -> list[int]:
        ids: list[int] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(text):
            ids += self.tokenizer(text[pos : match.start()], add_special_tokens=False).input_ids
            modality, index = match.group(1), int(match.group(2))
            if counts[modality]:
                if not 1 <= index <= len(counts[modality]):
                    raise ValueError(
                        f"{match.group(0)} but {len(counts[modality])} {modality} input(s)"
                    )
                ids += [token[modality]] * counts[modality][index - 1]
            else:  # no data of this modality: the placeholder stays text
                ids += self.tokenizer(match.group(0), add_special_tokens=False).input_ids
            pos = match.end()
        ids += self.tokenizer(text[pos:], add_special_tokens=False).input_ids
        return ids

    def batch_decode(self, *args: Any, **kwargs: Any) -> Any:
        """The tokenizer's."""
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        """The tokenizer's."""
        return self.tokenizer.decode(*args, **kwargs)
