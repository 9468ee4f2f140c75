import json

import pytest

from kernelbench import schema
from kernelbench.errors import InputError
from kernelbench.shards import Shard
from kernelbench.store import RunStore, read_manifest, read_parts

from .helpers import problems, rows

IDENTITY = {"space": {"space": "smoke"}, "kernels": ["a", "b"], "rule": {"rse": 0.02}, "device_label": "cpu:t:1t",
            "seed": 0}


def test_open_resume_and_finished_pairs(tmp_path):
    store = RunStore.open(tmp_path / "run", IDENTITY, {"device": {"name": "t"}})
    p = problems(2)
    store.write_part(rows({p[0]: {"a": 1.0, "b": None}}), shard="0/1")
    store.write_part([], shard="0/1")  # no rows, no file
    assert len(store.part_files()) == 1
    again = RunStore.open(tmp_path / "run", IDENTITY, {"device": {"name": "t"}})
    assert again.run_id == store.run_id and again.manifest["resumed"] == 1
    assert again.finished_pairs() == {(p[0].problem_id, "a"), (p[0].problem_id, "b")}
    frame = read_parts(tmp_path / "run")
    assert frame.height == 2 and sorted(frame["status"].to_list()) == ["error", "ok"]


def test_a_different_sweep_in_the_same_directory_is_refused(tmp_path):
    RunStore.open(tmp_path / "run", IDENTITY, {})
    with pytest.raises(InputError, match="different sweep.*kernels differs"):
        RunStore.open(tmp_path / "run", {**IDENTITY, "kernels": ["a"]}, {})


def test_other_schema_version_and_missing_manifest(tmp_path):
    RunStore.open(tmp_path / "run", IDENTITY, {})
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    manifest["schema_version"] = 0
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="schema version 0"):
        read_manifest(tmp_path / "run")
    with pytest.raises(InputError, match="not a kernelbench run directory"):
        read_manifest(tmp_path)
    # Valid JSON that is not an object, and a version written as text ("1" is not 1).
    (tmp_path / "run" / "manifest.json").write_text("[]")
    with pytest.raises(InputError, match="unreadable manifest .a JSON list"):
        read_manifest(tmp_path / "run")
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({**manifest, "schema_version": "1"}))
    with pytest.raises(InputError, match="schema version '1', this kernelbench uses 1"):
        read_manifest(tmp_path / "run")


def test_temp_files_of_a_killed_write_are_ignored_and_corrupt_parts_named(tmp_path):
    store = RunStore.open(tmp_path / "run", IDENTITY, {})
    (store.parts_dir / ".part-0of1-x.parquet.123.tmp").write_bytes(b"half a file")
    assert store.finished_pairs() == set()
    (store.parts_dir / "part-0of1-bad.parquet").write_bytes(b"garbage")
    with pytest.raises(InputError, match="part-0of1-bad.parquet"):
        store.finished_pairs()


def test_part_metadata_travels_with_the_rows(tmp_path):
    store = RunStore.open(tmp_path / "run", IDENTITY, {"device": {"name": "t", "versions": {"numpy": "1"}}},
                          shard=Shard(1, 4))
    path = store.write_part(rows({problems(1)[0]: {"a": 1.0}}), shard="1/4")
    assert "1of4" in path.name
    meta = schema.read_metadata(path)
    assert meta["run_id"] == store.run_id and meta["device_label"] == "cpu:t:1t"
    assert meta["device"] == {"name": "t", "versions": {"numpy": "1"}} and meta["versions"] == {"numpy": "1"}
    assert meta["shard"] == "1/4" and meta["shard_count"] == 4 and meta["host"]


def test_side_tables_merge_by_problem(tmp_path):
    import polars as pl

    store = RunStore.open(tmp_path / "run", IDENTITY, {})
    store.write_side_table("cudnn_heuristics", [{"problem_id": "a", "heur_a_plan": "x"}])
    path = store.write_side_table("cudnn_heuristics", [{"problem_id": "a", "heur_a_plan": "y"},
                                                       {"problem_id": "b", "heur_a_plan": "z"}])
    frame = pl.read_parquet(path).sort("problem_id")
    assert frame["heur_a_plan"].to_list() == ["y", "z"]
