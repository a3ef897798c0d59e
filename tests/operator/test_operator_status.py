"""Status and conditions computed from observed objects."""

from chatterbox_operator import status


def by_type(conditions: list[status.Condition]) -> dict[str, status.Condition]:
    return {condition.type: condition for condition in conditions}


def deployment(ready: int, updated: int, generation: int = 1, observed: int = 1) -> dict:
    return {
        "metadata": {"generation": generation},
        "status": {"readyReplicas": ready, "updatedReplicas": updated, "observedGeneration": observed},
    }


def test_ready_when_all_replicas_ready() -> None:
    conditions = by_type(status.tts_conditions(2, deployment(2, 2), None))
    assert conditions["Ready"].status is True
    assert conditions["Progressing"].status is False
    assert conditions["Degraded"].status is False


def test_progressing_while_rolling_out() -> None:
    conditions = by_type(status.tts_conditions(2, deployment(1, 1), None))
    assert conditions["Ready"].status is False and conditions["Ready"].reason == "ReplicasNotReady"
    assert conditions["Progressing"].status is True
    stale = by_type(status.tts_conditions(2, deployment(2, 2, generation=3, observed=2), None))
    assert stale["Progressing"].status is True


def test_scaled_to_zero_is_not_ready() -> None:
    assert by_type(status.tts_conditions(0, deployment(0, 0), None))["Ready"].reason == "ScaledToZero"


def test_gpu_unschedulable_pods_degrade() -> None:
    pods = [
        {
            "metadata": {"name": "demo-1"},
            "status": {
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                    }
                ]
            },
        }
    ]
    problem = status.unschedulable(pods, "nvidia.com/gpu")
    assert problem is not None and problem.reason == "GPUUnschedulable"
    degraded = by_type(status.tts_conditions(1, deployment(0, 1), problem))["Degraded"]
    assert degraded.status is True and "Insufficient nvidia.com/gpu" in degraded.message


def test_crash_looping_pods_degrade() -> None:
    pods = [
        {
            "metadata": {"name": "demo-1"},
            "status": {
                "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff", "message": "x"}}}]
            },
        }
    ]
    assert status.stuck_container(pods).reason == "CrashLoopBackOff"
    assert status.stuck_container([{"metadata": {"name": "ok"}, "status": {}}]) is None


def test_transition_time_moves_only_when_status_flips() -> None:
    first = status.merge_conditions([], [status.Condition("Ready", False, "A", "a")], 1, "T1")
    same = status.merge_conditions(first, [status.Condition("Ready", False, "B", "b")], 2, "T2")
    assert (
        same[0]["lastTransitionTime"] == "T1"
        and same[0]["reason"] == "B"
        and same[0]["observedGeneration"] == 2
    )
    flipped = status.merge_conditions(same, [status.Condition("Ready", True, "C", "c")], 2, "T3")
    assert flipped[0]["lastTransitionTime"] == "T3" and flipped[0]["status"] == "True"


def test_unrelated_conditions_are_kept() -> None:
    old = [{"type": "DeletionBlocked", "status": "True"}]
    merged = status.merge_conditions(old, [status.Condition("Ready", True, "A", "a")], None, "T")
    assert [item["type"] for item in merged] == ["DeletionBlocked", "Ready"]


def test_library_status_follows_the_claim() -> None:
    bound = {"status": {"phase": "Bound", "capacity": {"storage": "10Gi"}}}
    assert status.library_status_fields("v", bound) == {
        "claimName": "v",
        "phase": "Bound",
        "bound": True,
        "capacity": "10Gi",
    }
    assert status.library_conditions("v", bound)[0].status is True
    assert status.library_conditions("v", None)[0].reason == "ClaimMissing"
    assert status.library_conditions("v", {"status": {"phase": "Pending"}})[0].reason == "ClaimPending"


def test_a_problem_is_new_only_when_it_appears_or_changes() -> None:
    def degraded(state: str, reason: str) -> dict:
        return {"conditions": [{"type": "Degraded", "status": state, "reason": reason}]}

    assert status.new_problem(None, degraded("True", "InvalidSpec"), "Degraded", "True")
    assert status.new_problem(
        degraded("False", "AsExpected"), degraded("True", "InvalidSpec"), "Degraded", "True"
    )
    assert status.new_problem(
        degraded("True", "InvalidSpec"), degraded("True", "ApplyFailed"), "Degraded", "True"
    )
    assert not status.new_problem(
        degraded("True", "InvalidSpec"), degraded("True", "InvalidSpec"), "Degraded", "True"
    )
    assert not status.new_problem(
        degraded("True", "InvalidSpec"), degraded("False", "AsExpected"), "Degraded", "True"
    )
