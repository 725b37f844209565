"""The queue answer a pending run gets without a plan speaks the planner's vocabulary."""

from core.runs.schemas import SUBMITTED
from core.scheduling.planner import QueueReason


def test_a_pending_runs_queue_reason_is_the_planners_submitted() -> None:
    assert SUBMITTED.reason == QueueReason.SUBMITTED.value
    assert SUBMITTED.position is None
