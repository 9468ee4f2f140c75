"""The data types the CUDA kernels run and their numpy array types: one mapping for every module of ``gpu/``."""

from __future__ import annotations

import numpy as np

#: Problem dtype -> numpy type of the device arrays (CuPy takes numpy dtypes).
NUMPY_DTYPES: dict[str, type[np.floating]] = {"fp32": np.float32, "fp16": np.float16}
#: The problem dtypes the CUDA kernels (hand-written, array-level, cuDNN) run.
GPU_DTYPES: tuple[str, ...] = tuple(NUMPY_DTYPES)
#: The applicability reason given for any other dtype.
UNSUPPORTED_DTYPE = " and ".join(GPU_DTYPES) + " only"


def numpy_dtype(dtype: str) -> type[np.floating]:
    """The numpy type of device arrays for problem dtype ``dtype``.

    Raises:
        ValueError: a dtype the CUDA kernels do not run (their ``applies`` rejects it first).
    """
    try:
        return NUMPY_DTYPES[dtype]
    except KeyError:
        raise ValueError(f"dtype {dtype!r} is not run on the GPU; {UNSUPPORTED_DTYPE}") from None
