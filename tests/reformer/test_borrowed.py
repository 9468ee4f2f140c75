"""Measured orders borrowed for a device the model never saw, from a training device of the same architecture."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from cli import reformer
from kernelbench import schema
from kernelbench.problem import DERIVED_FIELDS, ConvProblem
from reformer.borrowed import MEASURED_FILE, MeasuredOrders, borrow_scores, fit_measured_orders, sources
from reformer.data import load_matrix
from reformer.evaluate import evaluate
from reformer.report import save_fit
from reformer.selector import Selector
from reformer.store import load_model
from tests.reformer.conftest import QUICK
from tests.reformer.synthetic import multi_device_frame, synthetic_frame

MI100 = "miopen:gfx908:120"
MI250X = "miopen:gfx90a:110"
FIJI = "miopen:gfx803:64"
#: Not trained on; the same architecture as FIJI.
POLARIS = "miopen:gfx803:36"
#: Not trained on; an architecture no training device has.
VEGA20 = "miopen:gfx906:64"
NAN = float("nan")


def _orders() -> MeasuredOrders:
    times = np.array([[3.0, 1.0, NAN, 2.0],
                      [NAN, NAN, 5.0, NAN],
                      [1.0, 2.0, 3.0, 4.0]])
    return MeasuredOrders.from_times(["p1", "p2", "p1"], [FIJI, FIJI, MI100], times)


def test_orders_are_fastest_first_and_round_trip(tmp_path):
    orders = _orders()
    assert orders.devices == (FIJI, MI100)
    assert orders.order(FIJI, "p1").tolist() == [1, 3, 0]
    assert orders.order(FIJI, "p2").tolist() == [2]
    assert orders.order(MI100, "p1").tolist() == [0, 1, 2, 3]
    assert orders.order(MI100, "p2") is None and orders.order(POLARIS, "p1") is None
    orders.write(tmp_path / MEASURED_FILE)
    back = MeasuredOrders.read(tmp_path / MEASURED_FILE)
    assert back.devices == orders.devices
    for device in orders.devices:
        for pid in orders.problem_ids[device].astype(str):
            assert back.order(device, pid).tolist() == orders.order(device, pid).tolist()


def test_only_an_unseen_device_of_a_training_architecture_borrows():
    orders = _orders()
    assert sources(orders, POLARIS) == [FIJI]
    assert sources(orders, FIJI) == []  # a training device keeps the model's ranking
    assert sources(orders, VEGA20) == []  # no training device is a gfx906
    assert sources(orders, "cpu:some-host") == []  # undescribed: nothing to match


def test_borrowed_kernels_go_first_in_measured_order_and_the_rest_keep_theirs():
    scores = np.array([[0.5, 0.1, 0.9, 0.3, 0.7],
                       [0.5, 0.1, 0.9, 0.3, 0.7],
                       [0.5, 0.1, 0.9, 0.3, 0.7]], dtype=np.float32)
    out, borrowed = borrow_scores(scores, ["p1", "p9", "p1"], [POLARIS, POLARIS, FIJI], _orders())
    assert borrowed.source == (FIJI, "", "")
    assert borrowed.counts() == {FIJI: 1}
    assert np.argsort(-out[0], kind="stable").tolist() == [1, 3, 0, 2, 4]  # FIJI's 1, 3, 0; then 2 (0.9), 4 (0.7)
    np.testing.assert_array_equal(out[1:], scores[1:])
    np.testing.assert_array_equal(scores[0], np.float32([0.5, 0.1, 0.9, 0.3, 0.7]))  # the input is not modified
    # A mask applied after keeps the measured order among what it allows.
    masked = np.where([True, False, True, True, True], out[0], -np.inf)
    assert int(np.argmax(masked)) == 3


def test_a_fine_tuned_model_keeps_its_starting_orders_of_other_devices():
    init = _orders()
    fresh = fit_measured_orders(["p1", "p3"], [MI100, MI250X], np.array([[2.0, 1.0, NAN, NAN], [1.0, NAN, NAN, NAN]]),
                                training_devices=[MI100])
    assert fresh.devices == (MI100,)  # only the training devices' rows
    merged = fit_measured_orders(["p1"], [MI100], np.array([[2.0, 1.0, NAN, NAN]]), training_devices=[MI100],
                                 init=init)
    assert merged.devices == (FIJI, MI100)
    assert merged.order(MI100, "p1").tolist() == [1, 0]  # replaced by the new rows
    assert merged.order(FIJI, "p1").tolist() == [1, 3, 0]  # kept
    assert fit_measured_orders(["p1"], ["synthetic"], np.array([[1.0, 2.0, NAN, NAN]]),
                               training_devices=["synthetic"]) is None


def test_a_model_of_undescribed_devices_keeps_no_orders(fit_result, model_dir):
    assert fit_result.trained.measured is None
    assert not (model_dir / MEASURED_FILE).exists()


@pytest.fixture(scope="module")
def sibling(tmp_path_factory):
    """A model of MI100, MI250X and FIJI; POLARIS measured FIJI's problems with FIJI's times, plus new ones."""
    from reformer.train import fit

    root = tmp_path_factory.mktemp("borrowed")
    frame = multi_device_frame(120, seed=3)
    schema.write_dataset(frame, root / "three.parquet", {"source": "test"})
    fiji = frame.filter(pl.col("device") == FIJI)
    new = synthetic_frame(40, seed=11).with_columns(pl.lit(POLARIS).alias("device"))
    schema.write_dataset(pl.concat([fiji.with_columns(pl.lit(POLARIS).alias("device")), new]),
                         root / "polaris.parquet", {"source": "test"})
    schema.write_dataset(fiji.with_columns(pl.lit(VEGA20).alias("device")), root / "vega20.parquet", {"source": "test"})
    result = fit(load_matrix(root / "three.parquet"), QUICK)
    save_fit(root / "model", result)
    return root, fiji["problem_id"].unique().to_list()


def test_an_unseen_sibling_takes_the_training_siblings_winners(sibling):
    root, shared = sibling
    trained = load_model(root / "model")
    assert trained.measured is not None and set(trained.measured.devices) == {MI100, MI250X, FIJI}
    assert MEASURED_FILE in json.loads((root / "model" / "manifest.json").read_text())["files"]
    polaris = load_matrix(root / "polaris.parquet")
    with_orders = evaluate(Selector(trained), polaris)
    alone = evaluate(Selector(dataclasses.replace(trained, measured=None)), polaris)
    ids = polaris.problems["problem_id"].to_numpy()[with_orders.scored]
    assert [s for s, pid in zip(with_orders.borrowed.source, ids) if pid in set(shared)] == [FIJI] * len(shared)
    assert not any(s for s, pid in zip(with_orders.borrowed.source, ids) if pid not in set(shared))
    # Same times as FIJI on the shared problems: every one of them is picked right; the new ones as alone.
    right = np.array(with_orders.picks) == np.array(
        [polaris.kernels[j] for j in np.nanargmin(polaris.time_ms[with_orders.scored], axis=1)])
    assert right[np.isin(ids, shared)].all()
    new = ~np.isin(ids, shared)
    assert (np.array(with_orders.picks)[new] == np.array(alone.picks)[new]).all()
    assert with_orders.model.top1 > alone.model.top1
    # A training device, and an unseen device of another architecture, keep the model's ranking.
    assert not any(evaluate(Selector(trained), load_matrix(root / "three.parquet")).borrowed.source)
    vega20 = evaluate(Selector(trained), load_matrix(root / "vega20.parquet"))
    assert not any(vega20.borrowed.source)


def test_select_evaluate_and_tune_paths_rank_the_borrowed_order_first(sibling):
    root, shared = sibling
    model = str(root / "model")
    selector = Selector.load(model)
    polaris = load_matrix(root / "polaris.parquet")
    i = int(np.flatnonzero(polaris.problems["problem_id"].to_numpy() == shared[0])[0])
    row = polaris.problem_row(i)
    times = polaris.time_ms[i]
    measured_first = [polaris.kernels[j] for j in np.argsort(np.where(np.isnan(times), np.inf, times))
                      if not np.isnan(times[j])]
    ranked = [k for k, _ in selector.select(row, top=len(selector.kernels), device=POLARIS)]
    assert ranked[:len(measured_first)] == measured_first
    assert [k for k, _ in selector.select(row, device=POLARIS)] == measured_first[:1]
    many = selector.select_many([row, row], top=2, device=POLARIS)
    assert [[k for k, _ in entries] for entries in many] == [measured_first[:2]] * 2
    # The probabilities stay the model's own.
    alone = Selector(dataclasses.replace(selector.trained, measured=None))
    assert dict(selector.select(row, top=99, device=POLARIS)) == pytest.approx(
        dict(alone.select(row, top=99, device=POLARIS)))

    problem = ",".join(f"{k}={v}" for k, v in row.items() if k != "problem_id" and k not in DERIVED_FIELDS)
    out = CliRunner().invoke(reformer, ["select", model, "--problem", problem, "--device", POLARIS, "--json"])
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert body["borrowed_from"] == FIJI
    assert [r["kernel"] for r in body["ranked"]][:len(measured_first)] == measured_first
    assert f"{FIJI} (same architecture) measured come first" in out.stderr
    trained_on = CliRunner().invoke(reformer, ["select", model, "--problem", problem, "--device", FIJI, "--json"])
    assert json.loads(trained_on.stdout)["borrowed_from"] is None

    text = CliRunner().invoke(reformer, ["evaluate", model, str(root / "polaris.parquet")])
    assert text.exit_code == 0, text.output
    n_shared = len(shared)
    assert (f"{POLARIS}: {n_shared} of {polaris.n_problems} problems ranked by the measured order of a training "
            f"device of the same architecture ({n_shared} from {FIJI})") in text.stdout
    as_json = CliRunner().invoke(reformer, ["evaluate", model, str(root / "polaris.parquet"), "--json"])
    assert json.loads(as_json.stdout)["borrowed_share"] == pytest.approx(n_shared / polaris.n_problems)


def test_the_benchmark_scores_a_held_out_sibling_three_ways(tmp_path):
    import importlib.util

    from reformer.train import fit
    from reformer.transfer import TransferOptions, load_transfer_data, target_splits

    frame = multi_device_frame(100, seed=4)
    polaris = frame.filter(pl.col("device") == FIJI).with_columns(pl.lit(POLARIS).alias("device"))
    schema.write_dataset(pl.concat([frame, polaris]), tmp_path / "four.parquet", {"source": "test"})
    matrix = load_transfer_data(tmp_path / "four.parquet", None)
    save_fit(tmp_path / "zero", fit(matrix, QUICK, split=target_splits(matrix, POLARIS, TransferOptions()).zero_shot))
    spec = importlib.util.spec_from_file_location("bench_borrowed", "benchmarks/bench_borrowed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.score(matrix, str(tmp_path / "zero"))
    assert row["target"] == POLARIS and row["kept_orders"]
    assert row["model"]["borrowed_share"] == 0.0
    same = row["same architecture"]
    assert same["borrowed_share"] == 1.0  # every POLARIS problem is a FIJI problem
    assert same["top1"] == 1.0
    assert same["oracle_ratio"] == pytest.approx(1.0) and same["sum_ratio"] == pytest.approx(1.0)
    assert row["any architecture"]["borrowed_share"] == 1.0


def test_device_spec_places_a_new_sibling_for_a_one_device_model(tmp_path):
    from kernelbench.devices import descriptor
    from reformer.train import fit

    fiji = multi_device_frame(80, seed=5).filter(pl.col("device") == FIJI)
    schema.write_dataset(fiji, tmp_path / "fiji.parquet", {"source": "test"})
    mine = "miopen:gfx803:99"  # in no table
    schema.write_dataset(fiji.with_columns(pl.lit(mine).alias("device")), tmp_path / "mine.parquet", {"source": "test"})
    save_fit(tmp_path / "model", fit(load_matrix(tmp_path / "fiji.parquet"), QUICK))
    assert not Selector.load(tmp_path / "model").reads_device
    spec = tmp_path / "mine.toml"
    fields = {k: v for k, v in descriptor(POLARIS).as_dict().items()
              if v is not None and k not in ("id", "device_names")}
    spec.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items()) + "\n")
    refused = CliRunner().invoke(reformer, ["evaluate", str(tmp_path / "model"), str(tmp_path / "mine.parquet")])
    assert refused.exit_code == 2 and f"no descriptor for device {mine}" in refused.stderr
    out = CliRunner().invoke(reformer, ["evaluate", str(tmp_path / "model"), str(tmp_path / "mine.parquet"), "--json",
                                       "--device-spec", str(spec)])
    assert out.exit_code == 0, out.output
    assert "only gives the device's architecture, for borrowed orders" in out.stderr
    body = json.loads(out.stdout)
    assert body["borrowed_share"] == 1.0 and body["top1"] == 1.0


def test_fit_with_a_held_out_sibling_says_what_borrowed(tmp_path):
    frame = multi_device_frame(60, seed=6)
    polaris = frame.filter(pl.col("device") == FIJI).with_columns(pl.lit(POLARIS).alias("device"))
    schema.write_dataset(pl.concat([frame, polaris]), tmp_path / "four.parquet", {"source": "test"})
    out = CliRunner().invoke(reformer, ["fit", str(tmp_path / "four.parquet"), "-o", str(tmp_path / "m"),
                                        "--split-by", f"device={POLARIS}", "--epochs", "2", "--dim", "16",
                                        "--blocks", "1", "--min-steps", "0", "--threads", "1", "--quiet"])
    assert out.exit_code == 0, out.output
    assert (f"{POLARIS}: 60 of 60 problems ranked by the measured order of a training device of the same "
            f"architecture (60 from {FIJI})") in out.output
    assert "(with the measured orders of 3 device(s), for unseen devices of their architectures)" in out.output
    assert (tmp_path / "m" / MEASURED_FILE).is_file()


def test_fine_tuning_on_a_sibling_says_it_gives_borrowing_up(sibling, tmp_path):
    root, _ = sibling
    args = ["fit", str(root / "polaris.parquet"), "-o", str(tmp_path / "tuned"), "--init", str(root / "model"),
            "--epochs", "1", "--min-steps", "0", "--threads", "1", "--quiet"]
    out = CliRunner().invoke(reformer, args)
    assert out.exit_code == 0, out.output
    assert (f"note: the starting model ranks {POLARIS}'s problems that {FIJI} (same architecture) measured by that "
            f"device's order; fine-tuned on {POLARIS}, the model no longer does") in out.stderr
    assert f"reformer evaluate {root / 'model'} {root / 'polaris.parquet'}" in out.stderr
    tuned = load_model(tmp_path / "tuned")
    assert set(tuned.measured.devices) == {MI100, MI250X, FIJI, POLARIS}  # the starting model's, and the target's
    mi100 = CliRunner().invoke(reformer, ["fit", str(root / "three.parquet"), "-o", str(tmp_path / "again"), "--init",
                                          str(root / "model"), "--epochs", "1", "--min-steps", "0", "--threads", "1",
                                          "--quiet"])
    assert mi100.exit_code == 0, mi100.output
    assert "no longer does" not in mi100.stderr  # its own training devices: nothing to give up


def test_a_loaded_model_reads_its_orders_only_when_a_problem_borrows(sibling):
    root, shared = sibling
    trained = load_model(root / "model")
    assert trained.measured.devices == tuple(sorted((MI100, MI250X, FIJI)))
    assert trained.measured.tables._arrays is None  # devices come from config.json
    selector = Selector(trained)
    three = load_matrix(root / "three.parquet")
    selector.select(three.problem_row(0), device=FIJI)  # a training device: nothing to borrow
    evaluate(selector, load_matrix(root / "vega20.parquet"))  # another architecture: nothing either
    assert trained.measured.tables._arrays is None
    polaris = load_matrix(root / "polaris.parquet")
    i = int(np.flatnonzero(polaris.problems["problem_id"].to_numpy() == shared[0])[0])
    assert selector.borrowed_order(ConvProblem.from_mapping(polaris.problem_row(i)), POLARIS)[1] == FIJI
    assert trained.measured.tables._arrays is not None


def test_a_training_device_described_only_at_fit_still_lends_its_order(tmp_path):
    from kernelbench.devices import descriptor
    from reformer.train import fit

    mine = "miopen:gfx803:99"  # in no table: described by the dataset's metadata, as an import with --device-spec
    spec = {**descriptor(FIJI).as_dict(), "id": "mine"}
    frame = multi_device_frame(60, seed=7, devices=(MI100, FIJI))
    frame = frame.with_columns(pl.when(pl.col("device") == FIJI).then(pl.lit(mine)).otherwise(pl.col("device"))
                               .alias("device"))
    schema.write_dataset(frame, tmp_path / "two.parquet", {"source": "test", "devices": {mine: [{"descriptor": spec}]}})
    trained = fit(load_matrix(tmp_path / "two.parquet"), QUICK).trained
    assert trained.measured is not None and mine in trained.measured.devices
    polaris = frame.filter(pl.col("device") == mine).with_columns(pl.lit(POLARIS).alias("device"))
    schema.write_dataset(polaris, tmp_path / "polaris.parquet", {"source": "test"})
    result = evaluate(Selector(trained), load_matrix(tmp_path / "polaris.parquet"))
    assert set(result.borrowed.source) == {mine}  # the model's own descriptor of it gives its architecture
