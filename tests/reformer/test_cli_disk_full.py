"""``reformer fit`` onto a full disk or a read-only filesystem (a real small tmpfs): one line, exit 2."""

import pytest
from click.testing import CliRunner

from cli import reformer
from tests.kernelbench.helpers import fill, mount_tmpfs, remount_read_only
from tests.reformer.synthetic import write_synthetic

FIT = ["--epochs", "1", "--min-steps", "0", "--dim", "16", "--blocks", "1", "--batch-size", "64", "--threads", "1",
       "--quiet"]


@pytest.mark.slow
@pytest.mark.parametrize("fault, reason", [("full", "No space left on device"), ("read-only", "Read-only file system")])
def test_fit_onto_a_full_or_read_only_filesystem_is_one_line(tmp_path, fault, reason):
    write_synthetic(tmp_path / "d.parquet", 120, seed=3)
    fs = tmp_path / "fs"
    unmount = mount_tmpfs(fs, size_kib=64)
    try:
        if fault == "full":
            (fs / "model").mkdir()  # the directory exists; its files do not fit
            fill(fs)
        else:
            remount_read_only(fs)
        result = CliRunner().invoke(reformer, ["fit", str(tmp_path / "d.parquet"), "-o", str(fs / "model"), *FIT])
    finally:
        unmount()
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    last = [line for line in result.output.splitlines() if line.strip()][-1]
    assert last.startswith("Error: ") and reason in last, last
