"""Which GPU a MIOpen find-db file belongs to.

MIOpen names its databases ``<arch><CUs>`` (``Handle::GetDbBasename`` in
``src/include/miopen/handle.hpp``): ``_<decimal>`` for at most 64 compute
units, bare lower-case hex above (``gfx906_60``, ``gfx90878`` = gfx908 with
0x78 = 120 CUs), then ``.HIP`` or ``.OpenCL`` and ``.fdb.txt``.  Architecture
names have three characters after ``gfx`` up to gfx9 (``gfx803``, ``gfx90a``)
and four from gfx10 on (``gfx1030``), which makes the split unambiguous.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from kernelbench.errors import InputError

_ARCH = r"gfx(?:1[0-9]{3}|[1-9][0-9a-f]{2})"
_FILE_NAME = re.compile(rf"(?P<arch>{_ARCH})(?:_(?P<dec>[0-9]+)|(?P<hex>[0-9a-f]+))(?:\.|$)")
_BACKEND = re.compile(r"\.(HIP|OpenCL)\.")

#: Product names where (arch, CUs) identifies one product; others are described by arch and CUs.
KNOWN_NAMES = {
    ("gfx908", 120): "AMD Instinct MI100",
    ("gfx90a", 110): "AMD Instinct MI250X (one GCD)",
    ("gfx942", 304): "AMD Instinct MI300X",
    ("gfx942", 228): "AMD Instinct MI300A",
}


@dataclasses.dataclass(frozen=True)
class MiopenDevice:
    """The GPU a find-db was measured on: architecture, compute units, MIOpen backend (HIP/OpenCL, if known)."""

    arch: str
    num_cu: int
    backend: str | None = None

    @property
    def label(self) -> str:
        """The dataset's ``device`` value, e.g. ``miopen:gfx908:120``."""
        return f"miopen:{self.arch}:{self.num_cu}"

    @property
    def name(self) -> str:
        return KNOWN_NAMES.get((self.arch, self.num_cu), f"AMD {self.arch} ({self.num_cu} CUs)")

    def as_metadata(self) -> dict[str, Any]:
        return {"arch": self.arch, "num_cu": self.num_cu, "name": self.name, "backend": self.backend,
                "label": self.label}


def device_from_file_name(path: str | Path) -> MiopenDevice | None:
    """The device encoded in a find-db file name, or ``None`` if the name does not follow MIOpen's scheme."""
    name = Path(path).name
    match = _FILE_NAME.match(name)
    if match is None:
        return None
    num_cu = int(match["dec"]) if match["dec"] is not None else int(match["hex"], 16)
    backend = _BACKEND.search(name)
    return MiopenDevice(match["arch"], num_cu, backend[1] if backend else None)


def resolve_device(path: str | Path, *, arch: str | None = None, num_cu: int | None = None) -> MiopenDevice:
    """The device of ``path``: ``arch``/``num_cu`` where given, else from the file name.

    Raises:
        InputError: ``arch`` is not a gfx name, ``num_cu`` < 1, or the file name
            does not say what ``arch``/``num_cu`` leave open.
    """
    if arch is not None and not re.fullmatch(r"gfx[0-9a-f]+", arch):
        raise InputError(f"--arch {arch!r}: expected an AMD GPU architecture such as gfx908 or gfx90a")
    if num_cu is not None and num_cu < 1:
        raise InputError(f"--num-cu {num_cu}: expected a positive number of compute units")
    found = device_from_file_name(path)
    if found is None and (arch is None or num_cu is None):
        raise InputError(
            f"cannot tell the GPU from the file name {Path(path).name!r} (MIOpen names find-dbs <arch>_<CUs> or "
            "<arch><CUs in hex>, e.g. gfx906_60.HIP.fdb.txt, gfx90878.HIP.fdb.txt); pass --arch and --num-cu"
        )
    return MiopenDevice(
        arch if arch is not None else found.arch,
        num_cu if num_cu is not None else found.num_cu,
        found.backend if found is not None else None,
    )
