"""LightGBM's threads follow the task's CPUs (issue 26): all of a Cloud Run task's own
vCPUs; local task processes sharing a machine split its cores, at least one each."""

from __future__ import annotations

import pytest

from trainer.models.challenger import available_cpus, task_threads


@pytest.mark.parametrize(
    ("env", "cpus", "threads"),
    [
        ({}, 2, 2),  # one local process: the machine's cores
        ({"CLOUD_RUN_TASK_COUNT": "2"}, 2, 1),  # two local tasks on 2 cores: 1 each
        ({"CLOUD_RUN_TASK_COUNT": "4"}, 2, 1),  # more tasks than cores: still 1
        ({"CLOUD_RUN_TASK_COUNT": "2"}, 8, 4),
        ({"CLOUD_RUN_TASK_COUNT": "junk"}, 4, 4),
        ({"CLOUD_RUN_JOB": "trainer", "CLOUD_RUN_TASK_COUNT": "16"}, 8, 8),  # own vCPUs
        ({"CLOUD_RUN_JOB": "trainer"}, 0, 1),
    ],
)
def test_threads_follow_the_tasks_cpus(env, cpus, threads):
    assert task_threads(env, cpus=cpus) == threads


def test_available_cpus_is_capped_by_a_cgroup_quota(tmp_path):
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # 1.5 CPUs -> 2 threads at most
    assert 1 <= available_cpus(str(quota)) <= 2
    quota.write_text("50000 100000\n")
    assert available_cpus(str(quota)) == 1
    quota.write_text("max 100000\n")
    assert available_cpus(str(quota)) == available_cpus(str(tmp_path / "absent"))
