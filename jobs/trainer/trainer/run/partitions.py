"""Partitions of the catalogue (issue 26): which products one model is trained on.

Products are grouped by an attribute their ids carry (`key_pattern`, a regular
expression with one capturing group: `^(B\\d+)_` groups the pasta data by brand,
`_(CA_\\d|TX_\\d|WI_\\d)$` M5's ids by store) — the sales table has no store, department
or category column, so the id is where such an attribute lives today. Without a pattern
every product is in one group. A group with more than `size` products is cut into
`ceil(n / size)` ranges of a stable hash of the product id (blake2b, the same on every
machine and Python), each range holding an equal share of the group's products: the
partitions are balanced (sizes differ by at most one) and a product keeps its
partition while the boundaries stand.

The boundaries are saved with the champion (`Partitioning.to_dict`), so serving assigns
a product the same way its model was trained, and a product first seen after the
training falls in the range that holds its hash (in its group; a group never seen has
no partition and `assign` names it). Partition `i` of `n` is trained by task
`i mod task_count` (`partitions_of_task`).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_PARTITION_SIZE",
    "Partition",
    "PartitionError",
    "Partitioning",
    "make_partitioning",
    "partitions_of_task",
    "product_hash",
    "tuning_sample",
]

# Large enough that the pasta data (118 products) and the demo are one partition: their
# runs are today's single-model runs, unchanged.
DEFAULT_PARTITION_SIZE = 5000
HASH_SPACE = 1 << 64
NO_GROUP = ""  # the group of every product when there is no key pattern


class PartitionError(ValueError):
    """A partitioning setting or input cannot be used; the message says which."""


def product_hash(product_id: str) -> int:
    """A stable 64-bit hash of a product id (blake2b; not Python's salted `hash`)."""
    digest = hashlib.blake2b(str(product_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def compile_key(pattern: str | None) -> re.Pattern[str] | None:
    """The key pattern compiled, or None; refused unless it has one capturing group."""
    if not pattern:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise PartitionError(f"TRAIN_PARTITION_KEY {pattern!r} is not a regex: {exc}") from None
    if compiled.groups != 1:
        raise PartitionError(
            f"TRAIN_PARTITION_KEY {pattern!r} must have exactly one capturing group "
            f"(the attribute), it has {compiled.groups}"
        )
    return compiled


def group_of(product_id: str, key: re.Pattern[str] | None) -> str:
    """The attribute `key` captures in `product_id` ("" without a key); refused when the
    pattern does not match (a product would otherwise land in no partition silently)."""
    if key is None:
        return NO_GROUP
    found = key.search(str(product_id))
    if found is None or not found.group(1):
        raise PartitionError(
            f"TRAIN_PARTITION_KEY {key.pattern!r} does not match product id {product_id!r}: "
            "every product needs the attribute"
        )
    return found.group(1)


@dataclass(frozen=True)
class Partition:
    """One partition: its group (attribute value) and hash range [lo, hi)."""

    name: str
    group: str
    lo: int
    hi: int

    def holds(self, group: str, hashed: int) -> bool:
        """Whether a product of `group` whose hash is `hashed` belongs here."""
        return group == self.group and self.lo <= hashed < self.hi


@dataclass(frozen=True)
class Partitioning:
    """How products map to partitions: the settings and each partition's range."""

    size: int
    key_pattern: str | None
    partitions: tuple[Partition, ...]

    def __post_init__(self) -> None:
        if self.size < 1:
            raise PartitionError(f"TRAIN_PARTITION_SIZE must be >= 1, got {self.size}")
        compile_key(self.key_pattern)

    @property
    def names(self) -> list[str]:
        """The partitions' names, in order (`p0000`, `p0001`, ...)."""
        return [p.name for p in self.partitions]

    def same_settings(self, size: int, key_pattern: str | None) -> bool:
        """Whether this partitioning was made with these settings."""
        return self.size == size and (self.key_pattern or None) == (key_pattern or None)

    def assign(self, product_ids: Iterable[str]) -> dict[str, str]:
        """Each product's partition name; raises PartitionError for a product whose group
        has no partition (an attribute value never trained on)."""
        key = compile_key(self.key_pattern)
        by_group: dict[str, list[Partition]] = {}
        for part in self.partitions:
            by_group.setdefault(part.group, []).append(part)
        starts = {g: [p.lo for p in parts] for g, parts in by_group.items()}
        out: dict[str, str] = {}
        for pid in product_ids:
            group = group_of(pid, key)
            parts = by_group.get(group)
            if not parts:
                raise PartitionError(
                    f"product {pid!r}: its group {group!r} has no partition "
                    f"(groups: {sorted(by_group)[:10]})"
                )
            i = bisect.bisect_right(starts[group], product_hash(pid)) - 1
            out[str(pid)] = parts[max(i, 0)].name
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form (hashes as strings: 64-bit integers do not survive every JSON reader)."""
        return {
            "size": self.size,
            "key_pattern": self.key_pattern,
            "partitions": [
                {"name": p.name, "group": p.group, "lo": str(p.lo), "hi": str(p.hi)}
                for p in self.partitions
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partitioning:
        """Inverse of `to_dict`."""
        try:
            parts = tuple(
                Partition(str(p["name"]), str(p["group"]), int(p["lo"]), int(p["hi"]))
                for p in data["partitions"]
            )
            return cls(int(data["size"]), data.get("key_pattern") or None, parts)
        except (KeyError, TypeError, ValueError) as exc:
            raise PartitionError(f"partitioning document is malformed: {exc}") from None


def make_partitioning(
    product_ids: Sequence[str], size: int, key_pattern: str | None = None
) -> Partitioning:
    """Partitions of `product_ids`: by the key pattern's group, each group cut into
    `ceil(n / size)` hash ranges of equal product counts (one range without a cut)."""
    if size < 1:
        raise PartitionError(f"TRAIN_PARTITION_SIZE must be >= 1, got {size}")
    ids = sorted({str(p) for p in product_ids})
    if not ids:
        raise PartitionError("no products to partition")
    key = compile_key(key_pattern)
    groups: dict[str, list[int]] = {}
    for pid in ids:
        groups.setdefault(group_of(pid, key), []).append(product_hash(pid))
    partitions: list[Partition] = []
    for group in sorted(groups):
        hashes = sorted(groups[group])
        n = len(hashes)
        k = max(1, math.ceil(n / size))
        # Cut at equal counts: range j starts at the hash of product j*n//k; the first
        # range starts at 0 and the last ends at 2^64, so every hash has a range.
        starts = [0] + [hashes[(j * n) // k] for j in range(1, k)]
        ends = [*starts[1:], HASH_SPACE]
        for lo, hi in zip(starts, ends, strict=True):
            partitions.append(Partition(f"p{len(partitions):04d}", group, lo, hi))
    return Partitioning(size, key_pattern or None, tuple(partitions))


def partitions_of_task(names: Sequence[str], task_index: int, task_count: int) -> list[str]:
    """The partitions task `task_index` of `task_count` trains: partition i goes to task
    i mod task_count."""
    if task_count < 1 or not 0 <= task_index < task_count:
        raise PartitionError(f"task {task_index} of {task_count} is not a valid task")
    return [name for i, name in enumerate(names) if i % task_count == task_index]


def tuning_sample(assignment: dict[str, str], budget: int) -> list[str]:
    """A representative sample of at most `budget` products for tuning: the same share
    from every partition (round robin over the partitions, each in hash order), so the
    shared parameters are tuned on every part of the catalogue, at one partition's cost."""
    if budget < 1:
        raise PartitionError(f"the tuning budget must be >= 1 product, got {budget}")
    members: dict[str, list[str]] = {}
    for pid in sorted(assignment, key=lambda p: (product_hash(p), p)):
        members.setdefault(assignment[pid], []).append(pid)
    queues = [members[name] for name in sorted(members)]
    sample: list[str] = []
    depth = 0
    while len(sample) < budget and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(sample) < budget:
                sample.append(q[depth])
        depth += 1
    return sorted(sample)
