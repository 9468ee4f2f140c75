"""torch's intra-op thread count for the length of a ``with`` block, restored afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``; the caller's count is restored on exit, also on error.

    Training sets its own count (``FitConfig.threads``); without the restore a library caller
    (a notebook, ``reformer ablate``'s latency measurement) would silently keep it.
    """
    import torch  # here, not at module level: importing this module must stay torch-free

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
