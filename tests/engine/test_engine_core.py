"""The engine loop's scheduler alone: `schedule()` plans a step from plain request state, no tensors."""

from __future__ import annotations

from collections import deque

from chatterbox_engine.engine_core import CoreRequest, Phase, Render, SchedulerConfig, schedule

CONFIG = SchedulerConfig(max_requests=4, prefill_length_slack=8, batch_s3gen=True, max_windows=2)


def waiting(prefill_len: int) -> CoreRequest:
    return CoreRequest(phase=Phase.PREFILL, prefill_len=prefill_len)


def decoding(*renders: Render, next_window: tuple[int, tuple] | None = None) -> CoreRequest:
    request = CoreRequest(phase=Phase.DECODE, renders=deque(renders))
    if next_window is not None:
        request.next_window_in, request.next_window_key = next_window
    return request


def groups(plan_groups: list[list[CoreRequest]], names: dict[int, str]) -> list[list[str]]:
    return [[names[id(request)] for request in group] for group in plan_groups]


def test_schedule_admits_groups_decodes_renders_cancels_and_retires():
    # Two decoding, so two of the four places are free: the two oldest waiting requests are admitted.
    a, b = decoding(), decoding()
    w1, w2, w3 = waiting(40), waiting(60), waiting(44)
    names = {id(r): n for r, n in [(a, "a"), (b, "b"), (w1, "w1"), (w2, "w2"), (w3, "w3")]}
    plan = schedule([a, b, w1, w2, w3], CONFIG)
    assert plan.retire == [] and plan.render == []
    # 40 and 60 differ by more than the slack: two prefill passes; w3 waits for a place.
    assert groups(plan.prefill, names) == [["w1"], ["w2"]]
    assert [names[id(r)] for r in plan.decode] == ["a", "b", "w1", "w2"]

    # Next step: w1, w2 decode; a place freed by a finished request admits w3 and a newcomer of similar
    # length, prefilled together.
    w1.phase = w2.phase = Phase.DECODE
    a.phase = Phase.DONE
    w4 = waiting(48)
    names[id(w4)] = "w4"
    plan = schedule([a, b, w1, w2, w3, w4], CONFIG)
    assert plan.retire == [a]
    assert groups(plan.prefill, names) == [["w3"]]  # only one place: b, w1, w2 decode
    assert [names[id(r)] for r in plan.decode] == ["b", "w1", "w2", "w3"]

    # A cancelled request is retired wherever it was: never prefilled, decoded or rendered again.
    w3.phase = Phase.DECODE
    w2.cancelled = True
    w4.cancelled = True
    plan = schedule([b, w1, w2, w3, w4], CONFIG)
    assert {names[id(r)] for r in plan.retire} == {"w2", "w4"}
    assert plan.prefill == []
    assert [names[id(r)] for r in plan.decode] == ["b", "w1", "w3"]


def test_schedule_groups_equal_s3gen_windows_up_to_max_windows():
    key, other = (10, 150, 300), (35, 150, 300)
    streams = [decoding(Render(10, final=False, key=key)) for _ in range(3)]
    odd = decoding(Render(35, final=False, key=other))
    whole_piece = CoreRequest(phase=Phase.RENDER, renders=deque([Render(40, final=True, key=None)]))
    requests = [*streams, odd, whole_piece]
    names = {id(r): f"s{i}" for i, r in enumerate(streams)} | {id(odd): "odd", id(whole_piece): "piece"}
    plan = schedule(requests, CONFIG)
    # Equal shapes share calls of at most max_windows; other shapes, and renders without a shape, go alone.
    assert groups(plan.render, names) == [["s0", "s1"], ["s2"], ["odd"], ["piece"]]

    # Without S3Gen batching (the CPU default) every window renders alone, so audio stays bit-identical.
    alone = SchedulerConfig(max_requests=4, batch_s3gen=False)
    assert groups(schedule(requests, alone).render, names) == [["s0"], ["s1"], ["s2"], ["odd"], ["piece"]]


def test_a_due_window_waits_a_few_steps_for_a_peer_of_the_same_shape():
    key = (25, 150, 300)
    due = decoding(Render(35, final=False, key=key))
    peer = decoding(next_window=(3, key))  # its equal window falls due in three steps
    names = {id(due): "due", id(peer): "peer"}
    assert schedule([due, peer], CONFIG).render == []
    # Each step brings the peer a token closer; once it is due too, both render in one call.
    peer.renders.append(Render(35, final=False, key=key))
    peer.next_window_in, peer.next_window_key = 25, (50, 150, 300)
    assert groups(schedule([due, peer], CONFIG).render, names) == [["due", "peer"]]
    # A peer too far off is not waited for, and no window waits longer than gather_steps.
    far = decoding(next_window=(CONFIG.gather_steps + 1, key))
    assert groups(schedule([due, far], CONFIG).render, {id(due): "due"}) == [["due"]]
    stalled = decoding(next_window=(1, key))
    due.held_steps = CONFIG.gather_steps
    assert groups(schedule([due, stalled], CONFIG).render, {id(due): "due"}) == [["due"]]
