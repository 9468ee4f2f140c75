"""The fast inference path (reformer.inference) against the torch training model."""

import bz2
import dataclasses
import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from kernelbench.errors import InputError
from kernelbench.problem import problem_2d
from reformer import Selector
from reformer.data import NON_FIELD_COLUMNS
from reformer.features import FeatureEncoder
from reformer.inference import FastReformer, problem_columns
from reformer.model import ModelConfig, Reformer
from reformer.store import TrainedModel
from reformer.threads import torch_threads
from tests.reformer.conftest import QUICK
from tests.reformer.synthetic import synthetic_problems

DIRECTIONS = ("fwd", "bwd_data", "bwd_weights")
#: Lines of the MIOpen find-db read for the MI100 sample (one problem key per line).
MI100_SAMPLE_LINES = 1500


def torch_logits(trained: TrainedModel, columns, applicable=None) -> np.ndarray:
    encoded = trained.encoder.encode(columns)
    mask = None if applicable is None else torch.from_numpy(np.ascontiguousarray(applicable))
    with torch.inference_mode():
        inputs = (encoded.categorical, encoded.numeric, encoded.value_ids)
        return trained.model(*(torch.from_numpy(a) for a in inputs), mask).numpy()


def random_model(encoder: FeatureEncoder, n_kernels: int = 7, seed: int = 0, **options) -> TrainedModel:
    """An untrained model whose norms, biases and exact-value embeddings (with an encoder that has
    value vocabularies) are far from their initial values, so every fold matters."""
    torch.manual_seed(seed)
    n_values = encoder.n_values if any(encoder.value_vocabularies) else ()
    config = ModelConfig(n_categories=encoder.n_categories, n_numeric=len(encoder.numeric), n_kernels=n_kernels,
                         n_values=n_values, dim=options.pop("dim", 16), blocks=options.pop("blocks", 2), **options)
    model = Reformer(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if module is model.embed.exact:
                module.weight.normal_(0.0, 0.5)
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.3)
            elif isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.normal_(0.0, 0.3)
    kernels = tuple(f"k{i}" for i in range(n_kernels))
    return TrainedModel(model=model, encoder=encoder, kernels=kernels, static_order=kernels)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The one-problem path's tiny torch ops only lose to intra-op threading; on a busy machine a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def problems():
    return synthetic_problems(300, seed=3, directions=DIRECTIONS)


@pytest.fixture(scope="module")
def encoder(problems):
    return FeatureEncoder.fit(problem_columns(problems[:200]))


@pytest.fixture(scope="module")
def exact_encoder(problems):
    """With exact-value embeddings for the frequent values of integer tokens."""
    return FeatureEncoder.fit(problem_columns(problems[:200]), exact_values=4)


def test_encode_one_matches_the_batch_encoder(problems, exact_encoder):
    encoder = exact_encoder
    fast = FastReformer.from_trained(random_model(encoder))
    unseen = problem_2d(batch=4, in_channels=8, out_channels=8, in_h=9, in_w=9, filter_h=3, filter_w=3, dtype="bf16")
    sample = [*problems[200:260], unseen]
    expected = encoder.encode(problem_columns(sample))
    assert expected.value_ids.any() and not expected.value_ids[-1, encoder.numeric.index("in_channels")]
    assert expected.categorical[-1, encoder.categorical.index("dtype")] == 0  # bf16 is not in the vocabulary
    for i, problem in enumerate(sample):
        rows, centred, value_rows = fast.encode_one(problem)
        np.testing.assert_array_equal(rows - fast._cat_offsets, expected.categorical[i])
        np.testing.assert_allclose(centred / np.asarray(encoder.std), expected.numeric[i], atol=2e-6)
        np.testing.assert_array_equal(value_rows - fast._value_offsets, expected.value_ids[i])


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"paths": "affine"},
        {"paths": "nonlinear"},
        {"blocks": 1},
        {"blocks": 3, "activation": "relu"},
        {"activation": "silu"},
        {"activation": "tanh", "paths": "nonlinear"},
        {"block": "transformer"},
        {"block": "transformer", "activation": "relu", "blocks": 1},
        {"exact": True},
        {"exact": True, "block": "transformer"},
        {"membership_head": True},
        {"membership_head": True, "exact": True, "paths": "affine"},
        {"membership_head": True, "block": "transformer"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults",
)
def test_logits_match_torch_for_every_architecture(problems, encoder, exact_encoder, options):
    options = dict(options)
    if options.pop("exact", False):
        encoder = exact_encoder
    trained = random_model(encoder, **options)
    fast = FastReformer.from_trained(trained)
    columns = problem_columns(problems)
    expected = torch_logits(trained, columns)
    batched = fast.logits(encoder.encode(columns))
    one_by_one = np.stack([fast.logits_one(p) for p in problems[:100]])
    scale = np.abs(expected).max()
    np.testing.assert_allclose(batched, expected, atol=1e-5 * scale, rtol=0)
    np.testing.assert_allclose(one_by_one, expected[:100], atol=1e-5 * scale, rtol=0)
    np.testing.assert_array_equal(batched.argmax(1), expected.argmax(1))


def test_a_wide_model_scores_a_batch_with_single_threaded_blas_and_restores_it(problems, encoder, capfd):
    """At d = 256 OpenBLAS splits the blocks' matmuls over its own threads; started inside numba's parallel
    region they oversubscribe the cores, and OpenBLAS says on stderr, once per matmul, that this may hang."""
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS compiled np.dot calls, loaded before counting)

    def blas_threads() -> dict[str, int]:
        return {lib["filepath"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    trained = random_model(encoder, dim=256, blocks=3)
    fast = FastReformer.from_trained(trained)
    columns = problem_columns(problems)
    expected = torch_logits(trained, columns)
    before = blas_threads()
    with torch_threads(2):  # numba threads for the batch; with one there is no parallel region
        batched = fast.logits(encoder.encode(columns))
    assert "OpenBLAS" not in capfd.readouterr().err
    assert blas_threads() == before
    np.testing.assert_allclose(batched, expected, atol=1e-5 * np.abs(expected).max(), rtol=0)


def test_trained_model_picks_agree_on_every_problem(fit_result, matrix):
    """Every problem of the synthetic dataset (all splits), batched and one by one, masked by applicability."""
    trained = fit_result.trained
    fast = FastReformer.from_trained(trained)
    applicable = matrix.applicable
    expected = torch_logits(trained, matrix.columns(), applicable).argmax(1)
    batched = fast.probabilities(trained.encoder.encode(matrix.columns()), applicable).argmax(1)
    np.testing.assert_array_equal(batched, expected)
    names = [fast.select_one(_mapping(row), applicable[i])[0][0] for i, row in enumerate(matrix.problems.iter_rows(named=True))]
    assert names == [trained.kernels[j] for j in expected]


def test_top_k_probabilities_match_torch_softmax(problems, encoder):
    trained = random_model(encoder, n_kernels=9, seed=1)
    fast = FastReformer.from_trained(trained)
    rng = np.random.default_rng(0)
    masks = rng.random((40, 9)) < 0.6
    masks[:, 4] = True
    expected = torch.softmax(torch.from_numpy(torch_logits(trained, problem_columns(problems[:40]), masks)), 1).numpy()
    for i, problem in enumerate(problems[:40]):
        ranked = fast.select_one(problem, masks[i], top=5)
        order = np.argsort(-expected[i], kind="stable")[: min(5, masks[i].sum())]
        assert [k for k, _ in ranked] == [trained.kernels[j] for j in order]
        np.testing.assert_allclose([p for _, p in ranked], expected[i, order], rtol=1e-5, atol=1e-7)
        best = fast.select_one(problem, masks[i])
        assert best[0][0] == ranked[0][0] and best[0][1] == pytest.approx(ranked[0][1], rel=1e-5)


def test_masked_kernels_are_never_picked_and_get_probability_zero(problems, encoder):
    trained = random_model(encoder, n_kernels=6, seed=2)
    fast = FastReformer.from_trained(trained)
    encoded = encoder.encode(problem_columns(problems[:50]))
    favourite = fast.logits(encoded).argmax(1)
    masks = np.ones((50, 6), dtype=bool)
    masks[np.arange(50), favourite] = False  # forbid each problem's favourite kernel
    masks[0] = [False, False, False, True, False, False]  # a single applicable kernel
    for i, problem in enumerate(problems[:50]):
        ranked = fast.select_one(problem, masks[i], top=6)
        assert len(ranked) == masks[i].sum()
        assert all(masks[i, trained.kernels.index(k)] for k, _ in ranked)
        assert sum(p for _, p in ranked) == pytest.approx(1.0, abs=1e-6)
        assert fast.select_one(problem, masks[i])[0][0] != trained.kernels[favourite[i]]
    assert fast.select_one(problems[0], masks[0], top=3) == [("k3", 1.0)]
    probabilities = fast.probabilities(encoded, masks)
    assert (probabilities[~masks] == 0).all()
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-6)
    masks[1] = False
    assert np.isnan(fast.probabilities(encoded, masks)[1]).all()
    with pytest.raises(ValueError, match="marks no kernel"):
        fast.select_one(problems[1], masks[1])
    with pytest.raises(ValueError, match="top must be >= 1"):
        fast.select_one(problems[1], top=0)


def test_selector_uses_the_fast_path_and_names_unknown_kernels(model_dir):
    selector = Selector.load(model_dir)
    assert isinstance(selector.fast, FastReformer)
    problem = {"batch": 8, "in_channels": 64, "out_channels": 64, "in_h": 28, "in_w": 28, "filter_h": 3, "filter_w": 3,
               "pad_h": 1, "pad_w": 1}
    assert selector.select(problem, top=3) == selector.fast.select_one(problem, selector.candidate_mask(problem)[0], top=3)
    ranked = selector.select(problem, applicable=["gemm", "direct", "no_such_kernel"], top=5)
    assert {k for k, _ in ranked} == {"gemm", "direct"}
    assert selector.unknown_kernels(["gemm", "no_such_kernel"]) == ["no_such_kernel"]
    with pytest.raises(InputError, match="none of the applicable kernels .*no_such_kernel.* is known"):
        selector.select(problem, applicable=["no_such_kernel"])
    many = selector.select_many([problem, problem], applicable=[["gemm"], None], top=2)
    assert many[0] == [("gemm", pytest.approx(1.0))]
    assert [k for k, _ in many[1]] == [k for k, _ in selector.select(problem, top=2)]


def _mapping(row: dict) -> dict:
    """A matrix problem row as a problem mapping (``network`` and ``device`` are dataset columns, not problem fields)."""
    return {k: v for k, v in row.items() if k not in NON_FIELD_COLUMNS}


# ---------------------------------------------------------------- the MIOpen MI100 find-db, sampled


@pytest.fixture(scope="module")
def mi100_sample(tmp_path_factory):
    """The first lines of the MI100 find-db, imported (a few thousand problems of every direction)."""
    source = Path(os.environ.get("KERNELBENCH_MIOPEN_FDB", ""))
    if not source.is_file():
        pytest.skip("KERNELBENCH_MIOPEN_FDB does not name the MIOpen MI100 find-db")
    from kernelbench.importers.miopen import import_miopen_fdb
    from kernelbench.schema import write_dataset
    from reformer.data import load_matrix

    directory = tmp_path_factory.mktemp("mi100")
    opener = bz2.open if source.suffix == ".bz2" else open
    with opener(source, "rb") as fh:
        head = list(itertools.islice(fh, MI100_SAMPLE_LINES))
    sample = directory / source.name.removesuffix(".bz2")  # keeps the device name (gfx90878) the importer reads
    sample.write_bytes(b"".join(head))
    imported = import_miopen_fdb(sample)
    write_dataset(imported.frame, directory / "mi100.parquet", imported.metadata)
    return load_matrix(directory / "mi100.parquet")


def test_picks_agree_with_torch_on_an_mi100_sample(mi100_sample):
    from reformer.train import fit

    result = fit(mi100_sample, dataclasses.replace(QUICK, epochs=2))
    trained = result.trained
    fast = FastReformer.from_trained(trained)
    columns, applicable = mi100_sample.columns(), mi100_sample.applicable
    expected = torch_logits(trained, columns, applicable).argmax(1)
    np.testing.assert_array_equal(fast.probabilities(trained.encoder.encode(columns), applicable).argmax(1), expected)
    rows = list(mi100_sample.problems.iter_rows(named=True))
    for i in range(0, len(rows), 7):
        assert fast.select_one(_mapping(rows[i]), applicable[i])[0][0] == trained.kernels[expected[i]]


def test_single_problem_path_on_a_dataset_whose_categorical_fields_are_constant():
    """The committed CPU dataset is all fwd/fp32/NCHW/2D, so no categorical token varies."""
    from pathlib import Path

    from reformer import fit, load_matrix
    from reformer.config import FitConfig
    from reformer.selector import Selector

    matrix = load_matrix(Path(__file__).resolve().parents[2] / "datasets" / "cpu-networks-epyc-2t.parquet")
    result = fit(matrix, FitConfig(epochs=1, min_steps=1, progress=False, threads=1))
    selector = Selector(result.trained)
    from kernelbench.problem import FIELDS

    problem = {k: v for k, v in matrix.problems.row(0, named=True).items() if k in FIELDS}
    picks = selector.select(problem, top=3)
    assert len(picks) == 3 and picks[0][1] >= picks[1][1] >= picks[2][1] > 0
    assert {k for k, _ in picks} <= set(matrix.kernels)


@pytest.mark.parametrize("block", ["gamma", "transformer"])
def test_membership_scores_match_torch_in_both_tails_of_log_sigmoid(problems, encoder, block):
    """u far below and far above 0 (log σ(u) ≈ u and ≈ 0): the compiled, numpy and torch paths agree, and the
    ranking follows the score z + log σ(u), not z."""
    plain = random_model(encoder, n_kernels=6, seed=4, block=block)
    trained = random_model(encoder, n_kernels=6, seed=5, block=block, membership_head=True)
    trained.model.load_state_dict(plain.model.state_dict(), strict=False)  # the same trunk and z, its own u
    with torch.no_grad():
        trained.model.membership.bias.copy_(torch.tensor([-12.0, -3.0, 0.0, 3.0, 12.0, -30.0]))
    fast = FastReformer.from_trained(trained)
    columns = problem_columns(problems[:60])
    expected = torch_logits(trained, columns)
    batched = fast.logits(encoder.encode(columns))
    one_by_one = np.stack([fast.logits_one(p) for p in problems[:60]])
    np.testing.assert_allclose(batched, expected, atol=1e-5 * np.abs(expected).max(), rtol=0)
    np.testing.assert_allclose(one_by_one, expected, atol=1e-5 * np.abs(expected).max(), rtol=0)
    encoded = encoder.encode(columns)
    z = torch_logits(plain, columns)
    u_bounds = expected - z  # log σ(u) <= 0
    assert (u_bounds <= 1e-5).all() and (u_bounds[:, 4] > -1e-3).all()
    assert (expected[:, 5] < z[:, 5] - 29).all()  # a kernel that is never measured sinks
    np.testing.assert_array_equal(fast.probabilities(encoded).argmax(1), expected.argmax(1))

