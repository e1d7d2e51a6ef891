"""A task an earlier scenario submitted that runs during this one (restored from the unacked set after its
visibility timeout) is not this scenario's work: its probe records are dropped, and counted."""

from chaos.runner import without_leftovers


def test_earlier_runs_tasks_are_dropped_and_counted():
    records = {"tasks": [{"task_id": "mine"}, {"task_id": "old"}], "probe": {"loaded": True}}
    kept = without_leftovers(records, {"old", "older"})
    assert [t["task_id"] for t in kept["tasks"]] == ["mine"]
    assert kept["probe"] == {"loaded": True, "leftovers": 1}
    assert without_leftovers(records, set()) is records
