"""Turn a parsed :class:`SpaceSpec` into problems: grids by Cartesian product, random parts by seeded draws.

Combinations that cannot be a convolution (an output size <= 0, channels not
divisible by groups) are skipped and counted, as are duplicates; the order of
the result is fixed by the spec alone, because the sweep shards by index.

Random draws use only :meth:`random.Random.random`, whose sequence for a given
integer seed Python guarantees across versions and machines; integers are
derived from it here rather than with ``randint``/``choice``, whose algorithms
Python does not promise to keep.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections import Counter
from collections.abc import Iterator, Mapping

from kernelbench.errors import InputError
from kernelbench.problem import ConvProblem, output_size, problem_2d
from kernelbench.spaces.layers import SpaceEntry
from kernelbench.spaces.spec import FIELD_TARGETS, SAME, Bound, GridPart, RandomPart, SpaceSpec, Value

SKIP_OUTPUT = "output size <= 0"
SKIP_GROUPS = "channels not divisible by groups"
SKIP_DUPLICATE = "duplicate problem"
#: A random part gives up after this many draws per requested problem (bounds that rarely give a valid problem).
DRAWS_PER_PROBLEM = 50


def generate(spec: SpaceSpec) -> tuple[SpaceSpec, list[SpaceEntry]]:
    """All problems of ``spec`` in order, and the spec with ``problems``/``skipped`` filled in.

    Raises:
        InputError: the spec yields no valid problem, or a random part cannot find
            ``count`` distinct valid problems within its bounds.
    """
    skipped: Counter[str] = Counter()
    seen: set[str] = set()
    entries: list[SpaceEntry] = []
    for part, section in zip(spec.parts, spec.sections):
        if isinstance(part, GridPart):
            candidates = _grid_choices(part)
            budget = None
        else:
            candidates = _random_choices(part)
            budget = part.count
        found = 0
        draws = 0
        for choice in candidates:
            draws += 1
            fields = _problem_fields(choice, depthwise=part.depthwise)
            if isinstance(fields, str):
                skipped[fields] += 1
                continue
            problem = _problem(fields, spec, section)
            if problem.problem_id in seen:
                skipped[SKIP_DUPLICATE] += 1
                continue
            seen.add(problem.problem_id)
            entries.append(SpaceEntry(problem, spec.name, f"{section}.{found}"))
            found += 1
            if budget is not None and found == budget:
                break
        if budget is not None and found < budget:
            raise InputError(
                f"{spec.path}: {section}: only {found} distinct valid problems in {draws} draws, but count = "
                f"{budget}; widen {section}.bounds or lower count"
            )
    if not entries:
        why = ", ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items())) or "nothing to combine"
        raise InputError(f"{spec.path}: the spec yields no valid problem ({why}); check sizes against filter, "
                         "pad, stride and dilation, and channels against groups")
    done = dataclasses.replace(spec, problems=len(entries), skipped=tuple(sorted(skipped.items())))
    return done, entries


def _grid_choices(part: GridPart) -> Iterator[dict[str, Value]]:
    names = [name for name, _ in part.axes]
    for combo in itertools.product(*(values for _, values in part.axes)):
        yield dict(zip(names, combo))


def _random_choices(part: RandomPart) -> Iterator[dict[str, Value]]:
    rng = random.Random(part.seed)
    for _ in range(DRAWS_PER_PROBLEM * part.count):
        yield {name: draw(bound, rng) for name, bound in part.bounds}


def draw(bound: Bound, rng: random.Random) -> Value:
    """One value from ``bound``, consuming one ``rng.random()`` unless the value is fixed."""
    if bound.kind == "fixed":
        return bound.values[0]
    u = rng.random()  # in [0, 1)
    if bound.kind == "choices":
        return bound.values[min(int(u * len(bound.values)), len(bound.values) - 1)]
    lo, hi = bound.values
    assert isinstance(lo, int) and isinstance(hi, int)
    step = bound.step
    if bound.scale == "log":
        # Log-uniform on the continuous interval [lo, hi + step), rounded down to a multiple of step:
        # P(k) is proportional to log((k + step) / k).
        value = int(math.exp(math.log(lo) + u * (math.log(hi + step) - math.log(lo)))) // step * step
    else:
        value = lo + int(u * ((hi - lo) // step + 1)) * step
    return min(max(value, lo), hi)


def _problem_fields(choice: Mapping[str, Value], *, depthwise: bool) -> dict[str, int] | str:
    """Problem fields for one combination of spec fields, or the reason it is not a valid convolution."""
    fields: dict[str, Value] = {"pad_h": 0, "pad_w": 0, "stride_h": 1, "stride_w": 1,
                                "dilation_h": 1, "dilation_w": 1, "groups": 1}
    for name, value in choice.items():
        for target in FIELD_TARGETS[name]:
            fields[target] = value
    if depthwise:
        fields["groups"] = fields["in_channels"]
        fields.setdefault("out_channels", fields["in_channels"])
    for axis in "hw":
        if fields[f"pad_{axis}"] == SAME:
            # Half padding: size-preserving at stride 1 for odd effective filters.
            fields[f"pad_{axis}"] = int(fields[f"dilation_{axis}"]) * (int(fields[f"filter_{axis}"]) - 1) // 2
    ints = {k: int(v) for k, v in fields.items()}
    if ints["in_channels"] % ints["groups"] or ints["out_channels"] % ints["groups"]:
        return SKIP_GROUPS
    for axis in "hw":
        size = output_size(ints[f"in_{axis}"], ints[f"filter_{axis}"], ints[f"pad_{axis}"], ints[f"stride_{axis}"],
                           ints[f"dilation_{axis}"])
        if size <= 0:
            return SKIP_OUTPUT
    return ints


def _problem(fields: Mapping[str, int], spec: SpaceSpec, section: str) -> ConvProblem:
    try:
        return problem_2d(**fields, dtype=spec.dtype, layout=spec.layout, direction=spec.direction)
    except InputError as exc:
        # Every field was range-checked when parsing, so this is a combination the checks above missed.
        raise InputError(f"{spec.path}: {section}: {exc}") from None
