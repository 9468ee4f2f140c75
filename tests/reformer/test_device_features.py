"""Device tokens: descriptors -> token values, the encoder on one and on several devices, and every inference path."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from cli import reformer
from kernelbench import schema
from kernelbench.devices import descriptor
from kernelbench.errors import InputError
from kernelbench.problem import problem_2d
from reformer.baselines import FlatFeatures
from reformer.config import FitConfig
from reformer.data import load_matrix, pivot
from reformer.device_features import (
    DEVICE_CATEGORICAL_TOKENS,
    DEVICE_SPEC_TOKENS,
    arch_family,
    dataset_descriptors,
    pair_values,
    spec_values,
)
from reformer.evaluate import evaluate
from reformer.features import FeatureEncoder
from reformer.inference import problem_columns
from reformer.report import json_metrics, save_fit
from reformer.selector import Selector
from tests.reformer.conftest import QUICK
from tests.reformer.synthetic import synthetic_device_frame, synthetic_frame

MI100 = "miopen:gfx908:120"
VEGA56 = "miopen:gfx900:56"
#: In the descriptor table, in no training set below: the zero-shot device.
MI250X = "miopen:gfx90a:110"
#: In no table.
UNKNOWN = "miopen:gfx90a:99"
PROBLEM = "batch=8,in_channels=64,in_h=56,in_w=56,out_channels=64,filter_h=3,filter_w=3,pad_h=1,pad_w=1,dtype=fp16,direction=fwd"


def on(device: str, frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.lit(device).alias("device"))


def two_device_frame(n: int = 200, seed: int = 2) -> pl.DataFrame:
    """The synthetic problems on MI100, and on Vega 56 with gemm 3x faster and no winograd."""
    return pl.concat([on(MI100, synthetic_frame(n, seed=seed)), synthetic_device_frame(n, seed=seed, device=VEGA56)])


@pytest.fixture(scope="module")
def two():
    return pivot(two_device_frame())


@pytest.mark.parametrize(("arch", "family"), [("gfx803", "gfx8"), ("gfx900", "gfx9"), ("gfx90a", "gfx9"),
                                              ("gfx942", "gfx9"), ("gfx1030", "gfx10"), ("gfx1100", "gfx11"),
                                              ("sm_80", "sm_8"), ("sm_90", "sm_9"), ("cpu", "cpu")])
def test_arch_family_is_the_major_version(arch, family):
    assert arch_family(arch) == family


def test_spec_values_of_known_descriptors():
    mi100 = spec_values(descriptor(MI100))
    assert mi100["device_family"] == "gfx9" and mi100["device_matrix_cores"] == "true"
    assert mi100["device_compute_units"] == 120.0 and mi100["device_clock_mhz"] == 1502.0
    assert mi100["device_peak_bf16_tflops"] == 92.3 and mi100["device_mem_bandwidth_gbs"] == 1228.8
    assert tuple(mi100) == DEVICE_CATEGORICAL_TOKENS + DEVICE_SPEC_TOKENS
    # gfx803 has no native BF16 or INT8: their peaks are the FP32 peak.
    fiji = spec_values(descriptor("gfx803_36"))
    assert fiji["device_family"] == "gfx8" and fiji["device_matrix_cores"] == "false"
    assert fiji["device_peak_bf16_tflops"] == fiji["device_peak_int8_tops"] == fiji["device_peak_fp32_tflops"] == 5.7


def test_problem_on_device_tokens_by_hand():
    p = problem_2d(batch=1, in_channels=64, out_channels=64, in_h=56, in_w=56, filter_h=3, filter_w=3, pad_h=1,
                   pad_w=1, dtype="fp16")
    flops = 2 * 64 * 56 * 56 * 64 * 9  # 231,211,008
    moved = (64 * 56 * 56 + 64 * 64 * 9 + 64 * 56 * 56) * 2  # x, w, y in fp16: 876,544 bytes
    f = {"dtype": "fp16", "groups": 1, "flops": flops, "bytes": moved, "gemm_m": 56 * 56, "gemm_n": 64}
    one = pair_values(f, spec_values(descriptor(MI100)))
    assert one["device_peak_tflops"] == 184.6
    assert one["device_compute_ns"] == pytest.approx(flops / 184.6e3)  # 1252.5 ns
    assert one["device_memory_ns"] == pytest.approx(moved / 1228.8)  # 713.3 ns
    assert one["device_roofline_ns"] == one["device_compute_ns"]
    assert one["device_gemm_waves"] == pytest.approx(49 / 120)  # ceil(3136 / 64) * ceil(64 / 64) tiles on 120 CUs
    assert one["device_l2_footprint"] == pytest.approx(moved / (8 * 2**20))
    # Columns (one value per row, the device's figures broadcast) give the same numbers.
    columns = problem_columns([p, p])
    columns["device"] = np.array([MI100, "gfx803_36"])
    encoder = FeatureEncoder.fit({**columns, "device": np.array([MI100, VEGA56])}, drop_constant=False)
    tokens = encoder.device_columns(columns)
    assert tokens["device_compute_ns"][0] == pytest.approx(one["device_compute_ns"])
    assert tokens["device_gemm_waves"][0] == pytest.approx(one["device_gemm_waves"])
    assert tokens["device_compute_ns"][1] == pytest.approx(flops / 5.7e3)  # gfx803: FP16 at the FP32 rate
    assert tokens["device_memory_ns"][1] == pytest.approx(moved / 224)


def test_one_device_gets_no_device_tokens(matrix):
    columns = matrix.columns()
    assert set(columns["device"]) == {"synthetic"}  # a label without a descriptor: never looked up
    encoder = FeatureEncoder.fit(columns, exact_values=16)
    assert encoder == FeatureEncoder.fit(columns, exact_values=16, device_tokens=False)
    assert encoder == FeatureEncoder.fit({k: v for k, v in columns.items() if k != "device"}, exact_values=16)
    assert not encoder.device_tokens and encoder.devices == () and "devices" not in encoder.to_json()
    # The fit option stays out of the config's keys (ablation cells of one device keep theirs).
    assert "device_tokens" not in FitConfig().as_dict() and FitConfig(device_tokens=False).as_dict()["device_tokens"] is False


def test_two_devices_add_the_tokens_that_vary(two):
    encoder = FeatureEncoder.fit(two.columns())
    # gfx908 and gfx900 are both gfx9 with 64-lane wavefronts and 64 KiB LDS: those tokens are constant, dropped.
    assert encoder.device_tokens == (
        "device_matrix_cores", "device_compute_units", "device_clock_mhz", "device_peak_fp32_tflops",
        "device_peak_fp16_tflops", "device_peak_bf16_tflops", "device_peak_int8_tops", "device_mem_bandwidth_gbs",
        "device_l2_mib", "device_peak_tflops", "device_compute_ns", "device_memory_ns", "device_roofline_ns",
        "device_gemm_waves", "device_l2_footprint")
    assert encoder.categorical[-1] == "device_matrix_cores" and encoder.vocabularies[-1] == ("false", "true")
    assert [label for label, _ in encoder.devices] == [VEGA56, MI100]  # sorted
    encoded = encoder.encode(two.columns())
    j = encoder.numeric.index("device_compute_units")
    cus = np.where(two.problems["device"].to_numpy() == MI100, 120.0, 56.0)
    logged = np.log2(1 + cus)
    np.testing.assert_allclose(encoded.numeric[:, j], (logged - logged.mean()) / logged.std(), rtol=1e-6)
    assert (encoded.value_ids[:, j] == 0).all()  # no exact-value embedding of a device figure
    mi100 = two.problems["device"].to_numpy() == MI100
    assert (encoded.categorical[mi100, -1] == 2).all() and (encoded.categorical[~mi100, -1] == 1).all()


def test_a_device_without_descriptor_is_one_error(two):
    encoder = FeatureEncoder.fit(two.columns())
    columns = two.columns()
    columns["device"] = np.where(columns["device"] == VEGA56, UNKNOWN, columns["device"])
    with pytest.raises(InputError, match=f"no descriptor for device {UNKNOWN}; pass --device-spec FILE"):
        encoder.encode(columns)
    with pytest.raises(InputError, match="give each problem's device label"):
        encoder.encode({k: v for k, v in two.columns().items() if k != "device"})
    with pytest.raises(InputError, match=f"no descriptor for device {UNKNOWN}, .*--no-device-tokens"):
        FeatureEncoder.fit(columns)


def test_an_unseen_device_encodes_from_the_table_or_a_given_descriptor(two):
    encoder = FeatureEncoder.fit(two.columns())
    columns = two.columns()
    columns["device"] = np.full(two.n_problems, MI250X)
    encoded = encoder.encode(columns)
    j = encoder.numeric.index("device_compute_units")
    np.testing.assert_allclose(encoded.numeric[:, j], (math.log2(111) - encoder.mean[j]) / encoder.std[j], rtol=1e-6)
    assert (encoded.categorical[:, -1] == 2).all()  # matrix cores, as MI100
    # A label no table knows, described by the caller (--device-spec), encodes as the table's device does.
    columns["device"] = np.full(two.n_problems, UNKNOWN)
    given = encoder.encode(columns, descriptors={UNKNOWN: descriptor(MI250X)})
    np.testing.assert_array_equal(given.numeric, encoded.numeric)
    # A training device keeps the descriptor it was trained with, whatever is given.
    columns["device"] = two.columns()["device"]
    np.testing.assert_array_equal(encoder.encode(columns, descriptors={MI100: descriptor(MI250X)}).numeric,
                                  encoder.encode(two.columns()).numeric)


def test_config_round_trip_keeps_the_devices(two):
    encoder = FeatureEncoder.fit(two.columns(), exact_values=8)
    back = FeatureEncoder.from_json(json.loads(json.dumps(encoder.to_json())))
    assert back == encoder and dict(back.devices)[MI100] == descriptor(MI100)
    columns = two.columns()
    columns["device"] = np.full(two.n_problems, MI250X)
    np.testing.assert_array_equal(back.encode(columns).numeric, encoder.encode(columns).numeric)


def test_dataset_metadata_descriptors():
    mine = {**descriptor(MI250X).as_dict(), "id": "mine"}
    single = {"device": {"label": UNKNOWN, "arch": "gfx90a", "descriptor": mine}}
    assert dataset_descriptors(single)[UNKNOWN].compute_units == 110
    merged = {"devices": {UNKNOWN: [{"descriptor": mine}], MI100: [{"descriptor": None}],
                          VEGA56: [{"descriptor": mine}, {"descriptor": descriptor(VEGA56).as_dict()}]}}
    assert list(dataset_descriptors(merged)) == [UNKNOWN]  # none recorded, or two that disagree: left out
    assert dataset_descriptors({"device": "synthetic"}) == {}


def test_flat_features_one_problem_matches_the_batch(two):
    features = FlatFeatures.fit(two.columns())
    batch = features.encode(two.columns())
    for i in (0, 7, two.n_problems - 1):
        row = {**two.problem_row(i), "device": two.problems["device"][i]}
        np.testing.assert_array_equal(features.encode_one(row), batch[i])


@pytest.fixture(scope="module")
def device_model(tmp_path_factory, two):
    from reformer.train import fit

    root = tmp_path_factory.mktemp("devices")
    schema.write_dataset(two_device_frame(), root / "two.parquet", {"source": "test"})
    schema.write_dataset(on(MI250X, synthetic_frame(120, seed=5)), root / "mi250x.parquet", {"source": "test"})
    schema.write_dataset(on(UNKNOWN, synthetic_frame(120, seed=5)), root / "unknown.parquet", {"source": "test"})
    result = fit(load_matrix(root / "two.parquet"), QUICK)
    save_fit(root / "model", result)
    return root


def test_batch_and_single_problem_paths_give_the_same_logits(device_model):
    selector = Selector.load(device_model / "model")
    assert selector.reads_device
    for name in ("two", "mi250x"):
        matrix = load_matrix(device_model / f"{name}.parquet")
        batch = selector.logits(matrix.columns())
        single = np.stack([selector.fast.logits_one(matrix.problem_row(i), matrix.problems["device"][i])
                           for i in range(matrix.n_problems)])
        np.testing.assert_allclose(single, batch, atol=1e-5 * np.abs(batch).max(), rtol=0)
        np.testing.assert_array_equal(single.argmax(1), batch.argmax(1))
    # The two devices' logits of one problem differ: the model sees the device.
    two = load_matrix(device_model / "two.parquet")
    row = two.problem_row(0)
    assert not np.allclose(selector.fast.logits_one(row, MI100), selector.fast.logits_one(row, VEGA56))
    with pytest.raises(InputError, match="give each problem's device label"):
        selector.select(row)


def test_select_and_evaluate_commands_agree_with_the_batch_path(device_model):
    model = str(device_model / "model")
    selector = Selector.load(model)
    out = CliRunner().invoke(reformer, ["select", model, "--problem", PROBLEM, "--device", MI250X, "--json"])
    assert out.exit_code == 0, out.output
    ranked = json.loads(out.stdout)["ranked"]
    fields = dict(item.split("=") for item in PROBLEM.split(","))
    mask, _ = selector.candidate_mask(selector_problem(fields), device=MI250X)
    columns = {k: v for k, v in problem_columns([fields]).items()} | {"device": np.array([MI250X])}
    probabilities = selector.probabilities(columns, mask[None, :])[0]
    assert [r["kernel"] for r in ranked] == [selector.kernels[j] for j in np.argsort(-probabilities, kind="stable")
                                              if mask[j]]
    np.testing.assert_allclose([r["probability"] for r in ranked], np.sort(probabilities[mask])[::-1], rtol=1e-5)
    missing = CliRunner().invoke(reformer, ["select", model, "--problem", PROBLEM])
    assert missing.exit_code == 2 and "give each problem's device label" in missing.stderr

    dataset = str(device_model / "mi250x.parquet")
    out = CliRunner().invoke(reformer, ["evaluate", model, dataset, "--json"])
    assert out.exit_code == 0, out.output
    expected = evaluate(selector, load_matrix(dataset)).model
    assert json.loads(out.stdout) == json.loads(json.dumps({**json_metrics(expected), "borrowed_share": 0.0}))


def selector_problem(fields):
    from kernelbench.problem import ConvProblem

    return ConvProblem.from_mapping(fields)


def test_device_spec_describes_a_device_the_table_lacks(device_model, tmp_path):
    model = str(device_model / "model")
    unknown = str(device_model / "unknown.parquet")
    refused = CliRunner().invoke(reformer, ["evaluate", model, unknown, "--json"])
    assert refused.exit_code == 2
    assert refused.stderr.strip() == refused.stderr.strip().splitlines()[0]
    assert f"no descriptor for device {UNKNOWN}; pass --device-spec FILE" in refused.stderr
    # A spec file with MI250X's figures scores the unknown label as the table's MI250X label scores the same problems.
    spec = tmp_path / "mine.toml"
    fields = {k: v for k, v in descriptor(MI250X).as_dict().items() if v is not None and k not in ("id", "device_names")}
    spec.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items()) + "\n")
    given = CliRunner().invoke(reformer, ["evaluate", model, unknown, "--json", "--device-spec", str(spec)])
    table = CliRunner().invoke(reformer, ["evaluate", model, str(device_model / "mi250x.parquet"), "--json"])
    assert given.exit_code == 0, given.output
    assert json.loads(given.stdout) == json.loads(table.stdout)
    by_spec = CliRunner().invoke(reformer, ["select", model, "--problem", PROBLEM, "--device", UNKNOWN,
                                            "--device-spec", str(spec), "--json"])
    by_table = CliRunner().invoke(reformer, ["select", model, "--problem", PROBLEM, "--device", MI250X, "--json"])
    assert by_spec.exit_code == 0, by_spec.output
    assert [r["probability"] for r in json.loads(by_spec.stdout)["ranked"]] == \
        [r["probability"] for r in json.loads(by_table.stdout)["ranked"]]
