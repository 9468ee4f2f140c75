"""Outcome of measuring one (problem, kernel) pair."""

from __future__ import annotations

import enum


class Status(str, enum.Enum):
    """How a (problem, kernel) measurement ended.  Only ``ok`` rows carry times."""

    OK = "ok"
    #: The output differed from the reference beyond tolerance; never timed.
    WRONG_RESULT = "wrong_result"
    #: The kernel raised (including out-of-memory); ``error`` holds the message.
    ERROR = "error"
    #: The kernel exceeded the per-kernel timeout.
    TIMEOUT = "timeout"
    #: The kernel's entry point does not exist in this build (e.g. a torch without NNPACK).
    UNAVAILABLE = "unavailable"

    def __str__(self) -> str:
        return self.value
