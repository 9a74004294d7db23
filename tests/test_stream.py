"""``caption_stream`` and the Ray engine actor's inbox on the fake engine (fast, no vLLM).

A stream must give exactly what the batch call gives for the same inputs, whatever the arrival
pattern, keep the engine full across inputs that arrive over time, and never count waiting for
input as an engine stall.
"""

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import pytest
from hypothesis import given, settings, strategies as st

import vlmcap
from vlmcap import VllmConfig
from vlmcap._registry import unregister_plugin
from vlmcap.testing._fake import FakeEngine

from ._plugins import ONE_FRAME, EchoPlugin


@pytest.fixture(autouse=True)
def _echo_plugin() -> Iterator[None]:
    vlmcap.register_plugin(EchoPlugin)
    yield
    unregister_plugin("echo-test")


CONFIG = VllmConfig(model_variant="echo-test", stall_timeout_s=0.2)


def _inputs(n: int) -> list[dict[str, Any]]:
    return [{"prompt": f"clip {i}", "multi_modal_data": {"video": ONE_FRAME}} for i in range(n)]


def _index(inputs: Mapping[str, Any]) -> int:
    return int(str(inputs["prompt"]).rsplit(" ", 1)[-1])


def _arrivals(inputs: list[dict[str, Any]], gaps: list[int]) -> Iterator[dict[str, Any] | None]:
    """The inputs with ``gaps[i]`` "nothing yet" marks before input ``i``."""
    for inp, gap in zip(inputs, gaps, strict=False):
        yield from [None] * gap
        yield inp


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 25),
    gaps=st.lists(st.integers(0, 3), min_size=25, max_size=25),
    delays=st.lists(st.integers(1, 5), min_size=25, max_size=25),
    limit=st.integers(1, 6),
    stage2=st.booleans(),
)
def test_a_stream_gives_the_batch_results_under_any_arrival_pattern(
    n: int, gaps: list[int], delays: list[int], limit: int, stage2: bool
) -> None:
    config = attrs.evolve(CONFIG, stage2_caption=stage2, stall_timeout_s=60.0)  # no timing race

    def steps(_id: str, inp: Mapping[str, Any]) -> int:
        return delays[_index(inp) % 25] if str(inp["prompt"]).startswith("clip") else 2

    batch = vlmcap.caption_results(_inputs(n), FakeEngine(steps=steps), None, None, config)
    engine = FakeEngine(steps=steps)
    got = list(
        vlmcap.caption_stream(_arrivals(_inputs(n), gaps), engine, None, None, config, limit)
    )
    assert sorted(i for i, _ in got) == list(range(n))  # each input once, none lost
    assert dict(got) == dict(enumerate(batch))
    assert engine.peak_inflight <= limit
    if n:
        assert engine.peak_inflight == min(limit, n) or any(gaps[:n])


def test_the_engine_is_topped_up_as_captions_finish() -> None:
    """With every input available, the engine holds ``limit`` requests until the tail."""
    held: list[int] = []

    class Watched(FakeEngine):
        def step(self) -> Any:
            held.append(self.inflight)
            return super().step()

    engine = Watched(steps=lambda _id, inp: 1 + _index(inp) % 3)
    results = list(vlmcap.caption_stream(iter(_inputs(40)), engine, None, None, CONFIG, 8))
    assert len(results) == 40
    assert all(h == 8 for h in held[:-3]), held  # full until the last inputs drain


def test_waiting_for_input_is_not_a_stall() -> None:
    def slow() -> Iterator[dict[str, Any] | None]:
        for inp in _inputs(3):
            deadline = time.monotonic() + 0.5  # > stall_timeout_s with nothing in flight
            while time.monotonic() < deadline:
                time.sleep(0.05)
                yield None
            yield inp

    got = dict(vlmcap.caption_stream(slow(), FakeEngine(), None, None, CONFIG, 2))
    assert sorted(got) == [0, 1, 2]
    assert all(r.ok for r in got.values()), got


def test_a_stalled_engine_still_fails_the_stream_inputs_in_flight() -> None:
    got = dict(vlmcap.caption_stream(iter(_inputs(3)), FakeEngine(stall=1), None, None, CONFIG))
    assert sorted(got) == [0, 1, 2]
    assert all("EngineStalledError" in (r.error or "") for r in got.values())


def test_a_bad_item_is_a_config_error_after_the_earlier_results() -> None:
    items: list[Any] = [*_inputs(2), "not a mapping"]
    stream = vlmcap.caption_stream(iter(items), FakeEngine(), None, None, CONFIG, 1)
    assert [next(stream)[0], next(stream)[0]] == [0, 1]
    with pytest.raises(vlmcap.ConfigError, match=r"model_inputs\[2\].*str"):
        next(stream)


def test_a_stream_needs_room_for_one_input() -> None:
    with pytest.raises(vlmcap.ConfigError, match="max_inflight_requests"):
        next(vlmcap.caption_stream(iter(_inputs(1)), FakeEngine(), None, None, CONFIG, 0))


def test_captioner_stream_rebuilds_a_dead_engine() -> None:
    engines = [FakeEngine(die_after=2, steps=lambda _id, _inp: 2), FakeEngine()]
    with vlmcap.Captioner(CONFIG, build=lambda: engines.pop(0), processor=None) as cap:
        got = dict(cap.stream(iter(_inputs(6)), 3))
        assert cap.rebuilds == 1
    assert sorted(got) == list(range(6))
    assert all(r.ok for r in got.values()), got


def test_engine_actor_merges_concurrent_batches_into_one_engine_batch() -> None:
    """The Ray engine actor's calls share one stream: the engine sees both batches at once."""
    pytest.importorskip("ray")
    from vlmcap.ray._actors import Batch, EngineWorker, Work
    from vlmcap.video._windows import image_plan

    class UntilBoth(FakeEngine):
        """Finishes nothing until both batches are in (or 10 s pass): no race on thread start.

        With one engine call per batch, the second batch would wait for the first to finish
        and this engine would never hold more than 5."""

        def step(self) -> Any:
            if len(self.added) < 10 and time.monotonic() < deadline:
                time.sleep(0.001)
                return []
            return super().step()

    deadline = time.monotonic() + 10
    engine = UntilBoth()
    worker = EngineWorker(CONFIG, "fp", lambda _config: engine, max_inflight=64)
    plan = image_plan()
    batches = [
        Batch(f"v{b}", tuple(Work(f"v{b}", plan, 5, 1, inp) for inp in _inputs(5)))
        for b in range(2)
    ]
    rows: dict[int, Any] = {}
    threads = [
        threading.Thread(target=lambda b=b: rows.__setitem__(b, worker.caption(batches[b])))
        for b in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    worker.close()
    assert engine.peak_inflight == 10  # both batches in the engine together, not 5 then 5
    for b in range(2):
        assert [r.source for r in rows[b]] == [f"v{b}"] * 5
        assert all(r.caption for r in rows[b]), rows[b]


@settings(max_examples=100, deadline=None)
@given(
    arrivals=st.lists(st.integers(0, 4), min_size=1, max_size=40),
    limit=st.integers(1, 5),
    refine=st.booleans(),
)
def test_a_released_stream_state_holds_only_unfinished_inputs(
    arrivals: list[int], limit: int, refine: bool
) -> None:
    """Scheduler level: extend / admit / settle / release keep the state bounded, and every
    input is handed out exactly once (what lets an engine actor stream for days)."""
    from vlmcap import _scheduler as sched
    from vlmcap._records import VllmCaptionRequest

    def request(i: int) -> VllmCaptionRequest:
        return VllmCaptionRequest(f"r{i}", {"prompt": "x"}, stage2_prompt="R: " if refine else None)

    state = sched.start([], max_inflight=limit)
    handed: list[int] = []
    total = 0
    for k in [*arrivals, *[0] * 200]:  # then drain
        state = sched.extend(state, [request(total + j) for j in range(k)])
        total += k
        state, subs = sched.admit(state)
        outs = [sched.Outcome(s.engine_id, f"c{s.job.index}", "stop", 3, 2) for s in subs]
        state = sched.settle(state, outs, lambda r: attrs.evolve(r, request_id=r.request_id + "b"))
        state, done = sched.release(state)
        handed += done
        assert not state.results
        assert set(state.counts) <= {j.index for j in (*state.queue, *state.inflight.values())}
        assert len(state.inflight) <= limit
    assert sorted(handed) == list(range(total))
    assert sched.is_done(state) and state.released == total


def test_stopping_a_stream_early_aborts_what_is_in_flight() -> None:
    engine = FakeEngine(steps=lambda _id, inp: 1 if _index(inp) == 0 else 50)
    stream = vlmcap.caption_stream(iter(_inputs(5)), engine, None, None, CONFIG, 5)
    assert next(stream)[0] == 0
    stream.close()  # the consumer stops: the other four must not keep the engine busy
    assert engine.inflight == 0
    assert len(engine.aborted) == 4
