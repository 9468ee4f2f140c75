"""The sweep, export and info commands end to end, including SIGKILL at random moments."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from cli import kernelbench
from kernelbench import schema
from kernelbench.errors import InputError
from kernelbench.store import read_parts
from tests.kernelbench.helpers import TINY_SPEC

ROOT = Path(__file__).resolve().parents[2]
SPEC = TINY_SPEC
KERNELS = "torch_default,onednn_nchw"
# Every kernel spends its whole (small) budget, so the sweep lasts a few seconds and kills land mid-run.
FAST = ["--kernels", KERNELS, "--threads", "1", "--budget-s", "0.15", "--rse", "1e-9", "--warmup", "0",
        "--min-samples", "2", "--flush-every-s", "0", "--no-progress", "--device", "cpu"]


def sweep_cmd(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "cli", "sweep", "--spec", str(spec), "-o", str(out), *FAST]


def pairs(run_dir: Path) -> list[tuple[str, str]]:
    frame = read_parts(run_dir)
    return sorted(zip(frame["problem_id"].to_list(), frame["kernel"].to_list()))


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC)
    return path


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_gives_exactly_the_uninterrupted_rows(tmp_path, spec):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(sweep_cmd(spec, tmp_path / "clean"), check=True, cwd=ROOT, env=env, capture_output=True)
    expected = pairs(tmp_path / "clean")
    assert len(expected) == 6 * 2

    rng = random.Random(7)
    kills = 0
    for _ in range(8):
        proc = subprocess.Popen(sweep_cmd(spec, tmp_path / "killed"), cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 4.0))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        # Whatever was written so far is readable and never duplicated.
        got = pairs(tmp_path / "killed")
        assert len(got) == len(set(got)) and set(got) <= set(expected)
    assert kills >= 1
    subprocess.run(sweep_cmd(spec, tmp_path / "killed"), check=True, cwd=ROOT, env=env, capture_output=True)
    assert pairs(tmp_path / "killed") == expected
    ok = read_parts(tmp_path / "killed").filter(pl.col("status") == "ok")
    assert ok.height == len(expected) and (ok["time_ms"] > 0).all()


def test_sweep_export_info_on_a_spec(tmp_path, spec):
    runner = CliRunner()
    result = runner.invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(tmp_path / "run"), *FAST])
    assert result.exit_code == 0, result.output
    assert "rows written" in result.output
    result = runner.invoke(kernelbench, ["export", str(tmp_path / "run"), "-o", str(tmp_path / "d.parquet")])
    assert result.exit_code == 0, result.output
    frame, meta = schema.read_dataset(tmp_path / "d.parquet")
    assert frame.height == 12 and set(frame["kernel"]) == set(KERNELS.split(","))
    assert (frame["threads"] == 1).all() and (frame["network"] == "tiny").all()
    ((device,),) = meta["devices"].values()
    assert device["threads"] == 1 and "memory" in device and "versions" in device
    (run,) = meta["runs"]
    assert run["versions"] == device["versions"] and run["versions"]["polars"] == pl.__version__
    assert run["shard"] == "0/1" and run["finished"] and run["rows"] == 12 and not meta["partial"]
    result = runner.invoke(kernelbench, ["info", str(tmp_path / "d.parquet"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    for key in ("rows", "problems", "kernels", "devices", "directions", "wins", "static_geomean", "static_sum_ratio"):
        assert key in info
    assert info["rows"] == 12 and info["problems"] == 6 and info["kernels"] == 2 and info["directions"] == {"fwd": 6}
    assert sum(info["wins"].values()) == 6 and info["static_geomean"] >= 1.0
    text = runner.invoke(kernelbench, ["info", str(tmp_path / "d.parquet")]).output
    assert "static order (by wins)" in text and "torch_default (no selector)" in text and "decided" in text
    # torch_default is the baseline beside static, over every problem (it applies to all of them).
    assert info["baseline"]["kernel"] == "torch_default" and info["baseline"]["problems"] == 6
    assert info["baseline"]["geomean"] >= 1.0 and 0 <= info["baseline"]["near_best"] <= 6
    # Every timed row says how well its median is known.
    assert frame["time_rse"].null_count() == 0 and (frame["time_rse"] >= 0).all()
    # the same command again resumes and measures nothing new
    again = runner.invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(tmp_path / "run"), *FAST])
    assert again.exit_code == 0 and "rows written          0" in again.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["sweep", "--space", "nope", "-o", "{tmp}/r"], "unknown space"),
        (["sweep", "--space", "smoke", "--kernels", "warp_drive", "-o", "{tmp}/r", "--device", "cpu"], "warp_drive"),
        (["sweep", "--spec", "{tmp}/missing.toml", "-o", "{tmp}/r"], "missing.toml"),
        (["sweep", "--spec", "{tmp}/bad.toml", "-o", "{tmp}/r"], "bad.toml"),
        (["sweep", "--space", "smoke", "--spec", "{tmp}/bad.toml", "-o", "{tmp}/r"], "exactly one"),
        (["sweep", "--space", "smoke", "--shard", "3/2", "-o", "{tmp}/r", "--device", "cpu"], "--shard"),
        (["sweep", "--space", "smoke", "-o", "{tmp}/file/r", "--device", "cpu", "--kernels", "torch_default"],
         "cannot create"),
        (["export", "{tmp}", "-o", "{tmp}/d.parquet"], "not a kernelbench run directory"),
        (["info", "{tmp}/bad.toml"], "not a readable Parquet file"),
        (["info", "{tmp}/absent.parquet"], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "bad.toml").write_text("this is = = not toml")
    (tmp_path / "file").write_text("a file, not a directory")
    result = CliRunner().invoke(kernelbench, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert message in lines[-1] and "Traceback" not in result.output


def test_export_refuses_to_overwrite_with_garbage_and_keeps_old_file(tmp_path, spec):
    runner = CliRunner()
    runner.invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(tmp_path / "run"), *FAST])
    out = tmp_path / "d.parquet"
    assert runner.invoke(kernelbench, ["export", str(tmp_path / "run"), "-o", str(out)]).exit_code == 0
    before = out.read_bytes()
    (tmp_path / "run" / "parts" / "part-0of1-zzz.parquet").write_bytes(b"corrupt")
    result = runner.invoke(kernelbench, ["export", str(tmp_path / "run"), "-o", str(out)])
    assert result.exit_code == 2 and "part-0of1-zzz.parquet" in result.output
    assert out.read_bytes() == before


def test_info_refuses_bad_values_in_one_line_and_says_when_there_is_no_choice(tmp_path):
    import pyarrow.parquet as pq

    from .helpers import frame, problems, rows

    p = problems(3)
    good = frame(rows({p[0]: {"a": 1.0, "b": 2.0}, p[1]: {"a": 2.0}, p[2]: {"b": 1.0}}))
    bad = good.with_columns(pl.when(pl.col("kernel") == "b").then(float("nan")).otherwise(pl.col("time_ms"))
                            .alias("time_ms"))
    pq.write_table(bad.to_arrow().replace_schema_metadata(schema.encode_metadata({})), tmp_path / "nan.parquet")
    result = CliRunner().invoke(kernelbench, ["info", str(tmp_path / "nan.parquet")])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "2 row(s) with status 'ok' have no plausible time_ms" in result.stderr
    schema.write_dataset(good.filter(pl.col("problem_id") != p[0].problem_id), tmp_path / "one.parquet", {})
    result = CliRunner().invoke(kernelbench, ["info", str(tmp_path / "one.parquet")])
    assert result.exit_code == 0 and "every one of the 2 problems, so nothing can be learned or scored" in result.output


HUGE_SPEC = """
name = "huge"
[grid]
batch = [1, 2000000000]
in_channels = [4]
out_channels = [8]
in_hw = [10]
filter = [3]
pad = [1]
"""


def test_a_problem_too_big_for_memory_is_unavailable_and_the_rest_is_measured(tmp_path):
    """batch = 2e9 fits the dataset's int32 but not any machine: refused by the estimate, nothing allocated."""
    spec = tmp_path / "huge.toml"
    spec.write_text(HUGE_SPEC)
    result = CliRunner().invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(tmp_path / "run"), *FAST,
                                              "--max-memory-gb", "4"])
    assert result.exit_code == 0, result.output
    frame = read_parts(tmp_path / "run")
    small, huge = frame.filter(pl.col("batch") == 1), frame.filter(pl.col("batch") == 2_000_000_000)
    assert set(small["status"]) == {"ok"} and set(huge["status"]) == {"unavailable"} and huge.height == 2
    assert all(e.startswith("estimated peak memory ") and e.endswith("> max_memory_gb 4 GB") for e in huge["error"])
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["isolation"] == "process" and manifest["max_memory_gb"] == 4.0


def test_an_integer_beyond_int32_in_a_spec_is_one_line_and_exit_2(tmp_path):
    spec = tmp_path / "absurd.toml"
    spec.write_text(HUGE_SPEC.replace("2000000000", "99999999999"))
    result = CliRunner().invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(tmp_path / "run"), *FAST])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {spec}: grid.batch: 99999999999 is above 2147483647, the largest value the dataset's int32 "
        "columns hold")
    assert not (tmp_path / "run").exists()


def test_isolation_none_gives_the_same_rows(tmp_path, spec):
    result = CliRunner().invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(tmp_path / "run"), *FAST,
                                              "--isolation", "none"])
    assert result.exit_code == 0, result.output
    assert len(pairs(tmp_path / "run")) == 12 and set(read_parts(tmp_path / "run")["status"]) == {"ok"}
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["isolation"] == "none"


def test_a_rerun_with_a_larger_memory_limit_measures_what_the_smaller_one_refused(tmp_path):
    """The refusal is stored as an ``unavailable`` row; the same command re-run adds nothing, a larger limit
    measures the kernels, and the export keeps their ``ok`` rows."""
    spec = tmp_path / "small.toml"
    spec.write_text(HUGE_SPEC.replace("2000000000", "2"))
    run = tmp_path / "run"
    command = ["sweep", "--spec", str(spec), "-o", str(run), *FAST]
    result = CliRunner().invoke(kernelbench, [*command, "--max-memory-gb", "1e-9"])
    assert result.exit_code == 0, result.output
    assert set(read_parts(run)["status"]) == {"unavailable"}
    refused = read_parts(run).height
    assert CliRunner().invoke(kernelbench, [*command, "--max-memory-gb", "1e-9"]).exit_code == 0
    assert read_parts(run).height == refused
    result = CliRunner().invoke(kernelbench, [*command, "--max-memory-gb", "4"])
    assert result.exit_code == 0, result.output
    frame = read_parts(run)
    assert frame.height == 2 * refused and frame.filter(pl.col("status") == "ok").height == refused
    result = CliRunner().invoke(kernelbench, ["export", str(run), "-o", str(tmp_path / "d.parquet")])
    assert result.exit_code == 0, result.output
    assert set(pl.read_parquet(tmp_path / "d.parquet")["status"]) == {"ok"}
    assert pl.read_parquet(tmp_path / "d.parquet").height == refused


def test_a_sweep_says_when_its_device_has_no_descriptor(tmp_path, spec, monkeypatch):
    """A device kernelbench cannot describe (a CUDA GPU neither the table nor its attributes describe) is named
    once on stderr; the run goes on and records why."""
    from kernelbench.backends import CpuBackend

    real = CpuBackend.device_metadata
    monkeypatch.setattr(CpuBackend, "device_metadata",
                        lambda self: {**real(self), "descriptor": None, "descriptor_error": "no SM count"})
    result = CliRunner().invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(tmp_path / "run"), *FAST])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "has no descriptor" in line]
    assert len(notes) == 1 and "no SM count" in notes[0] and "--device-spec" in notes[0]


def test_an_option_refused_after_the_lock_leaves_no_run_directory_and_no_stale_lock(tmp_path, spec):
    """--kernels is checked after the shard lock is taken (the backend must be known first): a refusal there
    removes the directory the command created, and on an existing run releases the lock it took."""
    bad = [a if a != KERNELS else "nope" for a in FAST]
    new = CliRunner().invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(tmp_path / "new"), *bad])
    assert new.exit_code == 2 and "unknown cpu kernel" in new.output
    assert not (tmp_path / "new").exists()
    run = tmp_path / "run"
    assert CliRunner().invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(run), *FAST]).exit_code == 0
    again = CliRunner().invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(run), *bad])
    assert again.exit_code == 2 and (run / "manifest.json").is_file() and any((run / "parts").iterdir())
    resumed = CliRunner().invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(run), *FAST])
    assert resumed.exit_code == 0 and "took over" not in resumed.output


@pytest.mark.parametrize("args", [("--rse", "nan"), ("--budget-s", "inf"), ("--timeout-s", "nan"),
                                  ("--max-memory-gb", "nan"), ("--flush-every-s", "nan"), ("--seed", "-1")])
def test_sweep_refuses_non_finite_floats_and_negative_seeds(tmp_path, spec, args):
    result = CliRunner().invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(tmp_path / "r"), *FAST, *args])
    assert result.exit_code == 2 and args[0] in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_export_refuses_to_write_into_the_run_it_reads(tmp_path, spec):
    run = tmp_path / "run"
    assert CliRunner().invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(run), *FAST]).exit_code == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.suffix != ".lock"}
    part = next((run / "parts").iterdir())
    for target in (part, run / "manifest.json", run / "parts" / "new.parquet", run / "shards" / "x.parquet"):
        result = CliRunner().invoke(kernelbench, ["export", str(run), "-o", str(target)])
        assert result.exit_code == 2 and "own files" in result.output, result.output
    assert {p: p.read_bytes() for p in before} == before and not (run / "parts" / "new.parquet").exists()
    # The run directory's root is a fine place for its dataset.
    assert CliRunner().invoke(kernelbench, ["export", str(run), "-o", str(run / "run.parquet")]).exit_code == 0


def test_a_wide_export_is_named_as_such_where_a_long_dataset_is_read(tmp_path, spec):
    from kernelbench.schema import conform

    run = tmp_path / "run"
    assert CliRunner().invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(run), *FAST]).exit_code == 0
    wide = tmp_path / "wide.parquet"
    assert CliRunner().invoke(kernelbench, ["export", str(run), "-o", str(wide), "--format", "wide"]).exit_code == 0
    result = CliRunner().invoke(kernelbench, ["info", str(wide)])
    assert result.exit_code == 2 and f"{wide}: a wide export" in result.output, result.output
    with pytest.raises(InputError, match="extra.parquet has unknown column"):
        conform(read_parts(run).with_columns(pl.lit(1).alias("extra")), where="extra.parquet")


def test_threads_beyond_the_bound_are_refused(tmp_path, spec):
    result = CliRunner().invoke(kernelbench, ["sweep", "--spec", str(spec), "-o", str(tmp_path / "r"),
                                              *FAST, "--threads", "100000"])
    assert result.exit_code == 2 and "--threads" in result.output and "1024" in result.output
    assert not (tmp_path / "r").exists()
