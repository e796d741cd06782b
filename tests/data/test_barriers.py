"""Barrier sizing: shuffle partitions grow with the corpus so a worker's memory does not."""

from __future__ import annotations

from medray.data.barriers import NEAR_ROW_BYTES, PARTITION_BYTES, shuffle_partitions


def test_partitions_at_least_one_per_cpu_for_small_inputs():
    assert shuffle_partitions(0, NEAR_ROW_BYTES, 2) == 2
    assert shuffle_partitions(1000, NEAR_ROW_BYTES, 8) == 8
    assert shuffle_partitions(0, NEAR_ROW_BYTES, 0) == 1


def test_partitions_bound_the_bytes_each_holds():
    for rows in (10**6, 9_312_000, 10**9):
        parts = shuffle_partitions(rows, NEAR_ROW_BYTES, 2)
        assert rows * NEAR_ROW_BYTES / parts <= PARTITION_BYTES
        assert rows * NEAR_ROW_BYTES / (parts - 1) > PARTITION_BYTES or parts == 2  # no more than needed
