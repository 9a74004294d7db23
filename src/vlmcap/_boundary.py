"""Runtime type and shape checks at vlmcap's public boundary: jaxtyping with beartype.

:func:`boundary` wraps a public function (or method) in ``jaxtyped(typechecker=beartype)``, so its
annotations (records, ``Frames`` shapes, sequences) are checked on every call, and turns
jaxtyping's own error (and only that) into a typed vlmcap error:

- a frame tensor of the wrong rank, layout, dtype or range: :class:`~vlmcap.FrameContractError`
  naming the argument (``videos[2]``), the expected and the actual shape;
- any other argument of the wrong type: :class:`ArgumentTypeError` (a ``TypeError`` and a
  :class:`~vlmcap.ConfigError`) naming the argument, the expected type and what was given.

The checks cost little next to a caption (``benchmarks/`` measures it); setting jaxtyping's
``jaxtyping_disable`` config turns them off.
"""

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast, get_type_hints

from beartype import BeartypeConf, beartype
from beartype.door import is_bearable
from jaxtyping import TypeCheckError, jaxtyped

from vlmcap._errors import ConfigError
from vlmcap._frames import Frames, check_frames


F = TypeVar("F", bound=Callable[..., Any])

_CONF = BeartypeConf(is_pep484_tower=True)
"""PEP 484's numeric tower: an ``int`` is a valid ``float`` (``sampling_fps=2``)."""


class ArgumentTypeError(ConfigError, TypeError):
    """An argument of a public vlmcap function has the wrong type.

    Attributes:
        function: the function's name.
        argument: the parameter's name.
    """

    def __init__(self, function: str, argument: str, expected: str, actual: str) -> None:
        self.function = function
        self.argument = argument
        super().__init__(f"{function}(): {argument} expected {expected}, got {actual}")


def _describe(value: object) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a {type(value).__name__} of shape {tuple(shape)} {getattr(value, 'dtype', '')}"
    return f"a {type(value).__name__} ({value!r:.60})"


def _hint_text(hint: object) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("collections.abc.", "")


def _frames_fields(name: str, hint: object, value: object) -> None:
    """Raise FrameContractError for a frames argument (or element) that breaks the contract."""
    if hint is Frames or _hint_text(hint) == _hint_text(Frames):
        check_frames(value, name)
    elif "Float[Tensor" in _hint_text(hint) and isinstance(value, Sequence):
        for i, item in enumerate(value):
            check_frames(item, f"{name}[{i}]")


def _translate(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Exception:
    """The typed error for the call that jaxtyping rejected (the first bad argument)."""
    qualname = func.__qualname__
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
        hints = get_type_hints(func)
    except (TypeError, NameError) as exc:
        return ArgumentTypeError(qualname, "(arguments)", "a valid call", str(exc))
    for name, value in bound.arguments.items():
        hint = hints.get(name)
        if hint is None:
            continue
        _frames_fields(name, hint, value)  # raises the precise frame error, if that is it
        if not is_bearable(value, hint, conf=_CONF):
            return ArgumentTypeError(qualname, name, _hint_text(hint), _describe(value))
    return ArgumentTypeError(qualname, "(shapes)", "consistent shapes", "a mismatch")


def boundary(func: F) -> F:
    """Check ``func``'s annotations on every call (jaxtyping + beartype), with typed errors."""
    checked = jaxtyped(typechecker=beartype(conf=_CONF))(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return checked(*args, **kwargs)
        except TypeCheckError as exc:
            raise _translate(func, args, kwargs) from exc

    return cast("F", wrapper)
