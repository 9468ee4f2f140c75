import os

from kernelbench.device import DEFAULT_MEMORY_SHARE, default_max_memory_gb, physical_memory_bytes


def test_physical_memory_is_sysconf_or_a_smaller_cgroup_limit(tmp_path):
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    absent = str(tmp_path / "absent")
    assert physical_memory_bytes(cgroup_limit_path=absent) == total
    limit = tmp_path / "memory.max"
    limit.write_text("max\n")  # cgroup v2: no limit
    assert physical_memory_bytes(cgroup_limit_path=str(limit)) == total
    limit.write_text(f"{1 << 30}\n")
    assert physical_memory_bytes(cgroup_limit_path=str(limit)) == min(total, 1 << 30)
    limit.write_text(f"{total * 4}\n")  # a limit above the machine's memory does not raise it
    assert physical_memory_bytes(cgroup_limit_path=str(limit)) == total


def test_default_memory_limit_is_a_share_of_physical_memory():
    assert DEFAULT_MEMORY_SHARE == 0.5
    assert abs(default_max_memory_gb() - DEFAULT_MEMORY_SHARE * physical_memory_bytes() / 1e9) < 1e-9
