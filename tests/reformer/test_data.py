import numpy as np
import polars as pl
import pytest

from kernelbench import schema
from kernelbench.errors import InputError
from kernelbench.problem import problem_2d
from reformer.data import align_kernels, load_matrix, lognormal_noise, pivot

P = [problem_2d(batch=1, in_channels=4, out_channels=4, in_h=8 + i, in_w=8, filter_h=3, filter_w=3) for i in range(3)]


def frame(entries):
    """entries: (problem index, kernel, status, time_ms)."""
    rows = []
    for i, kernel, status, t in entries:
        row = P[i].as_row()
        row.update(kernel=kernel, algorithm="x", status=status, time_ms=t, device="d", source="test")
        rows.append(row)
    return schema.conform(pl.DataFrame(rows, schema_overrides=schema.POLARS_SCHEMA, infer_schema_length=None))


def test_pivot_builds_matrix_mask_and_counts_dropped_problems():
    m = pivot(frame([(0, "a", "ok", 1.0), (0, "b", "ok", 2.0), (1, "b", "ok", 3.0), (1, "a", "error", None),
                     (2, "a", "timeout", None), (0, "b", "ok", 4.0), (0, "b", "ok", 3.0)]))
    assert m.kernels == ("a", "b")
    assert m.dropped_problems == 1  # problem 2 has no ok row
    row = {pid: i for i, pid in enumerate(m.problems["problem_id"])}
    i0, i1 = row[P[0].problem_id], row[P[1].problem_id]
    assert m.time_ms[i0].tolist() == [1.0, 3.0]  # median of 2, 4, 3
    assert np.isnan(m.time_ms[i1, 0]) and m.time_ms[i1, 1] == 3.0
    assert m.applicable[i1].tolist() == [False, True]


def test_no_ok_rows_and_single_kernel_are_input_errors():
    with pytest.raises(InputError, match="no rows with status 'ok'"):
        pivot(frame([(0, "a", "error", None)]))
    with pytest.raises(InputError, match="at least 2"):
        pivot(frame([(0, "a", "ok", 1.0), (1, "a", "ok", 1.0)]))


def test_load_matrix_records_hash_and_rejects_bad_files(tmp_path):
    path = tmp_path / "d.parquet"
    schema.write_dataset(frame([(0, "a", "ok", 1.0), (0, "b", "ok", 2.0)]), path, {"device": "d"})
    m = load_matrix(path)
    assert len(m.metadata["sha256"]) == 64 and m.metadata["device"] == "d"
    bad = tmp_path / "bad.parquet"
    frame([(0, "a", "ok", 1.0)]).drop("kernel").write_parquet(bad)
    with pytest.raises(InputError, match="not a kernelbench dataset"):
        load_matrix(bad)


def test_align_kernels_and_noise():
    m = pivot(frame([(0, "a", "ok", 1.0), (0, "b", "ok", 2.0)]))
    times, unknown = align_kernels(m, ["b", "z"])
    assert times[0, 0] == 2.0 and np.isnan(times[0, 1]) and unknown == ("a",)
    noisy = lognormal_noise(m.time_ms, sigma=0.2, seed=1)
    assert not np.array_equal(noisy, m.time_ms)
    np.testing.assert_array_equal(noisy, lognormal_noise(m.time_ms, sigma=0.2, seed=1))
    assert lognormal_noise(m.time_ms, sigma=0.0, seed=1) is m.time_ms


def test_content_digest_ignores_metadata_but_not_measurements(matrix):
    import dataclasses

    same = dataclasses.replace(matrix, metadata={**matrix.metadata, "created": "another day", "sha256": "other file"})
    assert same.content_sha256() == matrix.content_sha256()
    times = matrix.time_ms.copy()
    first = np.argwhere(np.isfinite(times))[0]
    times[tuple(first)] *= 1.001
    assert matrix.with_time_ms(times).content_sha256() != matrix.content_sha256()
    assert matrix.subset(np.arange(10)).content_sha256() != matrix.content_sha256()


def test_no_problem_with_two_measured_kernels_is_refused():
    # Two kernels in the dataset, but never two on one problem: no choice to learn from or score.
    with pytest.raises(InputError, match="every one of the dataset's 3 problems has a single measured kernel, so "
                                         "nothing can be learned or scored"):
        pivot(frame([(0, "a", "ok", 1.0), (1, "b", "ok", 2.0), (2, "a", "ok", 3.0), (2, "b", "error", None)]))
    # One problem with a choice is enough to go on.
    m = pivot(frame([(0, "a", "ok", 1.0), (1, "b", "ok", 2.0), (2, "a", "ok", 3.0), (2, "b", "ok", 4.0)]))
    assert m.n_problems == 3 and m.single_kernel_problems == 2


@pytest.mark.parametrize("single, warned", [(0, False), (1, True)])  # 1 of 3 problems: 33 % >= 10 %
def test_load_matrix_warns_when_many_problems_have_a_single_kernel(tmp_path, single, warned):
    entries = [(0, "a", "ok", 1.0), (0, "b", "ok", 2.0), (1, "a", "ok", 1.0), (1, "b", "ok", 2.0), (2, "a", "ok", 3.0)]
    if not single:
        entries.append((2, "b", "ok", 1.0))
    path = tmp_path / "d.parquet"
    schema.write_dataset(frame(entries), path, {})
    said = []
    load_matrix(path, warn=said.append)
    assert said == ([f"{path}: 1 of 3 problems (33%) have a single measured kernel: they teach nothing and count as "
                     "perfect picks, so metrics look better than the selector is"] if warned else [])


def test_pivot_keeps_each_device_of_a_problem_apart():
    both = pl.concat([
        frame([(0, "a", "ok", 1.0), (0, "b", "ok", 2.0), (1, "a", "ok", 5.0), (1, "b", "ok", 6.0)]),
        frame([(0, "a", "ok", 9.0), (0, "b", "ok", 3.0), (0, "c", "ok", 4.0), (0, "a", "ok", 7.0)])
        .with_columns(pl.lit("e").alias("device")),
    ])
    m = pivot(both)
    assert m.kernels == ("a", "b", "c")  # the union of the devices' kernels
    assert m.devices == ("d", "e")
    assert list(zip(m.problems["problem_id"], m.problems["device"])) == sorted(
        [(P[0].problem_id, "d"), (P[0].problem_id, "e"), (P[1].problem_id, "d")])
    at = {(p, d): i for i, (p, d) in enumerate(zip(m.problems["problem_id"], m.problems["device"]))}
    on_d = m.time_ms[at[P[0].problem_id, "d"]]
    assert on_d.tolist()[:2] == [1.0, 2.0] and np.isnan(on_d[2])
    assert m.time_ms[at[P[0].problem_id, "e"]].tolist() == [8.0, 3.0, 4.0]  # median within device e only


def test_a_single_device_hashes_as_before_rows_carried_their_device():
    one = frame([(0, "a", "ok", 1.0), (0, "b", "ok", 2.0), (1, "a", "ok", 3.0)])
    renamed = one.with_columns(pl.lit("elsewhere").alias("device"))
    assert pivot(one).content_sha256() == pivot(renamed).content_sha256()
    two = pl.concat([one, renamed])
    relabelled = pl.concat([one, renamed.with_columns(pl.lit("x").alias("device"))])
    assert pivot(two).content_sha256() != pivot(relabelled).content_sha256()


def test_pivot_keeps_time_rse_beside_the_times_and_none_for_imports():
    f = frame([(0, "a", "ok", 1.0), (0, "b", "ok", 2.0), (1, "a", "ok", 3.0), (1, "b", "ok", 3.5)])
    assert pivot(f).time_rse is None  # no row records an rse (an import): no array at all
    rse = {("a", 1.0): 0.01, ("b", 2.0): 0.02, ("a", 3.0): None, ("b", 3.5): 0.04}
    f = f.with_columns(pl.Series("time_rse", [rse[(k, t)] for k, t in zip(f["kernel"], f["time_ms"])], dtype=pl.Float64))
    m = pivot(f)
    row = {pid: i for i, pid in enumerate(m.problems["problem_id"])}
    i0, i1 = row[P[0].problem_id], row[P[1].problem_id]
    assert m.time_rse[i0].tolist() == [0.01, 0.02]
    assert np.isnan(m.time_rse[i1, 0]) and m.time_rse[i1, 1] == 0.04
    assert m.subset(np.array([i1])).time_rse.tolist()[0][1] == 0.04
    aligned, _ = align_kernels(m, ("b", "z"), values=m.time_rse)
    assert aligned[i0, 0] == 0.02 and np.isnan(aligned[:, 1]).all()
