"""Plugin registry: built-in plugins, ``vlmcap.plugins`` entry points, explicit registration.

Built-ins and entry points are named by ``"module:Class"`` strings and imported on first use, so
listing variants never imports a model's dependencies.
"""

import functools
import importlib
import importlib.metadata
from typing import Any, overload

from vlmcap._errors import PluginError, UnknownVariantError
from vlmcap._plugin import C, G, PluginClass, check_plugin_structure


ENTRY_POINT_GROUP = "vlmcap.plugins"

BUILTIN_PLUGINS: dict[str, str] = {
    "qwen": "vlmcap.plugins.qwen:VllmQwen7B",
    "qwen3_vl": "vlmcap.plugins.qwen3_vl:VllmQwen3VL",
    "qwen3_5": "vlmcap.plugins.qwen3_5:VllmQwen3_5",
    "cosmos3": "vlmcap.plugins.cosmos3:VllmCosmos3",
    "cosmos_r1": "vlmcap.plugins.cosmos_reason:VllmCosmosReason1VL",
    "cosmos_r2": "vlmcap.plugins.cosmos_reason:VllmCosmosReason2VL",
    "chat": "vlmcap.plugins.chat:VllmChat",  # any chat-template VLM at VllmConfig.model_path
    "phi4": "vlmcap.plugins.phi4:VllmPhi4",
    "nemotron_vl": "vlmcap.plugins.nemotron_vl:VllmNemotronVL",
}

_registered: dict[str, PluginClass] = {}


def load_object(spec: str) -> Any:
    """Import ``"pkg.module:Attr"`` and return the attribute."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise PluginError(f"plugin spec {spec!r} must look like 'pkg.module:Class'")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise PluginError(f"cannot import {module!r} for plugin {spec!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(f"{module!r} has no attribute {attr!r}") from None
    return obj


@functools.cache
def _spec_plugin(spec: str) -> PluginClass:
    return check_plugin_structure(load_object(spec))


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def plugin_specs() -> dict[str, str]:
    """Variant -> ``"module:Class"`` for every known plugin (not imported)."""
    specs = dict(BUILTIN_PLUGINS)
    specs.update(_entry_points())
    specs.update({v: f"{p.__module__}:{p.__qualname__}" for v, p in _registered.items()})
    return specs


def available_variants() -> tuple[str, ...]:
    """Every known variant, sorted."""
    return tuple(sorted(plugin_specs()))


@overload
def register_plugin(plugin: G) -> G: ...


@overload
def register_plugin(plugin: C) -> C: ...


def register_plugin(plugin: object) -> object:
    """Register a plugin class under its ``model_variant()``; usable as a class decorator.

    Statically, ``plugin`` must match one of the plugin protocols (:data:`vlmcap.PluginClass`):
    mypy rejects a class whose members match neither form. At runtime the same protocols are
    checked (the implementation takes any object, so that the error is vlmcap's own).

    Raises:
        PluginError: a member is missing or has the wrong signature or return type.
    """
    checked = check_plugin_structure(plugin)
    _registered[str(checked.model_variant())] = checked
    return plugin


def unregister_plugin(variant: str) -> None:
    """Remove an explicitly registered plugin (tests)."""
    _registered.pop(variant, None)


def get_plugin(variant: str) -> PluginClass:
    """The plugin class for ``variant``: a registered variant name, or ``"pkg.module:Class"``.

    The ``"pkg.module:Class"`` form names a plugin that is not installed or registered (a file
    of your own); it works wherever a variant does (``VllmConfig.model_variant``, ``vlmcap
    caption --model``, Ray workers, which import it themselves).

    Raises:
        UnknownVariantError: no plugin provides it; the message lists the known variants.
        PluginError: the plugin cannot be imported or lacks protocol methods.
    """
    if ":" in variant:
        return _spec_plugin(variant)
    if variant in _registered:
        return _registered[variant]
    specs = plugin_specs()
    if variant not in specs:
        raise UnknownVariantError(variant, specs)
    plugin = check_plugin_structure(load_object(specs[variant]))
    declared = str(plugin.model_variant())
    if declared != variant:
        raise PluginError(
            f"plugin {specs[variant]} is registered as {variant!r} but says {declared!r}"
        )
    return plugin
