"""The gather's comparison of per-partition and whole-catalogue promotion (issue 26)."""

from __future__ import annotations

import pytest

from trainer.run.partitioned import served_means


def _marker(name: str, challenger: dict, champion: dict, baseline: dict, changed: bool) -> dict:
    served = challenger if changed else (champion or baseline)
    return {
        "partition": name,
        "products": sorted(challenger),
        "changed": changed,
        "serving": {"kind": "lightgbm" if changed else "lstm", "model_version": "v"},
        "per_product": {
            "challenger": challenger,
            "champion": champion,
            "baseline": baseline,
            "served": served,
        },
    }


def test_per_partition_takes_each_partitions_better_side() -> None:
    # p0: the challenger wins (0.5 vs 1.0); p1: it loses (1.5 vs 1.0).
    markers = [
        _marker("p0000", {"a": 0.5, "b": 0.5}, {"a": 1.0, "b": 1.0}, {"a": 2, "b": 2}, True),
        _marker("p0001", {"c": 1.5, "d": 1.5}, {"c": 1.0, "d": 1.0}, {"c": 2, "d": 2}, False),
    ]
    means = served_means(markers)
    assert means["products"] == 4
    assert means["per_partition"] == pytest.approx(0.75)
    # as a whole: challengers 1.0 vs incumbents 1.0 -> not lower, nothing promoted
    assert means["whole_promotes"] is False
    assert means["whole"] == pytest.approx(1.0)
    assert means["challenger_everywhere"] == pytest.approx(1.0)


def test_a_partition_without_champion_counts_its_baseline() -> None:
    markers = [_marker("p0000", {"a": 0.5}, {}, {"a": 0.8}, True)]
    means = served_means(markers)
    assert means["incumbent_everywhere"] == pytest.approx(0.8)
    assert means["whole_promotes"] is True and means["whole"] == pytest.approx(0.5)


def test_collect_waits_for_a_retried_partition_and_fails_on_a_final_error(
    tmp_path, monkeypatch
) -> None:
    import threading

    from forecastguard.storage import open_store
    from trainer.run import partitioned

    monkeypatch.setattr(partitioned, "POLL_S", 0.01)
    store = open_store(tmp_path.as_uri())
    keys = ["c/done/p0000.json", "c/done/p0001.json"]
    store.write_json(keys[0], {"partition": "p0000", "ok": 1})
    store.write_json(keys[1], {"partition": "p0001", "error": "boom", "final": False})
    timer = threading.Timer(0.2, store.write_json, (keys[1], {"partition": "p0001", "ok": 2}))
    timer.start()
    markers = partitioned.collect(store, keys, timeout_s=10)
    timer.join()
    assert [m["ok"] for m in markers] == [1, 2]
    store.write_json(keys[1], {"partition": "p0001", "error": "boom", "final": True})
    with pytest.raises(partitioned.GatherError, match="p0001: boom"):
        partitioned.collect(store, keys, timeout_s=10)
    with pytest.raises(partitioned.GatherError, match="not written after"):
        partitioned.collect(store, [*keys[:1], "c/done/p0009.json"], timeout_s=0.05)


def test_waiting_looks_again_soon_then_every_poll_s(tmp_path, monkeypatch) -> None:
    """A file another task writes a moment later is not waited for a whole POLL_S: the
    pauses start at POLL_FIRST_S and double up to POLL_S, where a long wait stays."""
    from forecastguard.storage import open_store
    from trainer.run import partitioned

    store = open_store(tmp_path.as_uri())
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 8:  # the other task writes its file during the eighth pause
            store.write_json("c/done/p0001.json", {"partition": "p0001"})

    monkeypatch.setattr(partitioned.time, "sleep", sleep)
    partitioned.collect(store, ["c/done/p0001.json"], timeout_s=600)
    assert pauses == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert partitioned.POLL_S == 5.0 and partitioned.POLL_FIRST_S == 0.25
