"""Partitions of the catalogue (issue 26): stable, balanced, by attribute or by hash."""

from __future__ import annotations

import random

import pytest

from trainer.run.partitions import (
    DEFAULT_PARTITION_SIZE,
    PartitionError,
    Partitioning,
    make_partitioning,
    partitions_of_task,
    product_hash,
    tuning_sample,
)


def _ids(n: int, prefix: str = "P") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


def test_product_hash_is_stable_across_processes() -> None:
    # blake2b of the UTF-8 id, not Python's salted hash(): fixed values.
    assert product_hash("P00001") == product_hash("P00001")
    assert product_hash("B1_1") == int.from_bytes(
        __import__("hashlib").blake2b(b"B1_1", digest_size=8).digest(), "big"
    )
    assert product_hash("P1") != product_hash("p1")


def test_default_size_keeps_the_pasta_catalogue_one_partition() -> None:
    pasta = [f"B{b}_{n}" for b in range(1, 5) for n in range(1, 31)]  # 120 ids
    parts = make_partitioning(pasta, DEFAULT_PARTITION_SIZE)
    assert parts.names == ["p0000"]
    assert set(parts.assign(pasta).values()) == {"p0000"}


def test_hash_partitions_are_balanced_and_cover_every_product() -> None:
    ids = _ids(10_007)
    parts = make_partitioning(ids, 1000)
    assert len(parts.partitions) == 11  # ceil(10007 / 1000)
    assignment = parts.assign(ids)
    sizes = [list(assignment.values()).count(n) for n in parts.names]
    assert sum(sizes) == len(ids)
    assert max(sizes) - min(sizes) <= 1  # cut at equal counts
    assert max(sizes) <= 1000


def test_partitioning_is_stable_under_input_order_and_catalogue_growth() -> None:
    ids = _ids(3000)
    shuffled = ids[:]
    random.Random(3).shuffle(shuffled)
    a = make_partitioning(ids, 500)
    b = make_partitioning(shuffled, 500)
    assert a == b
    # New products fall in the saved ranges; the old ones keep their partition.
    before = a.assign(ids)
    grown = a.assign([*ids, *_ids(200, prefix="NEW")])
    assert {p: grown[p] for p in ids} == before
    assert all(grown[p] in a.names for p in _ids(200, prefix="NEW"))


def test_round_trip_through_json_form() -> None:
    parts = make_partitioning(_ids(50), 7, r"^(P000[0-4])")
    again = Partitioning.from_dict(parts.to_dict())
    assert again == parts
    assert again.assign(_ids(50)) == parts.assign(_ids(50))


def test_attribute_groups_then_hash_ranges_within_a_large_group() -> None:
    ids = [f"FOODS_{i:04d}_CA_1" for i in range(30)] + [f"FOODS_{i:04d}_TX_2" for i in range(5)]
    parts = make_partitioning(ids, 10, r"_([A-Z]{2}_\d)$")
    groups = [p.group for p in parts.partitions]
    assert groups == ["CA_1", "CA_1", "CA_1", "TX_2"]  # 30 -> 3 ranges, 5 -> 1
    assignment = parts.assign(ids)
    for pid, name in assignment.items():
        store = pid.rsplit("_", 2)[-2] + "_" + pid.rsplit("_", 1)[-1]
        assert next(p for p in parts.partitions if p.name == name).group == store
    assert [list(assignment.values()).count(n) for n in parts.names] == [10, 10, 10, 5]


def test_attribute_errors_name_the_problem() -> None:
    with pytest.raises(PartitionError, match="one capturing group"):
        make_partitioning(["a"], 10, r"^a")
    with pytest.raises(PartitionError, match="not a regex"):
        make_partitioning(["a"], 10, r"^(a")
    with pytest.raises(PartitionError, match="does not match product id 'x1'"):
        make_partitioning(["B1_1", "x1"], 10, r"^(B\d+)_")
    parts = make_partitioning(["B1_1", "B1_2"], 10, r"^(B\d+)_")
    with pytest.raises(PartitionError, match="group 'B9' has no partition"):
        parts.assign(["B9_1"])
    with pytest.raises(PartitionError, match="TRAIN_PARTITION_SIZE"):
        make_partitioning(["a"], 0)
    with pytest.raises(PartitionError, match="no products"):
        make_partitioning([], 10)


def test_partitions_go_to_tasks_round_robin() -> None:
    names = [f"p{i:04d}" for i in range(5)]
    assert partitions_of_task(names, 0, 2) == ["p0000", "p0002", "p0004"]
    assert partitions_of_task(names, 1, 2) == ["p0001", "p0003"]
    assert partitions_of_task(names, 3, 4) == ["p0003"]
    every = sorted(n for t in range(3) for n in partitions_of_task(names, t, 3))
    assert every == names
    with pytest.raises(PartitionError):
        partitions_of_task(names, 2, 2)


def test_tuning_sample_is_budgeted_and_draws_from_every_partition() -> None:
    ids = _ids(1000)
    parts = make_partitioning(ids, 100)
    assignment = parts.assign(ids)
    sample = tuning_sample(assignment, 100)
    assert len(sample) == 100
    counts = [sum(assignment[p] == n for p in sample) for n in parts.names]
    assert counts == [10] * 10
    assert tuning_sample(assignment, 100) == sample  # deterministic
    assert len(tuning_sample(assignment, 5000)) == 1000
