"""Typed errors. Every error vlmcap raises derives from :class:`VlmcapError`.

Each also derives from the builtin that callers of the seed API already catch (``ValueError``,
``KeyError``-free ``LookupError``, ``FileNotFoundError``, ``TypeError``), so code written against
cosmos-curate keeps working.
"""

from collections.abc import Iterable, Sequence


class VlmcapError(Exception):
    """Base class of every error raised by vlmcap."""


class FrameContractError(VlmcapError, ValueError):
    """A frame tensor broke the ``(frames, 3, height, width)`` contract.

    Attributes:
        field: where the tensor came from, e.g. ``"videos[2]"``.
        expected: the contract, in words.
        actual: what was found (shape, dtype, range).
    """

    def __init__(self, field: str, expected: str, actual: str, hint: str = "") -> None:
        self.field = field
        self.expected = expected
        self.actual = actual
        self.hint = hint
        msg = f"{field}: expected {expected}, got {actual}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class MetadataError(VlmcapError, ValueError):
    """Video metadata does not match its frames or is malformed."""


class PromptError(VlmcapError, ValueError):
    """A prompt is empty, too long, or of the wrong type."""


class ConfigError(VlmcapError, ValueError):
    """A configuration value is invalid."""


class UnsupportedSettingError(ConfigError):
    """A setting that the chosen plugin or platform cannot honour (never silently ignored)."""


class UnknownVariantError(VlmcapError, ValueError):
    """A model variant that no registered plugin provides."""

    def __init__(self, variant: str, known: Iterable[str], *, what: str = "plugin") -> None:
        self.variant = variant
        self.known: tuple[str, ...] = tuple(sorted(known))
        listed = ", ".join(self.known) or "(none)"
        super().__init__(f"unknown {what} variant {variant!r}; known variants: {listed}")


class ModelNotFoundError(VlmcapError, FileNotFoundError):
    """No local checkpoint was found for a plugin; ``tried`` names every place looked at."""

    def __init__(self, variant: str, model_id: str, tried: Sequence[str]) -> None:
        self.variant = variant
        self.model_id = model_id
        self.tried = tuple(tried)
        places = "\n  ".join(self.tried)
        if model_id == "?":  # nothing pinned: there is nothing to download
            super().__init__(
                f"plugin {variant!r} pins no model (no Hugging Face id), so vlmcap cannot find "
                f"or download one: give its checkpoint folder as VllmConfig.model_path "
                f"(vlmcap caption --model-path DIR); tried:\n  {places}"
            )
            return
        super().__init__(
            f"no local checkpoint for variant {variant!r} ({model_id}); tried:\n  {places}\n"
            "Set VllmConfig.model_path, or $VLMCAP_MODEL_DIR, or run `vlmcap download`."
        )


class PluginError(VlmcapError, TypeError):
    """A plugin does not satisfy the ``VllmPlugin`` protocol, or returned a malformed value."""


class EngineStalledError(VlmcapError, TimeoutError):
    """The engine made no progress for longer than the configured stall timeout."""


class EngineDeadError(VlmcapError, RuntimeError):
    """The whole engine is lost (its core process is gone), not one request.

    Raised by vlmcap's engine adapter and by test fakes; the driver treats vLLM's own
    ``EngineDeadError`` (any version, recognised by name) the same way.
    """
