import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kernelbench.errors import InputError
from reformer.selector import Selector
from reformer.store import CONFIG_FILE, FORMAT_VERSION, load_model


def test_round_trip_gives_identical_predictions(model_dir, fit_result, matrix):
    loaded = Selector.load(model_dir)
    in_memory = fit_result.selector
    assert loaded.kernels == in_memory.kernels
    assert loaded.trained.encoder == in_memory.trained.encoder
    columns = matrix.columns()
    np.testing.assert_array_equal(loaded.probabilities(columns, matrix.applicable), in_memory.probabilities(columns, matrix.applicable))


def test_config_records_architecture_tokens_vocabulary_and_dataset(model_dir, matrix):
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    assert config["format_version"] == FORMAT_VERSION == 2
    assert config["kernels"] == list(matrix.kernels)
    assert config["model"]["dim"] == 16 and config["model"]["blocks"] == 2
    assert "batch" in config["features"]["numeric"] and len(config["features"]["mean"]) == len(config["features"]["numeric"])
    assert config["dataset"]["metadata"]["sha256"] == matrix.metadata["sha256"]
    assert sorted(config["static_order"]) == sorted(matrix.kernels)
    assert config["split"]["sizes"]["test"] > 0


def test_other_format_version_is_an_input_error(model_dir, tmp_path):
    copy = tmp_path / "m"
    copy.mkdir()
    for f in model_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    config = json.loads((copy / CONFIG_FILE).read_text())
    config["format_version"] = 99
    (copy / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(InputError, match="format version 99"):
        load_model(copy)
    with pytest.raises(InputError, match="not a model directory"):
        load_model(tmp_path / "nothing")


# ---------------------------------------------------------------- a whole directory or nothing

ROOT = Path(__file__).resolve().parents[2]


def renamed(trained):
    """The same network with other kernel names: what a model trained on other data looks like on disk."""
    rule = trained.info["candidates"]
    levels = [{key: [k.upper() for k in names] for key, names in level.items()} for level in rule["kernels_by_level"]]
    return dataclasses.replace(trained, kernels=tuple(k.upper() for k in trained.kernels),
                               static_order=tuple(k.upper() for k in trained.static_order),
                               info={**trained.info, "candidates": {**rule, "kernels_by_level": levels}})


def leftovers(directory):
    return sorted(p.name for p in directory.parent.iterdir() if p.name.startswith(f".{directory.name}."))


def test_save_writes_a_manifest_and_replaces_a_model_dir_as_a_whole(model_dir, tmp_path):
    from reformer.store import MANIFEST_FILE, save_model

    target = tmp_path / "m"
    shutil.copytree(model_dir, target)
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    assert set(manifest["files"]) == {"weights.safetensors", "config.json", "metrics.json", "curve.csv", "curve.png"}
    (target / "notes.txt").write_text("stale")
    new = renamed(load_model(model_dir))
    paths = save_model(target, new)
    assert sorted(p.name for p in paths) == ["config.json", MANIFEST_FILE, "weights.safetensors"]
    # Replaced as a unit: the old metrics, curves and stray files are gone, no staging dir is left.
    assert sorted(p.name for p in target.iterdir()) == ["config.json", MANIFEST_FILE, "weights.safetensors"]
    assert leftovers(target) == []
    assert Selector.load(target).kernels == new.kernels


def test_a_directory_mixing_two_saves_is_refused_in_one_line(model_dir, tmp_path):
    """What an older reformer left when killed between its two renames: new config beside old weights."""
    from click.testing import CliRunner

    from cli import reformer
    from reformer.store import save_model

    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(model_dir, old)
    save_model(new, renamed(load_model(model_dir)))
    shutil.copy(new / CONFIG_FILE, old / CONFIG_FILE)
    with pytest.raises(InputError, match="config.json does not match manifest.json"):
        Selector.load(old)
    result = CliRunner().invoke(reformer, ["select", str(old), "--problem", "batch=1"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    (old / "manifest.json").unlink()
    with pytest.raises(InputError, match="no valid manifest.json"):
        load_model(old)


KILL_SCRIPT = textwrap.dedent("""
    import dataclasses, os, signal, sys
    import reformer.store as store
    source, target, point = sys.argv[1:4]
    old = store.load_model(source)
    rule = old.info["candidates"]
    levels = [{key: [k.upper() for k in names] for key, names in level.items()} for level in rule["kernels_by_level"]]
    new = dataclasses.replace(old, kernels=tuple(k.upper() for k in old.kernels),
                              static_order=tuple(k.upper() for k in old.static_order),
                              info={**old.info, "candidates": {**rule, "kernels_by_level": levels}})

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "staging":  # the weights are written, nothing else
        real_save_file = store.save_file
        def save_file(*args, **kwargs):
            real_save_file(*args, **kwargs)
            die()
        store.save_file = save_file
    else:  # after the first rename (old model set aside) or the second (new model in place)
        real_rename, calls = os.rename, []
        def rename(src, dst):
            real_rename(src, dst)
            calls.append(dst)
            if len(calls) == {"aside": 1, "swapped": 2}[point]:
                die()
        os.rename = rename
    store.save_model(target, new, extra={"metrics.json": lambda path: path.write_text("{}")})
    print("not killed")
""")


def kill_during_save(source, target, point):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(source), str(target), point], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr


@pytest.mark.parametrize("point", ["staging", "aside", "swapped"])
def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_model_never_a_mix(model_dir, tmp_path, point):
    from reformer.store import save_model

    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    before = Selector.load(target).kernels
    kill_during_save(model_dir, target, point)
    if point == "staging":
        assert Selector.load(target).kernels == before  # untouched: the complete old model
        assert [name.split("-")[0] for name in leftovers(target)] == [".model.tmp"]
    elif point == "aside":
        with pytest.raises(InputError, match=r"interrupted while replacing it; the previous model is in .*\.model\.old-"):
            Selector.load(target)
        aside = next(p for p in tmp_path.iterdir() if p.name.startswith(".model.old-"))
        os.rename(aside, target)  # what the message says to do
        assert Selector.load(target).kernels == before
    else:
        assert Selector.load(target).kernels == tuple(k.upper() for k in before)  # the complete new model
        assert [name.split("-")[0] for name in leftovers(target)] == [".model.old"]
    # The next save cleans up after the dead process.
    save_model(target, load_model(model_dir))
    assert leftovers(target) == [] and Selector.load(target).kernels == before


def test_a_first_save_killed_leaves_no_model_directory(model_dir, tmp_path):
    kill_during_save(model_dir, tmp_path / "fresh", "staging")
    with pytest.raises(InputError, match="is not a model directory"):
        load_model(tmp_path / "fresh")


def test_check_model_dir_refuses_what_cannot_be_written_and_creates_nothing(model_dir, tmp_path):
    from reformer.store import check_model_dir

    check_model_dir(tmp_path / "new" / "deeper")  # parents are created on save, not now
    check_model_dir(model_dir)  # a model directory is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        check_model_dir(tmp_path / "file" / "model")
    with pytest.raises(InputError, match="exists and is not a directory"):
        check_model_dir(tmp_path / "file")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="non-empty directory without a model"):
        check_model_dir(tmp_path / "data")
    # A kernelbench run directory has a manifest.json too: it is not a model, and must never be replaced.
    run = tmp_path / "run"
    (run / "parts").mkdir(parents=True)
    (run / "parts" / "p.parquet").write_bytes(b"measurements")
    (run / "manifest.json").write_text(json.dumps({"schema_version": 1, "run_id": "r", "device_label": "cpu:x"}))
    with pytest.raises(InputError, match="non-empty directory without a model"):
        check_model_dir(run)
    assert (run / "parts" / "p.parquet").read_bytes() == b"measurements"
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "config.json").unlink()
    check_model_dir(broken)  # a model that lost its config is still a model: its manifest says so


def test_check_model_dir_refuses_a_read_only_directory(tmp_path):
    from reformer.store import check_model_dir

    try:
        Path("/sys/.reformer-probe").touch()
    except OSError:
        pass  # read-only, even for root: the fault is real
    else:
        pytest.skip("/sys is writable here")
    with pytest.raises(InputError, match="/sys is not writable"):
        check_model_dir("/sys/reformer-model")
    if os.geteuid() != 0:  # root writes into a mode-0555 directory anyway
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            with pytest.raises(InputError, match="is not writable"):
                check_model_dir(locked / "model")
        finally:
            locked.chmod(0o755)
