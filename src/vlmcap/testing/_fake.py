"""A fake engine for fault injection and for properties that need thousands of examples.

It speaks the driver's :class:`vlmcap.Engine` protocol (``add``/``step``/``abort``/``close``;
a dead one raises :class:`vlmcap.EngineDeadError`) and returns
output objects shaped like ``vllm.RequestOutput`` (``request_id``, ``finished``,
``prompt_token_ids``, ``outputs[0].text/token_ids/finish_reason``), so plugins' ``decode`` runs
on them unchanged. ``test_fake_engine_agrees_with_the_real_one`` (``tests/test_engine_cpu.py``)
checks it against the real engine.
"""

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from vlmcap._errors import EngineDeadError
from vlmcap._vllm_compat import Finished


@attrs.frozen
class FakeCompletion:
    """Like ``vllm.CompletionOutput``."""

    index: int
    text: str
    token_ids: tuple[int, ...]
    finish_reason: str | None


@attrs.frozen
class FakeRequestOutput:
    """Like ``vllm.RequestOutput``."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    outputs: tuple[FakeCompletion, ...]
    finished: bool = True


def prompt_ids(inputs: Mapping[str, Any]) -> tuple[int, ...]:
    """The prompt's token ids (or the bytes of a text prompt), for deterministic fake outputs."""
    if "prompt_token_ids" in inputs:
        return tuple(int(t) for t in inputs["prompt_token_ids"])
    return tuple(str(inputs.get("prompt", "")).encode())


def vllm_like_reject(_engine_id: str, inputs: Mapping[str, Any]) -> bool:
    """Reject what vLLM rejects at ``add_request``: no prompt, or an unknown modality key."""
    if "prompt_token_ids" not in inputs and "prompt" not in inputs:
        return True
    mm = inputs.get("multi_modal_data") or {}
    return not set(mm) <= {"image", "video", "audio"}


def default_text(inputs: Mapping[str, Any]) -> str:
    """A caption that is a pure function of the prompt: ``"caption-<8 hex>"``."""
    digest = hashlib.sha256(repr(prompt_ids(inputs)).encode()).hexdigest()[:8]
    return f"caption-{digest}"


@attrs.define
class _Pending:
    inputs: Mapping[str, Any]
    steps_left: int
    max_tokens: int


@attrs.define
class FakeEngine:
    """A deterministic engine with knobs for every fault the driver must survive.

    Args:
        steps: how many ``step()`` calls a request takes, from its id and inputs (out-of-order
            completion when this varies).
        text: the caption text from the inputs.
        reject: ``add`` raises ``ValueError`` for requests where this is true (default: what
            vLLM itself rejects, see :func:`vllm_like_reject`).
        fail_step: ``step`` raises ``RuntimeError`` on this call number (1-based).
        stall: from this step on, nothing finishes any more.
        die_after: the engine dies after this many ``step()`` calls: every later ``step`` and
            ``add`` raises :class:`EngineDeadError` (like vLLM once its core process is gone).
        strays: ids to report as finished although never added.
    """

    steps: Callable[[str, Mapping[str, Any]], int] = lambda _id, _inp: 1
    text: Callable[[Mapping[str, Any]], str] = default_text
    reject: Callable[[str, Mapping[str, Any]], bool] = vllm_like_reject
    fail_step: int | None = None
    stall: int | None = None
    strays: Sequence[str] = ()
    die_after: int | None = None
    added: list[str] = attrs.field(factory=list)
    aborted: list[str] = attrs.field(factory=list)
    peak_inflight: int = 0
    step_calls: int = 0
    closed: bool = False
    _pending: dict[str, _Pending] = attrs.field(factory=dict)

    def add(self, engine_id: str, inputs: Mapping[str, Any], params: Any) -> None:
        """Queue a request (or raise, per ``reject``)."""
        if self.dead:
            raise EngineDeadError("fake engine is dead")
        if engine_id in self._pending:
            raise ValueError(f"request id {engine_id} is already in flight")
        if self.reject(engine_id, inputs):
            raise ValueError(f"fake engine rejects {engine_id}")
        self.added.append(engine_id)
        max_tokens = int(getattr(params, "max_tokens", None) or 16)
        self._pending[engine_id] = _Pending(
            inputs, max(1, self.steps(engine_id, inputs)), max_tokens
        )
        self.peak_inflight = max(self.peak_inflight, len(self._pending))

    def step(self) -> list[Finished]:
        """Advance every request by one step; return those that finished."""
        self.step_calls += 1
        if self.fail_step is not None and self.step_calls == self.fail_step:
            raise RuntimeError("fake engine died")
        if self.dead:
            raise EngineDeadError(f"fake engine died after {self.die_after} step(s)")
        done: list[Finished] = []
        if self.stall is not None and self.step_calls >= self.stall:
            return done
        for engine_id in list(self._pending):
            pending = self._pending[engine_id]
            pending.steps_left -= 1
            if pending.steps_left > 0:
                continue
            del self._pending[engine_id]
            done.append(self._finish(engine_id, pending))
        if self.step_calls == 1:
            done.extend(
                self._finish(s, _Pending({"prompt_token_ids": [1]}, 0, 1)) for s in self.strays
            )
        return done

    def _finish(self, engine_id: str, pending: _Pending) -> Finished:
        text = self.text(pending.inputs)
        tokens = tuple(range(min(pending.max_tokens, max(1, len(text.split())))))
        reason = "stop" if len(tokens) < pending.max_tokens else "length"
        out = FakeRequestOutput(
            engine_id, prompt_ids(pending.inputs), (FakeCompletion(0, text, tokens, reason),)
        )
        return Finished(engine_id, out, reason, len(out.prompt_token_ids), len(tokens))

    def abort(self, engine_ids: Sequence[str]) -> None:
        """Drop requests."""
        for engine_id in engine_ids:
            self.aborted.append(engine_id)
            self._pending.pop(engine_id, None)

    def close(self) -> None:
        """Release the engine's client-side resources (recorded: the driver closes lost ones)."""
        self.closed = True

    @property
    def dead(self) -> bool:
        """True once the engine has died (see ``die_after``)."""
        return self.die_after is not None and self.step_calls > self.die_after

    @property
    def inflight(self) -> int:
        """Requests currently held."""
        return len(self._pending)
