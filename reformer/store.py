"""A trained model on disk: ``weights.safetensors`` + ``config.json`` in one directory.

``config.json`` holds everything needed to use the weights without the
training data: the architecture (:class:`~reformer.model.ModelConfig`), the
token design and normalisation (:class:`~reformer.features.FeatureEncoder`),
the kernel vocabulary (order = logit order), the static baseline's kernel
order, and, for provenance, the fit options, the split and the dataset's
metadata and SHA-256.  ``format_version`` is checked on load.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kernelbench.errors import InputError
from kernelbench.schema import atomic_write_bytes
from reformer.features import FeatureEncoder
from reformer.model import ModelConfig, Reformer

FORMAT = "reformer-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedModel:
    """A model with what it needs to score problems.

    Attributes:
        model: the network, in eval mode.
        encoder: token design and normalisation.
        kernels: kernel vocabulary, one logit each, in this order.
        static_order: kernel names by training-set wins (the static baseline).
        info: provenance saved beside the weights (fit options, split, dataset metadata).
    """

    model: Reformer
    encoder: FeatureEncoder
    kernels: tuple[str, ...]
    static_order: tuple[str, ...]
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write_bytes(Path(path), lambda tmp: Path(tmp).write_text(text))


def save_model(directory: str | os.PathLike[str], trained: TrainedModel) -> None:
    """Write ``weights.safetensors`` and ``config.json`` into ``directory`` (created if needed).

    Raises:
        InputError: the directory cannot be written.
    """
    directory = Path(directory)
    state = {k: v.detach().contiguous() for k, v in trained.model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": trained.model.config.to_json(),
        "features": trained.encoder.to_json(),
        "kernels": list(trained.kernels),
        "static_order": list(trained.static_order),
        **trained.info,
    }
    write_json(directory / CONFIG_FILE, config)


def load_model(directory: str | os.PathLike[str]) -> TrainedModel:
    """Read a model directory written by :func:`save_model`.

    Raises:
        InputError: missing files, not a Reformer model, another format version, or weights
            that do not match the architecture.
    """
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
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
    try:
        model = Reformer(ModelConfig.from_json(config["model"]))
        encoder = FeatureEncoder.from_json(config["features"])
        state = load_file(str(weights_path))
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise InputError(f"{directory}: weights or configuration are inconsistent ({exc}); retrain the model") from None
    model.eval()
    known = {"format", "format_version", "model", "features", "kernels", "static_order"}
    return TrainedModel(
        model=model,
        encoder=encoder,
        kernels=tuple(config["kernels"]),
        static_order=tuple(config["static_order"]),
        info={k: v for k, v in config.items() if k not in known},
    )
