import json
import math
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from kernelbench.errors import InputError
from kernelbench.spaces import (
    DEFAULT_BATCH_SIZES,
    SPACE_NAMES,
    Layer,
    describe_spaces,
    load_spec,
    network_layers,
    space_problems,
)
from kernelbench.spaces.generate import draw
from kernelbench.spaces.networks import CLASSIFIER_MACS, NETWORKS
from kernelbench.spaces.spec import Bound

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
NETWORK_NAMES = ("resnet50", "vgg16", "mobilenet_v2", "inception_v3", "efficientnet_b0")

# ---------------------------------------------------------------- named spaces


def by_layer(name: str) -> dict[str, Layer]:
    return {layer.name: layer for layer in network_layers(name)}


def test_space_names_cover_smoke_every_network_and_the_union():
    assert SPACE_NAMES == ("smoke", *NETWORK_NAMES, "networks")


@pytest.mark.parametrize(
    "name, layers, distinct",
    [("resnet50", 53, 23), ("vgg16", 13, 9), ("mobilenet_v2", 52, 30), ("inception_v3", 94, 43),
     ("efficientnet_b0", 81, 46)],
)
def test_network_layer_counts_before_and_after_merging_identical_shapes(name, layers, distinct):
    merged = network_layers(name)
    assert len(NETWORKS[name][1]()) == layers
    assert len(merged) == distinct
    assert sum(layer.count for layer in merged) == layers
    assert len(space_problems(name)) == distinct * len(DEFAULT_BATCH_SIZES)


# Published multiply-accumulate counts (torchvision's model documentation, "GFLOPS", 2 decimals):
# every convolution plus the classifier must add up to them, so a missing or misshapen layer fails.
@pytest.mark.parametrize(
    "name, published_gmacs",
    [("resnet50", 4.09), ("vgg16", 15.47), ("mobilenet_v2", 0.30), ("inception_v3", 5.71), ("efficientnet_b0", 0.39)],
)
def test_network_multiply_adds_match_the_published_totals(name, published_gmacs):
    conv_macs = sum(e.count * e.problem.flops // 2 for e in space_problems(name, batch_sizes=[1]))
    assert abs((conv_macs + CLASSIFIER_MACS[name]) / 1e9 - published_gmacs) <= 0.005


def test_resnet50_known_layers():
    layers = by_layer("resnet50")
    stem = layers["conv1"].shape
    assert (stem.in_channels, stem.out_channels, stem.in_hw, stem.filter_hw, stem.stride_hw, stem.pad_hw) == (
        3, 64, (224, 224), (7, 7), (2, 2), (3, 3))
    assert stem.out_hw == (112, 112)
    squeeze = layers["layer1.1.conv1"]  # bottleneck 1x1 256 -> 64 at 56x56, in blocks 1 and 2
    assert (squeeze.shape.in_channels, squeeze.shape.out_channels, squeeze.shape.in_hw, squeeze.count) == (
        256, 64, (56, 56), 2)
    down = layers["layer2.0.downsample"].shape
    assert (down.in_channels, down.out_channels, down.stride_hw, down.out_hw) == (256, 512, (2, 2), (28, 28))
    strided = layers["layer4.0.conv2"].shape  # v1.5: the stride is on the 3x3
    assert (strided.filter_hw, strided.stride_hw, strided.in_hw, strided.out_hw) == ((3, 3), (2, 2), (14, 14), (7, 7))
    # layer1.0.downsample (1x1 64->256 at 56) has the shape of layer1.0.conv3: merged, first name kept.
    assert "layer1.0.downsample" not in layers and layers["layer1.0.conv3"].count == 4


def test_vgg16_has_13_convolutions_all_3x3_pad_1_stride_1():
    layers = NETWORKS["vgg16"][1]()
    assert len(layers) == 13
    assert {(ly.shape.filter_hw, ly.shape.pad_hw, ly.shape.stride_hw) for ly in layers} == {((3, 3), (1, 1), (1, 1))}
    assert [ly.shape.in_hw[0] for ly in layers] == [224] * 2 + [112] * 2 + [56] * 3 + [28] * 3 + [14] * 3
    assert by_layer("vgg16")["conv5_1"].count == 3


def test_mobilenet_v2_depthwise_layers_have_groups_equal_to_channels():
    layers = by_layer("mobilenet_v2")
    depthwise = [ly for name, ly in layers.items() if name.endswith(".depthwise")]
    assert sum(ly.count for ly in depthwise) == 17
    for ly in depthwise:
        s = ly.shape
        assert s.groups == s.in_channels == s.out_channels and s.filter_hw == (3, 3)
    first_s2 = layers["features.2.depthwise"].shape
    assert (first_s2.in_channels, first_s2.in_hw, first_s2.stride_hw, first_s2.out_hw) == (96, (112, 112), (2, 2),
                                                                                            (56, 56))
    last = layers["features.18"].shape
    assert (last.in_channels, last.out_channels, last.in_hw, last.filter_hw) == (320, 1280, (7, 7), (1, 1))
    # Pointwise layers are dense.
    assert all(ly.shape.groups == 1 for n, ly in layers.items() if n.endswith((".expand", ".project")))


def test_inception_v3_has_5x5_and_1x7_7x1_branches_at_299():
    layers = by_layer("inception_v3")
    stem = layers["Conv2d_1a_3x3"].shape
    assert (stem.in_hw, stem.stride_hw, stem.pad_hw, stem.out_hw) == ((299, 299), (2, 2), (0, 0), (149, 149))
    five = layers["Mixed_5b.branch5x5_2"].shape
    assert (five.in_channels, five.out_channels, five.in_hw, five.filter_hw, five.pad_hw) == (
        48, 64, (35, 35), (5, 5), (2, 2))
    one_by_seven = layers["Mixed_6b.branch7x7_2"].shape
    assert (one_by_seven.filter_hw, one_by_seven.pad_hw, one_by_seven.in_hw, one_by_seven.out_hw) == (
        (1, 7), (0, 3), (17, 17), (17, 17))
    seven_by_one = layers["Mixed_6e.branch7x7_3"].shape
    assert (seven_by_one.in_channels, seven_by_one.out_channels, seven_by_one.filter_hw, seven_by_one.pad_hw) == (
        192, 192, (7, 1), (3, 0))
    assert layers["Mixed_7c.branch_pool"].shape.in_channels == 2048 and layers["Mixed_7c.branch_pool"].shape.in_hw == (
        8, 8)


def test_efficientnet_b0_has_depthwise_5x5_blocks():
    layers = by_layer("efficientnet_b0")
    dw5 = {n: ly.shape for n, ly in layers.items() if n.endswith(".depthwise") and ly.shape.filter_hw == (5, 5)}
    assert set(dw5) >= {"features.3.0.depthwise", "features.5.0.depthwise", "features.6.0.depthwise"}
    for s in dw5.values():
        assert s.groups == s.in_channels == s.out_channels and s.pad_hw == (2, 2)
    first = dw5["features.3.0.depthwise"]
    assert (first.in_channels, first.in_hw, first.stride_hw, first.out_hw) == (144, (56, 56), (2, 2), (28, 28))
    assert layers["features.6.1.depthwise"].count == 3  # 1152 channels, 5x5 at 7x7, blocks 6.1-6.3
    se = layers["features.6.1.se.fc1"].shape  # squeeze-excite: 1x1 on the pooled 1x1 map, to in/4 channels
    assert (se.in_channels, se.out_channels, se.in_hw) == (1152, 48, (1, 1))


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_every_space_is_valid_distinct_and_labelled(name):
    space = space_problems(name)
    assert space
    assert len({e.problem.problem_id for e in space}) == len(space)
    for e in space:
        p = e.problem
        assert min(p.out_h, p.out_w) >= 1 and p.in_channels % p.groups == 0 and p.out_channels % p.groups == 0
        assert (p.direction, p.dtype, p.layout, p.spatial_dims) == ("fwd", "fp32", "NCHW", 2)
        assert e.layer and e.count >= 1
        assert e.network == name if name != "networks" else e.network in NETWORK_NAMES


def test_networks_is_the_deduplicated_union_keeping_the_first_network():
    union = space_problems("networks")
    ids = {}
    for name in NETWORK_NAMES:
        for e in space_problems(name):
            ids.setdefault(e.problem.problem_id, name)
    assert [e.problem.problem_id for e in union] == list(ids)
    assert {e.problem.problem_id: e.network for e in union} == ids
    assert len(union) < sum(len(space_problems(n)) for n in NETWORK_NAMES)  # some shapes are shared
    # MobileNet-V2 and EfficientNet-B0 share their stem: it is labelled with the first.
    stem = [e for e in union if e.layer == "features.0"]
    assert {e.network for e in stem} == {"mobilenet_v2"}


def test_batch_sizes_override_in_batch_major_order_and_dtype_propagates():
    space = space_problems("vgg16", batch_sizes=[2, 16, 4], dtype="fp16")
    assert [e.problem.batch for e in space] == [2] * 9 + [16] * 9 + [4] * 9
    assert [e.layer for e in space[:9]] == [e.layer for e in space[9:18]]
    assert {e.problem.dtype for e in space} == {"fp16"}


@pytest.mark.parametrize("bad", [[], [0], [2, -1], [True], [1.5]])
def test_bad_batch_sizes_are_rejected(bad):
    with pytest.raises(InputError, match="batch sizes must be positive integers"):
        space_problems("resnet50", batch_sizes=bad)


def test_unknown_space_name_lists_the_valid_ones():
    with pytest.raises(InputError) as info:
        space_problems("resnet51")
    message = str(info.value)
    assert "'resnet51'" in message and all(name in message for name in SPACE_NAMES)


def test_smoke_is_small_and_covers_every_kind_of_convolution():
    smoke = space_problems("smoke")
    assert 0 < len(smoke) <= 20
    problems = [e.problem for e in smoke]
    assert max(p.batch for p in problems) <= 4 and min(p.batch for p in problems) == 1
    assert max(max(p.in_channels, p.out_channels) for p in problems) <= 64
    assert max(max(p.in_h, p.in_w) for p in problems) <= 28
    filters = {(p.filter_h, p.filter_w) for p in problems}
    assert {(1, 1), (3, 3), (5, 5), (7, 7), (1, 7), (7, 1)} <= filters
    assert any(p.stride_h == 2 and p.filter_h == 3 for p in problems)
    assert any(p.dilation_h > 1 for p in problems)
    assert any(p.is_depthwise and p.filter_h == 5 for p in problems)
    assert any(p.is_depthwise and p.filter_h == 3 for p in problems)
    assert any(1 < p.groups < p.in_channels for p in problems)  # grouped, not depthwise
    assert any(p.in_h != p.in_w for p in problems)
    assert sum(p.flops for p in problems) < 0.2e9  # the whole space is a fraction of a GFLOP


def test_smoke_takes_batch_sizes_like_the_other_spaces():
    smoke = space_problems("smoke", batch_sizes=[1, 2])
    assert len(smoke) == 2 * len(space_problems("smoke"))
    assert Counter(e.problem.batch for e in smoke) == {1: 18, 2: 18}


def test_describe_spaces_counts_what_space_problems_returns():
    described = describe_spaces()
    assert [name for name, _, _ in described] == list(SPACE_NAMES)
    for name, text, count in described:
        assert text and "\n" not in text
        assert count == len(space_problems(name))


# ---------------------------------------------------------------- spec files


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def spec_error(path: Path) -> str:
    with pytest.raises(InputError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message[len(f"{path}: "):]


GRID = """
name = "g"
[grid]
batch = [1, 2]
in_channels = 8
out_channels = [8, 16]
in_hw = [9, 16]
filter = [1, 3]
pad = "same"
stride = [1, 2]
"""


def test_grid_is_the_cartesian_product_in_field_order_last_field_fastest(tmp_path):
    spec, entries = load_spec(write(tmp_path, GRID))
    assert spec.problems == len(entries) == 2 * 2 * 2 * 2 * 2
    p0, p1, p2 = (e.problem for e in entries[:3])
    assert (p0.batch, p0.out_channels, p0.in_h, p0.filter_h, p0.stride_h) == (1, 8, 9, 1, 1)
    assert (p1.filter_h, p1.stride_h) == (1, 2)  # stride varies fastest
    assert (p2.filter_h, p2.pad_h, p2.stride_h) == (3, 1, 1)  # "same" pad for 3x3 is 1
    assert entries[-1].problem.batch == 2
    assert [e.layer for e in entries[:2]] == ["grid.0", "grid.1"]
    assert {e.network for e in entries} == {"g"}
    assert spec.skipped == ()


def test_example_specs_load():
    counts = {}
    for path in sorted(EXAMPLES.iterdir()):
        spec, entries = load_spec(path)
        assert spec.problems == len(entries) > 0
        json.dumps(spec.as_dict())  # manifest-ready
        counts[path.name] = len(entries)
    assert counts == {"grid.json": 64, "grid.toml": 48, "mixed.toml": 76, "random.toml": 40}


def test_json_and_toml_describe_the_same_space(tmp_path):
    toml_entries = load_spec(write(tmp_path, GRID))[1]
    document = {"name": "g", "grid": {"batch": [1, 2], "in_channels": 8, "out_channels": [8, 16], "in_hw": [9, 16],
                                      "filter": [1, 3], "pad": "same", "stride": [1, 2]}}
    json_entries = load_spec(write(tmp_path, json.dumps(document), "spec.json"))[1]
    assert [e.problem for e in json_entries] == [e.problem for e in toml_entries]


def test_invalid_grid_combinations_are_skipped_and_counted(tmp_path):
    text = """
name = "skips"
[grid]
batch = 1
in_channels = [12, 16]
out_channels = 24
groups = [1, 3]       # 16 is not divisible by 3
in_hw = [2, 8]        # 2 is too small for an unpadded 5x5
filter = [5]
pad = [0, 2, "same"]  # "same" is 2 for a 5x5: duplicate
"""
    spec, entries = load_spec(write(tmp_path, text))
    skipped = dict(spec.skipped)
    assert skipped == {"channels not divisible by groups": 6, "output size <= 0": 3, "duplicate problem": 6}
    assert len(entries) == 2 * 2 * 2 * 3 - sum(skipped.values()) == 9
    assert spec.as_dict()["skipped"] == skipped and spec.as_dict()["problems"] == 9


def test_depthwise_grid_sets_groups_and_output_channels(tmp_path):
    text = 'name = "dw"\n[grid]\ndepthwise = true\nbatch = 1\nin_channels = [8, 32]\nin_hw = 14\nfilter = [3, 5]\n' \
           'pad = "same"\n'
    _, entries = load_spec(write(tmp_path, text))
    assert [(e.problem.groups, e.problem.out_channels, e.problem.pad_h) for e in entries] == [
        (8, 8, 1), (8, 8, 2), (32, 32, 1), (32, 32, 2)]
    assert all(e.problem.is_depthwise for e in entries)


def test_several_grid_parts_and_a_random_part_are_concatenated_in_order(tmp_path):
    _, entries = load_spec(EXAMPLES / "mixed.toml")
    sections = [e.layer.split(".")[0] for e in entries]
    assert sections == ["grid[0]"] * 24 + ["grid[1]"] * 32 + ["random[0]"] * 20
    assert all(e.problem.is_depthwise for e in entries[24:])


RANDOM = """
name = "r"
[random]
count = 30
seed = {seed}
[random.bounds]
batch = [1, 16]
in_channels = {{ range = [8, 128], step = 8 }}
out_channels = [4, 100]
in_hw = [5, 40]
filter = {{ choices = [1, 3, 5] }}
pad = {{ choices = [0, "same"] }}
stride = {{ range = [1, 2], scale = "linear" }}
"""


def test_random_sample_is_deterministic_valid_and_within_bounds(tmp_path):
    first = load_spec(write(tmp_path, RANDOM.format(seed=3)))[1]
    again = load_spec(write(tmp_path, RANDOM.format(seed=3)))[1]
    other = load_spec(write(tmp_path, RANDOM.format(seed=4)))[1]
    ids = [e.problem.problem_id for e in first]
    assert ids == [e.problem.problem_id for e in again]
    assert ids != [e.problem.problem_id for e in other]
    assert len(set(ids)) == 30
    for e in first:
        p = e.problem
        assert 1 <= p.batch <= 16 and 8 <= p.in_channels <= 128 and p.in_channels % 8 == 0
        assert 4 <= p.out_channels <= 100 and 5 <= p.in_h == p.in_w <= 40
        assert p.filter_h in (1, 3, 5) and p.pad_h in (0, (p.filter_h - 1) // 2) and p.stride_h in (1, 2)
    assert [e.layer for e in first[:2]] == ["random.0", "random.1"]


def test_random_sample_is_pinned_across_python_versions_and_machines(tmp_path):
    # A change here means every published random spec would produce a different space.
    entries = load_spec(write(tmp_path, RANDOM.format(seed=3)))[1]
    got = [(p.batch, p.in_channels, p.out_channels, p.in_h, p.filter_h, p.pad_h, p.stride_h)
           for p in (e.problem for e in entries[:4])]
    assert got == PINNED_SEED_3


PINNED_SEED_3 = [(1, 32, 13, 17, 3, 0, 1), (10, 16, 8, 40, 3, 1, 1), (6, 8, 31, 31, 3, 1, 2), (1, 64, 26, 9, 1, 0, 1)]


def test_log_scale_draws_are_log_uniform_and_linear_draws_uniform():
    rng = random.Random(0)
    log = [draw(Bound("range", (1, 1023), "log"), rng) for _ in range(4000)]
    assert min(log) >= 1 and max(log) <= 1023
    below_32 = sum(v < 32 for v in log) / len(log)
    assert abs(below_32 - math.log(32) / math.log(1024)) < 0.03  # half the draws below 32, not 3 %
    linear = [draw(Bound("range", (0, 3)), rng) for _ in range(4000)]
    assert set(linear) == {0, 1, 2, 3} and max(Counter(linear).values()) < 1100
    stepped = {draw(Bound("range", (16, 64), "linear", step=16), rng) for _ in range(200)}
    assert stepped == {16, 32, 48, 64}
    assert {draw(Bound("choices", (5, "same")), rng) for _ in range(50)} == {5, "same"}
    assert draw(Bound("fixed", (7,)), rng) == 7


def test_random_part_that_cannot_reach_its_count_is_an_error(tmp_path):
    text = 'name = "r"\n[random]\ncount = 5\n[random.bounds]\nbatch = 1\nin_channels = 8\nout_channels = [8, 9]\n' \
           'in_hw = 8\nfilter = 3\n'
    message = spec_error(write(tmp_path, text))
    assert re.fullmatch(r"random: only 2 distinct valid problems in 250 draws, but count = 5; "
                        r"widen random\.bounds or lower count", message), message


# ---------------------------------------------------------------- spec errors


def test_unreadable_spec_file(tmp_path):
    assert spec_error(tmp_path / "missing.toml").startswith("cannot read the spec file (No such file")
    assert spec_error(write(tmp_path, "x", "spec.yaml")) == "a spec file must end in .toml or .json"
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00name")
    assert spec_error(path) == "not a UTF-8 text file"


def test_invalid_toml_and_json(tmp_path):
    assert spec_error(write(tmp_path, 'name = "x"\n[grid\n')).startswith("invalid TOML: ")
    assert spec_error(write(tmp_path, '{"name": "x",}', "spec.json")).startswith("invalid JSON: ")
    assert spec_error(write(tmp_path, "[1, 2]", "spec.json")) == (
        "the top level must be a table (TOML) or an object (JSON)")


BASE = 'name = "x"\n[grid]\nbatch = 1\nin_channels = 8\nout_channels = 8\nin_hw = 8\nfilter = 3\n'


@pytest.mark.parametrize(
    "text, expected",
    [
        ('nme = "x"\n', "unknown key 'nme'; known keys: name, description, dtype, layout, direction, grid, random"),
        (BASE + "filtr = 3\n", "grid: unknown key 'filtr'; known keys: batch, "),
        (BASE.replace('name = "x"\n', ""), "name: missing; give the space a name"),
        ('name = ""\n' + BASE[11:], "name: expected a non-empty one-line string"),
        ('name = "x"\n', "missing a [grid] or [random] section; see docs/spec-format.md"),
        (BASE.replace("filter = 3\n", ""), "grid: missing key 'filter' (or filter_h and filter_w)"),
        (BASE.replace("out_channels = 8\n", ""), "grid: missing key 'out_channels'"),
        (BASE.replace("filter = 3", "filter_h = [3, 0]\nfilter_w = 3"),
         "grid.filter_h: expected a list of positive integers, got [3, 0]"),
        (BASE.replace("filter = 3", "filter_h = [3]"), "grid: filter_h needs filter_w too (or use filter for square)"),
        (BASE + "in_h = 8\nin_w = 8\n", "grid: give either in_hw or in_h and in_w, not both"),
        (BASE + "pad = [-1]\n", 'grid.pad: expected a list of non-negative integers or "same", got [-1]'),
        (BASE + 'pad = ["half"]\n', 'grid.pad: expected a list of non-negative integers or "same"'),
        (BASE + "stride = []\n", "grid.stride: expected a list of positive integers, got []"),
        (BASE + "stride = [1.0]\n", "grid.stride: expected a list of positive integers, got [1.0]"),
        (BASE + "dilation = true\n", "grid.dilation: expected a list of positive integers, got True"),
        (BASE + "depthwise = true\ngroups = 2\n", "grid: depthwise = true sets groups = in_channels; remove groups"),
        (BASE + 'depthwise = "yes"\n', "grid.depthwise: expected true or false"),
        ('dtype = "fp64"\n' + BASE, "dtype: expected one of fp32, fp16, bf16, int8, got 'fp64'"),
        ('layout = "NCDHW"\n' + BASE, "layout: expected one of NCHW, NHWC, got 'NCDHW'"),
        ('name = "x"\ngrid = 3\n', "grid: expected a table"),
        ('name = "x"\ngrid = []\n', "grid: expected a table or a non-empty list of tables"),
        (BASE.replace("batch = 1", "batch = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]").replace(
            "in_hw = 8", "in_hw = " + str(list(range(8, 1008)))).replace("filter = 3", "filter = " + str(
                list(range(1, 101)))), "describes 1,000,000 problems"),
        (BASE.replace("in_hw = 8", "in_hw = 2").replace("filter = 3", "filter = 5"),
         "the spec yields no valid problem (output size <= 0: 1); check sizes against filter"),
        (BASE.replace("batch = 1", "batch = 99999999999"),
         "grid.batch: 99999999999 is above 2147483647, the largest value the dataset's int32 columns hold"),
        (BASE.replace("in_hw = 8", "in_hw = [8, 2147483648]"), "grid.in_hw: 2147483648 is above 2147483647"),
    ],
)
def test_bad_spec_content_names_the_key(tmp_path, text, expected):
    if "1,000,000" in expected:  # 10 x 1000 x 100 = 1,000,000 is still allowed; one more batch is not
        text = text.replace("10]", "10, 11]")
        expected = "describes 1,100,000 problems; the limit is 1,000,000"
    message = spec_error(write(tmp_path, text))
    assert message.startswith(expected), message


RANDOM_BASE = 'name = "r"\n[random]\ncount = 3\n[random.bounds]\nbatch = 1\nin_channels = 8\nout_channels = 8\n' \
              'in_hw = 8\nfilter = 3\n'


@pytest.mark.parametrize(
    "text, expected",
    [
        (RANDOM_BASE.replace("count = 3\n", ""), "random: missing key 'count'"),
        (RANDOM_BASE.replace("count = 3", "count = 0"), "random.count: expected a positive integer, got 0"),
        (RANDOM_BASE.replace("count = 3", "count = 3\nseed = -1"), "random.seed: expected a non-negative integer"),
        (RANDOM_BASE.replace("count = 3", "count = 3\nsamples = 2"), "random: unknown key 'samples'"),
        ('name = "r"\n[random]\ncount = 3\n', "random.bounds: missing table"),
        (RANDOM_BASE.replace("in_hw = 8", "in_hw = [40, 7]"), "random.bounds.in_hw: lo 40 is greater than hi 7"),
        (RANDOM_BASE.replace("in_hw = 8", "in_hw = [7, 8, 9]"),
         "random.bounds.in_hw: expected [lo, hi] with positive integers lo <= hi, got [7, 8, 9]"),
        (RANDOM_BASE + 'pad = {range = [0, 2], scale = "log"}\n',
         'random.bounds.pad.range: a log-scale range needs lo >= 1; use scale = "linear"'),
        (RANDOM_BASE + 'stride = {range = [1, 2], scale = "cubic"}\n',
         'random.bounds.stride.scale: expected "log" or "linear", got \'cubic\''),
        (RANDOM_BASE.replace("in_channels = 8", "in_channels = {range = [8, 100], step = 8}"),
         "random.bounds.in_channels.range: lo and hi must be multiples of step = 8"),
        (RANDOM_BASE + "stride = {choices = []}\n", "random.bounds.stride.choices: expected a non-empty list"),
        (RANDOM_BASE + "stride = {pick = [1, 2]}\n", "random.bounds.stride: expected {choices = [...]} or"),
        (RANDOM_BASE + 'stride = "2"\n', "random.bounds.stride: expected one of positive integers"),
        (RANDOM_BASE.replace("filter = 3", "filtr = 3"), "random.bounds: unknown key 'filtr'"),
        (RANDOM_BASE.replace("batch = 1", "batch = 99999999999"), "random.bounds.batch: 99999999999 is above 2147483647"),
        (RANDOM_BASE.replace("batch = 1", "batch = [1, 99999999999]"), "random.bounds.batch: 99999999999 is above"),
        (RANDOM_BASE.replace("batch = 1", "batch = {range = [1, 99999999999], scale = 'linear'}"),
         "random.bounds.batch.range: 99999999999 is above"),
        (RANDOM_BASE.replace("batch = 1", "batch = {choices = [1, 99999999999]}"),
         "random.bounds.batch.choices: 99999999999 is above"),
        (RANDOM_BASE.replace("[random]", "[random]\ndepthwise = true").replace("filter = 3", "filter = 3\ngroups = 2"),
         "random: depthwise = true sets groups = in_channels"),
    ],
)
def test_bad_random_spec_names_the_key(tmp_path, text, expected):
    message = spec_error(write(tmp_path, text))
    assert message.startswith(expected), message


def test_spec_as_dict_is_json_and_pins_the_file_content(tmp_path):
    path = write(tmp_path, RANDOM.format(seed=3))
    spec, entries = load_spec(path)
    record = json.loads(json.dumps(spec.as_dict()))
    assert record["name"] == "r" and record["file"] == str(path) and record["problems"] == len(entries) == 30
    assert record["parts"][0]["bounds"]["in_channels"] == {"range": [8, 128], "scale": "log", "step": 8}
    assert record["parts"][0]["bounds"]["filter"] == {"choices": [1, 3, 5]}
    path.write_text(RANDOM.format(seed=3) + "\n# edited\n")
    assert load_spec(path)[0].sha256 != spec.sha256
