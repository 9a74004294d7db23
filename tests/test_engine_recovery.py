"""Engine loss: the driver rebuilds the engine and resubmits only what had not finished.

Fault injection on the fake engine (``die_after``: every step and add raises ``EngineDeadError``
after N steps), a property of the pure ``requeue_inflight``, and one test that SIGKILLs the real
vLLM engine-core process mid-batch.
"""

import collections
import os
import signal
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
import pytest
from hypothesis import given, strategies as st

import vlmcap
from vlmcap import EngineDeadError, _scheduler as sched
from vlmcap._registry import unregister_plugin
from vlmcap._vllm_compat import Finished
from vlmcap.testing._fake import FakeEngine, default_text

from ._plugins import ONE_FRAME, EchoPlugin


@pytest.fixture(autouse=True)
def _echo_plugin() -> Iterator[None]:
    vlmcap.register_plugin(EchoPlugin)
    yield
    unregister_plugin("echo-test")


CONFIG = vlmcap.VllmConfig(
    model_variant="echo-test", batch_size=3, stall_timeout_s=0.2, max_retries=3
)


def _inputs(n: int) -> list[dict[str, Any]]:
    return [{"prompt": f"clip {i}", "multi_modal_data": {"video": ONE_FRAME}} for i in range(n)]


def _index(inputs: Mapping[str, Any]) -> int:
    return int(str(inputs["prompt"]).rsplit(" ", 1)[-1])


def _key(engine_id: str) -> tuple[int, int]:
    """``vlmcap-<serial>-<index>-s<stage>`` -> (index, stage)."""
    _, _, index, stage = engine_id.split("-")
    return int(index), int(stage[1:])


class Recorder:
    """An engine wrapper that records what was added and what finished."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.added: list[str] = []
        self.finished: list[str] = []

    def add(self, engine_id: str, inputs: Mapping[str, Any], params: Any) -> None:
        self.engine.add(engine_id, inputs, params)
        self.added.append(engine_id)

    def step(self) -> list[Finished]:
        out = self.engine.step()
        self.finished += [f.engine_id for f in out]
        return out

    def abort(self, engine_ids: Sequence[str]) -> None:
        self.engine.abort(engine_ids)

    def close(self) -> None:
        self.engine.close()


def _slow(_id: str, inp: Mapping[str, Any]) -> int:
    """Steps per request: varies with the input, so deaths catch requests mid-way."""
    return 1 + _index(inp) % 4 if "clip" in str(inp["prompt"]) else 2


class Factory:
    """``rebuild`` for the fake: each call returns a fresh recorded engine."""

    def __init__(self, make: Any = lambda: FakeEngine(steps=_slow)) -> None:
        self.make = make
        self.engines: list[Recorder] = []

    def __call__(self) -> Recorder:
        rec = Recorder(self.make())
        self.engines.append(rec)
        return rec


def _run(
    first: Recorder, factory: Factory | None, n: int, config: vlmcap.VllmConfig = CONFIG, **kw: Any
) -> list[vlmcap.CaptionResult]:
    mi = kw.pop("max_inflight_requests", 0)
    return vlmcap.caption_results(
        _inputs(n), first, None, None, config, mi, rebuild=factory, **kw
    )


def _check_each_stage_ran_to_completion_once(engines: Sequence[Recorder]) -> None:
    """Every (input, stage) finished exactly once, and was never added again after that."""
    finished = collections.Counter(_key(e) for rec in engines for e in rec.finished)
    assert set(finished.values()) == {1}, finished
    done: set[tuple[int, int]] = set()
    for rec in engines:  # in engine order: an id finished on one engine is not on a later one
        added = {_key(e) for e in rec.added}
        assert not added & done, f"re-ran finished work: {sorted(added & done)}"
        done |= {_key(e) for e in rec.finished}


def test_unfinished_requests_are_resubmitted_and_finished_ones_are_not() -> None:
    factory = Factory()
    first = Recorder(FakeEngine(steps=_slow, die_after=2))
    res = _run(first, factory, 12, max_inflight_requests=5)
    assert all(r.ok for r in res), res
    assert [r.text for r in res] == [default_text({"prompt": f"clip {i}"}) for i in range(12)]
    assert len(factory.engines) == 1
    assert first.engine.closed, "the lost engine is closed before it is replaced"
    assert not factory.engines[0].engine.closed, "the caller's new engine stays open"
    engines = [first, *factory.engines]
    _check_each_stage_ran_to_completion_once(engines)
    # exactly what was in flight when the engine died was resubmitted, first
    lost = [_key(e) for e in first.added if e not in first.finished]
    assert lost, "the scenario must lose in-flight work"
    assert [_key(e) for e in factory.engines[0].added[: len(lost)]] == lost
    adds = collections.Counter(_key(e)[0] for rec in engines for e in rec.added)
    assert {i for i, k in adds.items() if k == 2} == {i for i, _ in lost}
    assert set(adds.values()) <= {1, 2}


@pytest.mark.parametrize("inflight_batching", [True, False])
def test_stage2_progress_survives_a_rebuild(inflight_batching: bool) -> None:
    prompts: list[str | None] = ["refine: "] * 8
    clean = _run(Recorder(FakeEngine(steps=_slow)), None, 8, stage2_prompts=prompts)
    factory = Factory()
    first = Recorder(FakeEngine(steps=_slow, die_after=4))
    res = _run(
        first, factory, 8, stage2_prompts=prompts, inflight_batching=inflight_batching
    )
    engines = [first, *factory.engines]
    _check_each_stage_ran_to_completion_once(engines)
    lost_stage2 = [_key(e) for e in first.added if e not in first.finished and e.endswith("s2")]
    if inflight_batching:
        assert lost_stage2, "the scenario must lose a stage-2 request"
    for index, _stage in lost_stage2:  # resubmitted as stage 2, stage 1 not run again
        assert (index, 2) in {_key(e) for e in factory.engines[0].added}
        assert (index, 1) not in {_key(e) for e in factory.engines[0].added}
    assert [r.stages for r in res] == [2] * 8
    # same captions and token counts as a run without faults: lost attempts are not counted
    assert [(r.text, r.prompt_tokens, r.output_tokens) for r in res] == [
        (r.text, r.prompt_tokens, r.output_tokens) for r in clean
    ]


def test_attempts_are_bounded_then_the_rest_fail_with_the_cause() -> None:
    config = attrs.evolve(CONFIG, max_retries=2)
    factory = Factory(lambda: FakeEngine(steps=_slow, die_after=0))  # dies on its first step
    first = Recorder(FakeEngine(steps=_slow, die_after=1))
    res = _run(first, factory, 6, config)
    assert len(factory.engines) == 2
    finished = {_key(e)[0] for e in first.finished}
    assert finished, "the scenario must finish something before the first death"
    assert [r.ok for r in res] == [i in finished for i in range(6)]
    for r in res:
        if not r.ok:
            assert "EngineDeadError: fake engine died after 0 step(s)" in (r.error or "")
            assert "gave up after 2 engine rebuild(s), max_retries=2" in (r.error or "")


def test_no_rebuild_without_a_factory_or_with_zero_retries() -> None:
    res = _run(Recorder(FakeEngine(steps=_slow, die_after=1)), None, 4)
    assert not all(r.ok for r in res)
    assert all("EngineDeadError" in (r.error or "") for r in res if not r.ok)
    factory = Factory()
    res = _run(
        Recorder(FakeEngine(steps=_slow, die_after=1)),
        factory,
        4,
        attrs.evolve(CONFIG, max_retries=0),
    )
    assert factory.engines == [] and not all(r.ok for r in res)


def test_an_engine_dead_at_add_is_rebuilt_not_blamed_on_requests() -> None:
    factory = Factory()
    dead = FakeEngine(die_after=0, step_calls=1)  # add raises EngineDeadError
    res = _run(Recorder(dead), factory, 5)
    assert all(r.ok for r in res) and len(factory.engines) == 1
    assert [_key(e) for e in factory.engines[0].added] == [(i, 1) for i in range(5)]


def test_a_failed_rebuild_counts_as_an_attempt() -> None:
    calls: list[int] = []

    def flaky() -> FakeEngine:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("no memory yet")
        return FakeEngine(steps=_slow)

    res = _run(Recorder(FakeEngine(steps=_slow, die_after=1)), Factory(flaky), 6)
    assert all(r.ok for r in res) and len(calls) == 2
    calls.clear()
    config = attrs.evolve(CONFIG, max_retries=1)
    res = _run(Recorder(FakeEngine(steps=_slow, die_after=1)), Factory(flaky), 6, config)
    assert any("rebuild 1 failed: OSError: no memory yet" in (r.error or "") for r in res)


def test_a_stalled_engine_is_rebuilt_within_the_same_budget() -> None:
    factory = Factory()
    stalled = FakeEngine(steps=_slow, stall=2)
    res = _run(Recorder(stalled), factory, 6)
    assert all(r.ok for r in res) and len(factory.engines) == 1
    assert stalled.aborted, "in-flight requests of the stalled engine are aborted first"
    config = attrs.evolve(CONFIG, max_retries=1)
    res = _run(
        Recorder(FakeEngine(steps=_slow, stall=2)),
        Factory(lambda: FakeEngine(stall=1)),
        6,
        config,
    )
    assert any(
        "EngineStalledError" in (r.error or "") and "gave up after 1" in (r.error or "")
        for r in res
    )


def test_per_request_faults_never_trigger_a_rebuild() -> None:
    factory = Factory()
    engine = FakeEngine(reject=lambda _id, inp: _index(inp) == 2, strays=["ghost"])
    res = _run(Recorder(engine), factory, 5)
    assert [r.ok for r in res] == [True, True, False, True, True]
    assert "rejected" in (res[2].error or "")
    assert factory.engines == []


class CacheDrift(Recorder):
    """vLLM's multimodal cache drift: a request ends with reason "error", no tokens, once."""

    def __init__(self, engine: FakeEngine, drift: set[int]) -> None:
        super().__init__(engine)
        self.drift = drift

    def step(self) -> list[Finished]:
        out = []
        for f in super().step():
            if _key(f.engine_id)[0] in self.drift:
                self.drift.discard(_key(f.engine_id)[0])
                f = attrs.evolve(f, finish_reason="error", output_tokens=0)  # noqa: PLW2901
            out.append(f)
        return out


def test_a_retryable_engine_error_is_resubmitted_without_a_rebuild() -> None:
    factory = Factory()
    engine = CacheDrift(FakeEngine(), {1, 3})
    res = _run(engine, factory, 5, stage2_prompts=[None, "r: ", None, None, None])
    assert all(r.ok for r in res) and factory.engines == []
    assert collections.Counter(_key(e) for e in engine.added) == {
        (0, 1): 1, (1, 1): 2, (1, 2): 1, (2, 1): 1, (3, 1): 2, (4, 1): 1
    }
    always = CacheDrift(FakeEngine(), set())
    always.drift = type("All", (set,), {"__contains__": lambda _s, _x: True})()
    res = _run(always, None, 2)
    assert all("reason 'error'" in (r.error or "") for r in res)
    assert len(always.added) == 2 * 3  # the first try and MAX_REQUEST_RETRIES=2 resends


def test_captioner_owns_and_replaces_its_engine() -> None:
    built: list[FakeEngine] = []

    def build() -> FakeEngine:
        built.append(FakeEngine(steps=_slow, die_after=3 if not built else None))
        return built[-1]

    with vlmcap.Captioner(CONFIG, processor=object(), sampling_params=object(), build=build) as cap:
        assert cap.llm is built[0]
        res = cap.caption(_inputs(10), 4)
        assert all(r.ok for r in res)
        assert cap.rebuilds == 1 and cap.llm is built[1]
        again = cap.caption(_inputs(3))
        assert [r.text for r in again] == [r.text for r in res[:3]]
        assert len(built) == 2  # the second call ran on the rebuilt engine
    assert cap.llm is None


# --- the pure core -------------------------------------------------------------------------


def _refine(request: vlmcap.VllmCaptionRequest) -> vlmcap.VllmCaptionRequest:
    return vlmcap.VllmCaptionRequest(
        request_id=f"r-{request.request_id}", inputs={"prompt": f"refine {request.caption}"}
    )


def _outcome(sub: sched.Submission) -> sched.Outcome:
    return sched.Outcome(sub.engine_id, f"c{sub.job.index}s{sub.job.stage}", "stop", 3, 2)


@given(
    n=st.integers(1, 12),
    max_inflight=st.integers(0, 4),
    refine=st.lists(st.booleans(), min_size=12, max_size=12),
    events=st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=40),
)
def test_requeue_inflight_loses_and_repeats_nothing(
    n: int, max_inflight: int, refine: list[bool], events: list[tuple[bool, int]]
) -> None:
    """Any interleaving of engine losses ends with the results of a run without losses."""
    requests = [
        vlmcap.VllmCaptionRequest(
            f"q{i}", {"prompt": str(i)}, stage2_prompt="r" if refine[i] else None
        )
        for i in range(n)
    ]

    def run(losses: list[tuple[bool, int]]) -> tuple[sched.SchedulerState, list[tuple[int, int]]]:
        state = sched.start(requests, max_inflight=max_inflight)
        settled: list[tuple[int, int]] = []
        pending = list(losses)
        while not sched.is_done(state):
            state, _subs = sched.admit(state)
            lose, k = pending.pop(0) if pending else (False, 0)
            if lose:
                before = state
                state = sched.requeue_inflight(state)
                assert not state.inflight and state.results == before.results
                assert state.queue[: len(before.inflight)] == tuple(before.inflight.values())
                continue
            subs = [sched.Submission(e, j) for e, j in state.inflight.items()][: k + 1]
            settled += [(s.job.index, s.job.stage) for s in subs]
            state = sched.settle(state, [_outcome(s) for s in subs], _refine)
        return state, settled

    clean, _ = run([])
    lossy, settled = run(events)
    assert sched.ordered_results(lossy) == sched.ordered_results(clean)
    assert len(settled) == len(set(settled)), "a finished stage ran twice"


def test_requeue_keeps_stage2_jobs_and_counts() -> None:
    reqs = [
        vlmcap.VllmCaptionRequest(f"q{i}", {"prompt": str(i)}, stage2_prompt="r") for i in (0, 1)
    ]
    state, subs = sched.admit(sched.start(reqs))
    state = sched.settle(state, [_outcome(subs[0])], _refine)
    state, subs2 = sched.admit(state)
    assert [s.job.stage for s in subs2] == [2]
    state = sched.requeue_inflight(state)
    assert [(j.index, j.stage) for j in state.queue] == [(1, 1), (0, 2)]
    assert state.queue[1].request.inputs == {"prompt": "refine c0s1"}
    assert state.counts[0] == vlmcap.TokenCounts(3, 2)
    assert sched.requeue_inflight(state) is state


# --- the real engine -----------------------------------------------------------------------


def _engine_core_pid(llm: Any) -> int:
    """The engine-core process of a ``vllm.LLM`` (vLLM 0.26-0.32, multiprocess client)."""
    manager = llm.llm_engine.engine_core.resources.engine_manager
    (proc,) = manager.processes
    return int(proc.pid)


@pytest.mark.engine
@pytest.mark.slow
def test_killing_the_engine_core_mid_batch_rebuilds_and_finishes(
    qwen_engine: Any, qwen_config: Any
) -> None:
    from vlmcap.testing import synthetic_clip

    _llm, processor, params = qwen_engine
    clips = [synthetic_clip(4, 56, 56 + 28 * (i % 3), seed=i) for i in range(8)]
    inputs = vlmcap.make_model_inputs(clips, qwen_config, processor, "Describe this video.")
    reference = vlmcap.caption_results(inputs, qwen_engine[0], processor, params, qwen_config, 0)
    assert all(r.ok for r in reference)

    adds: list[list[tuple[int, int]]] = []

    def build() -> Any:
        llm = vlmcap.vllm_model(qwen_config)
        added: list[tuple[int, int]] = []
        adds.append(added)
        real_add = llm.llm_engine.add_request

        def counting_add(request_id: str, *args: Any, **kw: Any) -> Any:
            added.append(_key(request_id))
            return real_add(request_id, *args, **kw)

        llm.llm_engine.add_request = counting_add
        return llm

    order: list[int] = []
    killed: list[int] = []

    def on_result(index: int, _res: vlmcap.CaptionResult) -> None:
        order.append(index)
        if len(order) == 3 and not killed:
            killed.append(_engine_core_pid(cap.llm))
            os.kill(killed[0], signal.SIGKILL)

    cap = vlmcap.Captioner(qwen_config, processor=processor, sampling_params=params, build=build)
    try:
        res = cap.caption(inputs, 2, on_result=on_result)
    finally:
        cap.close()
    assert killed and cap.rebuilds == 1 and len(adds) == 2
    assert all(r.ok for r in res), res
    assert [r.text for r in res] == [r.text for r in reference]  # greedy: same captions
    assert sorted(order) == list(range(8)), "one result per input, none doubled"
    resubmitted = {i for i, _ in adds[1]}
    done_before = set(range(8)) - resubmitted
    assert len(done_before) >= 3 and len(resubmitted) >= 1
    # what was resubmitted is exactly what had no result at the kill, each index once
    assert set(order[: len(done_before)]) == done_before
    assert sorted(i for i, _ in adds[1]) == sorted(resubmitted)
    assert collections.Counter(adds[0] + adds[1]).most_common(1)[0][1] <= 2


def test_fake_dead_error_is_recognised_by_name() -> None:
    from vlmcap._vllm_compat import is_engine_dead

    assert is_engine_dead(EngineDeadError("x"))
    assert not is_engine_dead(RuntimeError("x"))
