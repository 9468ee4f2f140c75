"""Shared fixtures: small real problems and helpers that build datasets."""

from __future__ import annotations

import os

import pytest

from kernelbench.problem import ConvProblem, problem_2d


@pytest.fixture
def small_problem() -> ConvProblem:
    return problem_2d(batch=2, in_channels=3, out_channels=4, in_h=9, in_w=7, filter_h=3, filter_w=3, pad_h=1, pad_w=1)


def in_ci() -> bool:
    return bool(os.environ.get("CI"))
