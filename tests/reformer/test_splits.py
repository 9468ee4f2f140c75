import numpy as np
import polars as pl
import pytest

from kernelbench.errors import InputError
from reformer.splits import SplitSpec, group_keys, make_split, parse_split_by, recorded_split


def sides(split):
    return [split.train, split.validation, split.test]


def test_random_split_is_a_seeded_partition(matrix):
    split = make_split(matrix.problems, SplitSpec(seed=1))
    rows = np.concatenate(sides(split))
    assert len(rows) == len(set(rows)) == matrix.n_problems
    ids = [set(matrix.problems["problem_id"].to_numpy()[s]) for s in sides(split)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert abs(len(split.train) / matrix.n_problems - 0.8) < 0.01
    again = make_split(matrix.problems, SplitSpec(seed=1))
    np.testing.assert_array_equal(split.test, again.test)
    assert not np.array_equal(split.test, make_split(matrix.problems, SplitSpec(seed=2)).test)


@pytest.mark.parametrize("group_by", ["geometry", "layer"])
def test_grouped_split_keeps_groups_on_one_side(matrix, group_by):
    split = make_split(matrix.problems, SplitSpec(group_by=group_by))
    groups = group_keys(matrix.problems, group_by)
    seen = [set(groups[s]) for s in sides(split)]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert sum(len(s) for s in sides(split)) == matrix.n_problems
    # groups really merge problems (several directions / dtypes / batches per geometry)
    assert len(set(groups)) < matrix.n_problems


def test_layer_groups_ignore_batch_but_geometry_does_not(matrix):
    geometry, layer = group_keys(matrix.problems, "geometry"), group_keys(matrix.problems, "layer")
    assert len(set(layer)) < len(set(geometry))


def test_split_by_holds_out_matching_problems(matrix):
    spec = SplitSpec(hold_out=parse_split_by("direction=bwd_data"), group_by="layer")
    split = make_split(matrix.problems, spec)
    direction = matrix.problems["direction"].to_numpy()
    assert (direction[split.test] == "bwd_data").all()
    assert (direction[split.train] == "fwd").all() and (direction[split.validation] == "fwd").all()
    layers = group_keys(matrix.problems, "layer")
    assert not set(layers[split.train]) & set(layers[split.test])


def test_parse_split_by_groups_values_per_column():
    assert parse_split_by("network=a, dtype=fp16,network=b") == (("dtype", ("fp16",)), ("network", ("a", "b")))


@pytest.mark.parametrize(
    ("text", "message"),
    [("direction", "COLUMN=VALUE"), ("colour=red", "unknown"), (" , ", "empty")],
)
def test_parse_split_by_errors(text, message):
    with pytest.raises(InputError, match=message):
        parse_split_by(text)


def test_split_by_matching_nothing_or_everything_is_an_input_error(matrix):
    with pytest.raises(InputError, match="matches no problem"):
        make_split(matrix.problems, SplitSpec(hold_out=(("direction", ("bwd_weights",)),)))
    with pytest.raises(InputError, match="every problem"):
        make_split(matrix.problems, SplitSpec(hold_out=(("layout", ("NCHW",)),)))
    with pytest.raises(InputError, match="fractions"):
        make_split(matrix.problems, SplitSpec(fractions=(0.5, 0.1, 0.1)))


def test_split_by_device_holds_one_device_out_and_group_by_keeps_a_shapes_devices_together():
    from reformer.data import pivot
    from tests.reformer.synthetic import synthetic_device_frame, synthetic_frame

    two = pivot(pl.concat([synthetic_frame(60), synthetic_device_frame(40)]))
    split = make_split(two.problems, SplitSpec(hold_out=parse_split_by("device=other")))
    device = two.problems["device"].to_numpy()
    assert (device[split.test] == "other").all() and len(split.test) == 40
    assert (device[np.concatenate([split.train, split.validation])] == "synthetic").all()
    grouped = make_split(two.problems, SplitSpec(group_by="geometry", seed=1))
    ids = two.problems["problem_id"].to_numpy()
    sides = [set(ids[rows]) for rows in grouped.sides().values()]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    with pytest.raises(InputError, match="device values: other, synthetic"):
        make_split(two.problems, SplitSpec(hold_out=parse_split_by("device=mi100")))


def test_split_by_network_holds_out_every_layer_shape_of_it_whoever_measured_it_first():
    from kernelbench.problem import INT_FIELDS
    from kernelbench.spaces import network_layers
    from reformer.splits import hold_out_mask

    resnet = network_layers("resnet50")
    vgg = network_layers("vgg16")

    def row(shape, batch, network):
        problem = shape.problem(batch=batch)
        return {**{c: int(getattr(problem, c)) for c in INT_FIELDS}, "network": network}

    problems = pl.DataFrame([
        row(resnet[0].shape, 1, "resnet50"),   # credited to the network itself
        row(resnet[1].shape, 5, "cpu5k"),      # the same layer shape, another batch, from a random spec
        row(resnet[2].shape, 8, "vgg16"),      # credited to another network
        row(vgg[0].shape, 1, "vgg16"),
        row(vgg[1].shape, 2, "resnet50x"),
    ])
    mask = hold_out_mask(problems, parse_split_by("network=resnet50"))
    assert mask.tolist() == [True, True, True, False, False]
    # A name that is not a built-in network matches its column only.
    assert hold_out_mask(problems, parse_split_by("network=resnet50x")).tolist() == [False] * 4 + [True]
    # Columns still combine with AND.
    assert hold_out_mask(problems, parse_split_by("network=resnet50,batch=8")).tolist() == [False, False, True, False, False]


def test_split_spec_round_trips_through_its_recorded_dict():
    spec = SplitSpec(fractions=(0.7, 0.2, 0.1), seed=3, group_by="layer",
                     hold_out=(("direction", ("bwd_data", "fwd")), ("dtype", ("fp16",))))
    recorded = {**spec.as_dict(), "sizes": {"train": 1, "validation": 1, "test": 1}}  # as config.json holds it
    assert SplitSpec.from_dict(recorded) == spec


def test_recorded_split_rebuilds_a_models_split_and_refuses_another_dataset(matrix):
    spec = SplitSpec(seed=3)
    split = make_split(matrix.problems, spec)
    recorded = {**spec.as_dict(), "sizes": {**split.sizes(), "train": 5}}  # a --train-fraction sample trained
    again = recorded_split(matrix.problems, recorded)
    assert np.array_equal(again.validation, split.validation) and np.array_equal(again.test, split.test)
    with pytest.raises(InputError, match="its validation split has 30 problems, the model.s 60"):
        recorded_split(matrix.problems[: matrix.n_problems // 2], recorded)
