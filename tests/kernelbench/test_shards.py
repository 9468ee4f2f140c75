import pytest

from kernelbench.errors import InputError
from kernelbench.shards import Shard, resolve_shard


def slurm(task, count, low=0, high=None):
    high = count - 1 if high is None else high
    return {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": str(count),
            "SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_MAX": str(high)}


def test_explicit_shards():
    assert resolve_shard("3/8", recorded_count=None, env={}) == Shard(3, 8)
    assert resolve_shard("3/8", recorded_count=8, env={}) == Shard(3, 8)
    with pytest.raises(InputError, match="split into 4 shards; use --shard i/4"):
        resolve_shard("3/8", recorded_count=4, env={})


def test_auto_from_a_slurm_array_and_from_torchrun():
    assert resolve_shard("auto", recorded_count=None, env=slurm(2, 4)) == Shard(2, 4)
    assert resolve_shard("auto", recorded_count=None, env={"RANK": "1", "WORLD_SIZE": "3"}) == Shard(1, 3)
    # SLURM wins when both are set (srun inside an array task may set RANK-like variables too).
    assert resolve_shard("auto", recorded_count=None, env={**slurm(0, 2), "RANK": "5", "WORLD_SIZE": "8"}) == Shard(0, 2)


def test_a_task_resubmitted_alone_keeps_the_run_directorys_shard_count():
    # sbatch --array=2 gives a one-task array: count 1, min = max = 2.
    assert resolve_shard("auto", recorded_count=4, env=slurm(2, 1, 2, 2)) == Shard(2, 4)


@pytest.mark.parametrize("env, recorded, message", [
    ({}, None, "neither SLURM_ARRAY_TASK_ID"),
    (slurm(1, 4, 1, 4), None, "--array=0-3"),
    (slurm(5, 8), 4, "split into 4 shards"),
    (slurm(4, 1, 4, 4), 4, "outside 0..3"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, None, "not an integer"),
])
def test_auto_refusals_are_one_line(env, recorded, message):
    with pytest.raises(InputError, match=message) as info:
        resolve_shard("auto", recorded_count=recorded, env=env)
    assert "\n" not in str(info.value)
