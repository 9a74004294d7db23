"""Hypothesis properties of the pure in-flight scheduler (no engine, thousands of examples)."""

from collections import Counter

import attrs
import pytest
from hypothesis import given, strategies as st

from vlmcap import CaptionStatus, VllmCaptionRequest, _scheduler as sched


def _refine_factory(broken: frozenset[int]) -> sched.Refine:
    def refine(request: VllmCaptionRequest) -> VllmCaptionRequest:
        index = int(request.request_id.removeprefix("r"))
        if index in broken:
            raise RuntimeError("plugin bug")
        return VllmCaptionRequest(
            request_id=f"r{index}",
            inputs={"prompt": f"{request.stage2_prompt}{request.caption}"},
        )

    return refine


@given(data=st.data())
def test_every_input_gets_exactly_one_result_and_at_most_one_refinement(
    data: st.DataObject,
) -> None:
    n = data.draw(st.integers(0, 25), label="inputs")
    wants = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="stage2")
    max_inflight = data.draw(st.integers(0, 6), label="max_inflight")
    barrier = data.draw(st.booleans(), label="barrier")
    broken = frozenset(data.draw(st.sets(st.integers(0, max(0, n - 1))), label="refine raises"))
    requests = [
        VllmCaptionRequest(f"r{i}", {"prompt": f"p{i}"}, stage2_prompt="refine: " if w else None)
        for i, w in enumerate(wants)
    ]
    state = sched.start(requests, max_inflight=max_inflight, barrier=barrier)
    submitted: Counter[tuple[int, int]] = Counter()
    tokens: Counter[int] = Counter()
    last_text: dict[int, str] = {}
    ok_stage: dict[int, int] = {}
    steps = 0
    while not sched.is_done(state):
        before = len(state.inflight)
        state, subs = sched.admit(state)
        for sub in subs:
            submitted[(sub.job.index, sub.job.stage)] += 1
        if max_inflight:
            assert len(state.inflight) <= max_inflight
        if not barrier or before == 0:
            limit = max_inflight or 10**9
            # fills to the limit in one go, not one admission per step
            assert len(state.inflight) == min(limit, before + len(subs) + len(state.queue))
        assert state.inflight, "queue or in-flight work must remain while results are missing"
        ids = sorted(state.inflight)
        order = data.draw(st.permutations(ids))
        chosen = order[: data.draw(st.integers(1, len(ids)))]
        outcomes = []
        for eid in chosen:
            job = state.inflight[eid]
            kind = data.draw(st.sampled_from(["ok", "ok", "ok", "error", "empty", "length"]))
            p, o = data.draw(st.integers(0, 50)), data.draw(st.integers(0, 50))
            tokens[job.index] += p + o
            if kind == "error":
                outcomes.append(sched.Outcome(eid, None, None, p, o, error="boom"))
                continue
            text = "" if kind == "empty" else f"text-{job.index}-{job.stage}"
            reason = "length" if kind == "length" else "stop"
            outcomes.append(sched.Outcome(eid, text, reason, p, o))
            last_text[job.index] = text
            if text:
                ok_stage[job.index] = job.stage
        state = sched.settle(state, outcomes, _refine_factory(broken))
        steps += 1
        assert steps <= 4 * n + 4
    results = sched.ordered_results(state)
    assert len(results) == n
    for i, res in enumerate(results):
        assert submitted[(i, 1)] == 1
        assert submitted[(i, 2)] <= 1
        assert submitted[(i, 2)] == 0 or wants[i]
        assert res.prompt_tokens + res.output_tokens == tokens[i]
        assert res.stages == (2 if submitted[(i, 2)] else 1)
        if submitted[(i, 2)]:
            assert i not in broken
        if res.ok:
            assert res.text == last_text[i]
            assert ok_stage[i] == (2 if wants[i] else 1)
        else:
            assert res.error
            assert res.text == ""


def test_stage2_jobs_go_to_the_front_of_the_queue() -> None:
    reqs = [
        VllmCaptionRequest(f"r{i}", {}, stage2_prompt="x" if i == 0 else None) for i in range(4)
    ]
    state = sched.start(reqs, max_inflight=1)
    state, subs = sched.admit(state)
    assert [s.job.index for s in subs] == [0]
    state = sched.settle(
        state, [sched.Outcome(subs[0].engine_id, "cap")], _refine_factory(frozenset())
    )
    state, subs = sched.admit(state)
    assert [(s.job.index, s.job.stage) for s in subs] == [(0, 2)]


def test_refined_request_reuses_nothing_but_what_the_plugin_returns() -> None:
    req = VllmCaptionRequest("r0", {"prompt": "p"}, stage2_prompt="refine: ")
    state = sched.start([req])
    state, subs = sched.admit(state)
    state = sched.settle(
        state,
        [sched.Outcome(subs[0].engine_id, "a cat", "stop", 3, 2)],
        _refine_factory(frozenset()),
    )
    state, subs = sched.admit(state)
    assert subs[0].job.request.inputs == {"prompt": "refine: a cat"}
    state = sched.settle(
        state,
        [sched.Outcome(subs[0].engine_id, "a black cat", "length", 5, 4)],
        _refine_factory(frozenset()),
    )
    (res,) = sched.ordered_results(state)
    assert res.text == "a black cat"
    assert res.status is CaptionStatus.TRUNCATED
    assert res.finish_reason == "length"  # the terminal stage's reason wins
    assert (res.prompt_tokens, res.output_tokens) == (8, 6)


def test_stray_outcomes_are_counted_not_fatal() -> None:
    state = sched.start([VllmCaptionRequest("r0", {})])
    state, subs = sched.admit(state)
    state = sched.settle(
        state,
        [sched.Outcome("nope", "x"), sched.Outcome(subs[0].engine_id, "ok")],
        _refine_factory(frozenset()),
    )
    assert state.strays == 1
    assert sched.ordered_results(state)[0].text == "ok"


def test_abandon_ends_queued_and_inflight_with_the_cause() -> None:
    reqs = [VllmCaptionRequest(f"r{i}", {}) for i in range(5)]
    state = sched.start(reqs, max_inflight=2)
    state, _ = sched.admit(state)
    state = sched.abandon(state, "engine died")
    results = sched.ordered_results(state)
    assert all(
        r.status is CaptionStatus.ERROR and "engine died" in (r.error or "") for r in results
    )


def test_state_is_immutable() -> None:
    state = sched.start([VllmCaptionRequest("r0", {})])
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        state.total = 3  # type: ignore[misc]
    new, _ = sched.admit(state)
    assert state.queue and not state.inflight  # the old state is untouched
    assert new.inflight


def test_negative_max_inflight_is_rejected() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        sched.start([], max_inflight=-1)


@given(data=st.data())
def test_engine_losses_resubmit_only_unfinished_work(data: st.DataObject) -> None:
    """With the engine lost at random moments (``requeue_inflight``), every input still ends
    with exactly one result, and no stage that completed is ever submitted again."""
    n = data.draw(st.integers(1, 15), label="inputs")
    wants = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="stage2")
    max_inflight = data.draw(st.integers(0, 5), label="max_inflight")
    requests = [
        VllmCaptionRequest(f"r{i}", {"prompt": f"p{i}"}, stage2_prompt="refine: " if w else None)
        for i, w in enumerate(wants)
    ]
    state = sched.start(requests, max_inflight=max_inflight)
    completed: set[tuple[int, int]] = set()
    losses = 0
    while not sched.is_done(state):
        state, subs = sched.admit(state)
        for sub in subs:
            assert (sub.job.index, sub.job.stage) not in completed, "finished work resubmitted"
        if losses < 5 and data.draw(st.booleans(), label="engine lost"):
            losses += 1
            state = sched.requeue_inflight(state)
            assert not state.inflight
            continue
        ids = sorted(state.inflight)
        chosen = data.draw(st.permutations(ids))[: data.draw(st.integers(1, len(ids)))]
        outcomes = []
        for eid in chosen:
            job = state.inflight[eid]
            completed.add((job.index, job.stage))
            outcomes.append(sched.Outcome(eid, f"text-{job.index}-{job.stage}", "stop", 1, 1))
        state = sched.settle(state, outcomes, _refine_factory(frozenset()))
    results = sched.ordered_results(state)
    assert len(results) == n
    assert all(r.ok and r.stages == (2 if w else 1) for r, w in zip(results, wants, strict=True))
