"""A trained model on disk: one directory, written as a unit and verified on load.

``config.json`` holds everything needed to use the weights without the
training data: the architecture (:class:`~reformer.model.ModelConfig`), the
token design and normalisation (:class:`~reformer.features.FeatureEncoder`),
the kernel vocabulary (order = logit order), the static baseline's kernel
order, and, for provenance, the fit options, the split and the dataset's
metadata and SHA-256.  ``format_version`` is checked on load.  A model fitted on
described GPUs also keeps its training devices' measured orders
(``measured.parquet``, :mod:`reformer.borrowed`).

**A whole directory or nothing.**  :func:`save_model` writes every file
(weights, config, and the caller's extras such as ``metrics.json``) into a
sibling staging directory ``.NAME.tmp-PID``, ends with ``manifest.json`` (the
SHA-256 of every file), and only then swaps it in: rename an existing ``NAME``
aside to ``.NAME.old-PID``, rename the staging directory to ``NAME``, remove
the old one.  (A directory cannot be renamed over a non-empty one, hence the
two renames.)  What a crash leaves at each step:

* while staging: ``NAME`` untouched (the complete old model, or nothing);
* between the two renames: no ``NAME``; :func:`load_model` refuses in one line
  that names ``.NAME.old-PID`` (the complete previous model) to rename back;
* after the swap: ``NAME`` is the complete new model, ``.NAME.old-PID`` a leftover.

The next :func:`save_model` into ``NAME`` removes leftovers of dead processes.
:func:`load_model` checks every file against ``manifest.json``, so a directory
mixing files of two saves (e.g. one written by an older reformer that was
killed between files, or edited by hand) is refused, not used with the wrong
kernel names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kernelbench.errors import InputError
from kernelbench.schema import atomic_write_bytes
from reformer.borrowed import MEASURED_FILE, MeasuredOrders
from reformer.features import FeatureEncoder
from reformer.model import ModelConfig, Reformer

FORMAT = "reformer-model"
#: 2: the directory carries ``manifest.json`` and is verified against it on load.
FORMAT_VERSION = 2
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "reformer-model-manifest"
#: Writes one extra file of a model directory at the path it is given.
FileWriter = Callable[[Path], None]


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedModel:
    """A model with what it needs to score problems.

    Attributes:
        model: the network, in eval mode.
        encoder: token design and normalisation.
        kernels: kernel vocabulary, one logit each, in this order.
        static_order: kernel names by training-set wins (the static baseline).
        info: provenance saved beside the weights (fit options, split, dataset metadata).
        measured: the training devices' measured orders, borrowed for unseen devices of the same
            architecture (:mod:`reformer.borrowed`); None: the model ranks every device alone.
    """

    model: Reformer
    encoder: FeatureEncoder
    kernels: tuple[str, ...]
    static_order: tuple[str, ...]
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    measured: MeasuredOrders | None = None


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    text = _json_text(data)
    atomic_write_bytes(Path(path), lambda tmp: Path(tmp).write_text(text))


def check_model_dir(directory: str | os.PathLike[str]) -> None:
    """Check, before any work, that :func:`save_model` can write ``directory``; create nothing.

    ``directory`` may be new (its parents are created on save), an empty directory or a model
    directory (replaced as a whole on save).  Writability is tested by creating and removing a
    temporary file in the nearest existing ancestor, where the staging directory will go.

    Raises:
        InputError: ``directory`` is a file, a non-empty directory that is not a model directory
            (it would be replaced), or its parent cannot be written.
    """
    directory = Path(directory)
    if directory.exists() or directory.is_symlink():
        if not directory.is_dir():
            raise InputError(f"{directory} exists and is not a directory")
        if any(directory.iterdir()) and not _is_model_dir(directory):
            raise InputError(f"{directory} is a non-empty directory without a model in it; saving replaces the whole "
                             "directory, so choose a new or empty one")
    ancestor = directory.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot create {directory}: {ancestor} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".reformer-write-check-", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"cannot write {directory}: {ancestor} is not writable ({exc.strerror or exc})") from None


def save_model(directory: str | os.PathLike[str], trained: TrainedModel, *,
               extra: Mapping[str, FileWriter] | None = None) -> list[Path]:
    """Write the model directory as a unit (see the module docstring); return the paths of its files.

    Args:
        directory: the model directory; created, or replaced as a whole if it holds a model.
        trained: the model.
        extra: more files of the directory, file name -> ``write(path)`` (e.g. ``metrics.json``).

    Raises:
        InputError: the directory cannot be written (see :func:`check_model_dir`).
    """
    check_model_dir(directory)
    shown, directory = Path(directory), Path(os.path.abspath(directory))  # abspath: "model/.." has a name too
    directory.parent.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    staging = directory.with_name(f".{directory.name}.tmp-{pid}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        state = {k: v.detach().contiguous() for k, v in trained.model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE))
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": trained.model.config.to_json(),
            "features": trained.encoder.to_json(),
            "kernels": list(trained.kernels),
            "static_order": list(trained.static_order),
            **({} if trained.measured is None else {"measured_devices": list(trained.measured.devices)}),
            **trained.info,
        }
        (staging / CONFIG_FILE).write_text(_json_text(config))
        names = [WEIGHTS_FILE, CONFIG_FILE]
        if trained.measured is not None:
            trained.measured.write(staging / MEASURED_FILE)
            names.append(MEASURED_FILE)
        for name, write in (extra or {}).items():
            write(staging / name)
            names.append(name)
        manifest = {"format": MANIFEST_FORMAT, "files": {name: _sha256(staging / name) for name in names}}
        (staging / MANIFEST_FILE).write_text(_json_text(manifest))
        for name in (*names, MANIFEST_FILE):
            _fsync(staging / name)
        _fsync(staging)
        _swap_in(staging, directory, pid)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"cannot write {shown}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _remove_leftovers(directory)
    return [shown / name for name in (*names, MANIFEST_FILE)]


def _swap_in(staging: Path, directory: Path, pid: int) -> None:
    """Make the complete ``staging`` directory ``directory`` (the crash states are in the module docstring)."""
    if directory.exists():
        aside = directory.with_name(f".{directory.name}.old-{pid}")
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(directory, aside)
        try:
            os.rename(staging, directory)
        except BaseException:
            os.rename(aside, directory)  # put the old model back before reporting the error
            raise
        _fsync(directory.parent)
        shutil.rmtree(aside, ignore_errors=True)  # a leftover is harmless: the next save removes it
    else:
        os.rename(staging, directory)
        _fsync(directory.parent)


def _leftovers(directory: Path) -> list[tuple[Path, str, int]]:
    """Staging (``tmp``) and set-aside (``old``) directories of ``directory``: ``(path, kind, pid)``."""
    pattern = re.compile(rf"\.{re.escape(directory.name)}\.(tmp|old)-(\d+)")
    parent = directory.absolute().parent
    if not parent.is_dir():
        return []
    found = []
    for entry in parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and entry.is_dir():
            found.append((entry, match.group(1), int(match.group(2))))
    return sorted(found)


def _remove_leftovers(directory: Path) -> None:
    """Remove the leftovers of saves by processes that are gone (a live one may be saving right now)."""
    for path, _, pid in _leftovers(directory):
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_model_dir(directory: Path) -> bool:
    """Whether ``directory`` holds a model ``save_model`` may replace: its ``config.json`` says so, or (a model whose
    config was lost) its manifest is a model manifest.  Any other ``manifest.json`` (a kernelbench run's) is not."""
    for name, expected in ((CONFIG_FILE, FORMAT), (MANIFEST_FILE, MANIFEST_FORMAT)):
        try:
            data = json.loads((directory / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("format") == expected:
            return True
    return False


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_model(directory: str | os.PathLike[str]) -> TrainedModel:
    """Read a model directory written by :func:`save_model`.

    Raises:
        InputError: missing files, not a Reformer model, another format version, files that do not
            match ``manifest.json`` (a directory mixing two saves), or weights that do not match the
            architecture.
    """
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not directory.exists():
        aside = [path for path, kind, _ in _leftovers(directory) if kind == "old"]
        if aside:
            raise InputError(f"{directory} is missing: a `reformer fit` was interrupted while replacing it; the previous "
                             f"model is in {aside[-1]} (rename it to {directory.name}) or re-run `reformer fit`")
    if not config_path.is_file() or not weights_path.is_file():
        raise InputError(f"{directory} is not a model directory (needs {CONFIG_FILE} and {WEIGHTS_FILE}); train one with `reformer fit`")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{config_path}: unreadable ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(f"{config_path} is not a Reformer model configuration")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(
            f"{directory}: model format version {version}, this reformer reads version {FORMAT_VERSION}; "
            "retrain it with `reformer fit`"
        )
    _verify_manifest(directory)
    try:
        model = Reformer(ModelConfig.from_json(config["model"]))
        encoder = FeatureEncoder.from_json(config["features"])
        state = load_file(str(weights_path))
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise InputError(f"{directory}: weights or configuration are inconsistent ({exc}); retrain the model") from None
    model.eval()
    known = {"format", "format_version", "model", "features", "kernels", "static_order", "measured_devices"}
    measured_path = directory / MEASURED_FILE
    # Read on first use (a selector that never borrows never reads them); the manifest has checked the file.
    measured = None
    if measured_path.is_file():
        devices = config.get("measured_devices")
        measured = (MeasuredOrders.read(measured_path) if devices is None
                    else MeasuredOrders.open(measured_path, devices))
    return TrainedModel(
        model=model,
        encoder=encoder,
        kernels=tuple(config["kernels"]),
        static_order=tuple(config["static_order"]),
        info={k: v for k, v in config.items() if k not in known},
        measured=measured,
    )


def _verify_manifest(directory: Path) -> None:
    """Every file listed in ``manifest.json`` (weights and config at least) has the listed SHA-256.

    Raises:
        InputError: no or unreadable manifest, or a file that differs from it (one line, names the file).
    """
    path = directory / MANIFEST_FILE
    retrain = f"re-run `reformer fit ... -o {directory}`"
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"] if manifest.get("format") == MANIFEST_FORMAT else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        files = None
    if not isinstance(files, dict) or not {WEIGHTS_FILE, CONFIG_FILE} <= set(files):
        raise InputError(f"{directory}: no valid {MANIFEST_FILE}, so the directory is not known to be one whole "
                         f"model (an interrupted or hand-made save); {retrain}")
    for name, expected in files.items():
        try:
            actual = _sha256(directory / name)
        except OSError:
            actual = None
        if actual != expected:
            state = "is missing" if actual is None else f"does not match {MANIFEST_FILE}"
            raise InputError(f"{directory}: {name} {state}: the directory mixes files of different saves; {retrain}")
