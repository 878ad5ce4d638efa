"""A task's memory between partitions (issue 26): what one partition leaves behind is
released before the next (Keras' global state, cycles, glibc's freed heap)."""

from __future__ import annotations

import pytest

from forecastguard.storage import open_store
from trainer.run import partitioned
from trainer.run.options import JobOptions
from trainer.run.partitions import make_partitioning


def test_release_memory_clears_keras_state_and_reports_rss() -> None:
    import keras

    keras.backend.clear_session()
    first = keras.layers.Dense(1)
    assert keras.layers.Dense(1).name != first.name  # names count up in one session
    out = partitioned.release_memory()
    assert keras.layers.Dense(1).name == first.name  # the session's state was cleared
    assert set(out) == {"rss_mb", "after_collect_mb", "after_trim_mb"}
    assert all(v > 0 for v in out.values())


def test_run_task_releases_memory_after_the_tuning_and_each_partition(
    tmp_path, monkeypatch
) -> None:
    ids = [f"P{i:03d}" for i in range(30)]
    partitioning = make_partitioning(ids, 10)
    products: dict[str, list[str]] = {p.name: [] for p in partitioning.partitions}
    for pid, name in partitioning.assign(ids).items():
        products[name].append(pid)
    plan = partitioned.Plan(partitioning, products, {n: None for n in products})
    events: list[str] = []
    monkeypatch.setattr(
        partitioned, "shared_params", lambda *a: (events.append("tuning"), ({}, {}))[1]
    )

    def train(engine, store, name, *rest):
        events.append(name)
        if name == plan.names[-1]:
            raise RuntimeError("the last partition fails")
        return {"partition": name}

    monkeypatch.setattr(partitioned, "train_partition", train)
    monkeypatch.setattr(partitioned, "release_memory", lambda: events.append("release") or {})
    opts = JobOptions(mode="train", run_id="r", study_id="r", partition_size=10)
    store = open_store(tmp_path.as_uri())
    with pytest.raises(RuntimeError, match="last partition"):
        partitioned.run_task(None, store, plan, opts, tmp_path)
    expected = ["tuning", "release"]
    for name in plan.names:
        expected += [name, "release"]
    assert len(plan.names) >= 2
    assert events == expected
