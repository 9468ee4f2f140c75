"""Pick kernels for problems with a trained model: ``Selector.load(dir).select(problem)``.

A problem is a mapping with the dataset's column names (missing optional
fields take :data:`kernelbench.problem.DEFAULTS`) or a
:class:`~kernelbench.problem.ConvProblem`.  ``applicable`` restricts the
choice to the named kernels; names the model does not know are ignored.
Without ``applicable`` the model ranks its *candidates*: the kernels its saved
candidate rule offers for the problem (:mod:`reformer.candidates`).

A model trained on several devices reads the device a problem runs on (device
tokens, :mod:`reformer.device_features`): ``select(..., device=LABEL)``, or a
``device`` column for the batch methods.  A device it was not trained on is
described by the package's descriptor table, or by ``descriptors`` given to
the selector (``--device-spec FILE``).  On such a device, a problem that a
training device of the same architecture measured is ranked by that device's
measured order first, then by the model (:mod:`reformer.borrowed`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from kernelbench.devices import DeviceDescriptor
from kernelbench.errors import InputError
from kernelbench.problem import ConvProblem
from reformer.borrowed import Borrowed, borrow_scores, first_order, sources
from reformer.candidates import CONTEXT_INPUTS, CandidateRule, rule_from_info
from reformer.inference import FastReformer
from reformer.store import TrainedModel, load_model

ProblemLike = Mapping[str, Any] | ConvProblem
#: Contexts whose candidate masks a Selector keeps (cleared when full: a bound for long-lived processes).
MASK_CACHE_SIZE = 4096


def problem_row(problem: ProblemLike) -> dict[str, Any]:
    """The dataset columns of one problem (validated; defaults filled in).

    Raises:
        InputError: unknown or missing fields, or invalid values.
    """
    if not isinstance(problem, ConvProblem):
        problem = ConvProblem.from_mapping(problem)
    return problem.as_row()


class Selector:
    """Scores the kernels of a trained model's vocabulary for problems."""

    def __init__(self, trained: TrainedModel, *, model_dir: str | None = None,
                 descriptors: Mapping[str, DeviceDescriptor] | None = None) -> None:
        """``descriptors``: devices by label, for a model with device tokens, beyond the package's table.

        Raises: InputError: the model has no candidate rule (an older model directory): refit it.
        """
        self.trained = trained
        self.model = trained.model.eval()
        self.kernels = trained.kernels
        self._index = {k: i for i, k in enumerate(self.kernels)}
        # Every score below comes from the pre-arranged inference path (reformer.inference), not self.model.
        self.fast = FastReformer.from_trained(trained, descriptors)
        self.rule: CandidateRule = rule_from_info(trained.info, model_dir=model_dir)
        self._masks: dict[tuple[Any, ...], tuple[np.ndarray, bool]] = {}
        self._seen: dict[tuple[Any, ...], bool] = {}
        self._sources: dict[str, list[str]] = {}

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], *,
             descriptors: Mapping[str, DeviceDescriptor] | None = None) -> Selector:
        """Load a model directory written by ``reformer fit`` (``descriptors``: see :meth:`__init__`).

        Raises:
            InputError: not a model directory, or of an incompatible format version.
        """
        return cls(load_model(model_dir), model_dir=str(model_dir), descriptors=descriptors)

    @property
    def reads_device(self) -> bool:
        """The model has device tokens: every problem needs its device label."""
        return bool(self.trained.encoder.device_tokens)


    def mask(self, applicable: Iterable[str] | None) -> np.ndarray:
        """Boolean mask over the vocabulary for kernel names (all True for ``None``).

        Raises:
            InputError: ``applicable`` names no kernel the model knows.
        """
        if applicable is None:
            return np.ones(len(self.kernels), dtype=bool)
        names = list(applicable)
        mask = np.zeros(len(self.kernels), dtype=bool)
        mask[[self._index[k] for k in names if k in self._index]] = True
        if not mask.any():
            raise InputError(
                f"none of the applicable kernels ({', '.join(names) or 'none given'}) is known to the model; "
                f"it knows: {', '.join(self.kernels)}"
            )
        return mask

    def candidates(self, columns: Mapping[str, Any], *,
                   descriptors: Mapping[str, DeviceDescriptor] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The candidate rule on problems given as columns: ``(mask bool [n, n_kernels], context_seen bool [n])``;
        ``descriptors`` describe more devices (the selector's own win where both name one).

        Raises:
            InputError: a problem of a direction the model never saw.
        """
        return self.rule.masks(columns, self.kernels, descriptors={**(descriptors or {}), **self.fast.descriptors})

    def candidate_mask(self, problem: ProblemLike, *, device: str | None = None) -> tuple[np.ndarray, bool]:
        """One problem's candidates (bool ``[n_kernels]``) and whether its context was seen in training.

        ``device`` is the label of the device the problem runs on (a model trained on several devices
        offers that device's kernels; None: the union over its training devices, flagged unseen).
        Cached per context: the rule depends only on the problem's coarse properties (and, for ``applies``
        rules, is evaluated per problem).
        """
        if self.rule.kind == "applies":  # the kernels' own applies, on the problem itself
            problem = problem if isinstance(problem, ConvProblem) else ConvProblem.from_mapping(problem)
            mask, seen = self.rule.applies_mask(problem, self.kernels), self._applies_seen(problem)
        else:
            row = problem.as_row() if isinstance(problem, ConvProblem) else problem
            if device is not None:
                row = {**row, "device": device}
            key = self.rule.cache_key(row)
            if key not in self._masks:
                masks, seens = self.rule.masks({k: [v] for k, v in row.items()}, self.kernels,
                                               descriptors=self.fast.descriptors)
                if len(self._masks) >= MASK_CACHE_SIZE:
                    self._masks.clear()
                self._masks[key] = (masks[0], bool(seens[0]))
            mask, seen = self._masks[key]
        if not mask.any():
            row = problem.as_row() if isinstance(problem, ConvProblem) else problem
            raise InputError(f"no kernel of the model is a candidate for this problem ({self.rule.describe(row)}); "
                             f"it knows: {', '.join(self.kernels)}")
        return mask, seen

    def _applies_seen(self, problem: ConvProblem) -> bool:
        """For an ``applies`` rule: whether the problem's context was seen in training (cached per context)."""
        # Read the fields directly: as_row() would cost as much again as the lookup on every selection.
        key = tuple(getattr(problem, name, None) for name in CONTEXT_INPUTS)
        if key not in self._seen:
            if len(self._seen) >= MASK_CACHE_SIZE:
                self._seen.clear()
            self._seen[key] = bool(self.rule.applies_seen({k: [v] for k, v in problem.as_row().items()})[0])
        return self._seen[key]

    def context_seen(self, problem: ProblemLike, *, device: str | None = None) -> bool:
        """Whether the model saw a training problem of ``problem``'s context (:meth:`candidate_mask`'s flag);
        False too where the model has no candidate for it (e.g. a direction it never saw), so that a caller
        naming the applicable kernels itself is still told.

        Raises:
            InputError: the problem is invalid.
        """
        problem = problem if isinstance(problem, ConvProblem) else ConvProblem.from_mapping(problem)
        if self.rule.kind == "applies":
            return self._applies_seen(problem)
        try:
            return self.candidate_mask(problem, device=device)[1]
        except InputError:  # the problem is valid (parsed above): its direction was never seen, or nothing applies
            return False

    def logits(self, columns: Mapping[str, Any], *,
               descriptors: Mapping[str, DeviceDescriptor] | None = None) -> np.ndarray:
        """Unmasked logits float32 ``[n, n_kernels]`` for problems given as columns (with ``device`` for a model
        that reads it); ``descriptors`` describe more devices (the selector's own win where both name one).

        Raises:
            InputError: the model reads the device and it is missing or undescribed.
        """
        return self.fast.logits(self.fast.encode(columns, descriptors=descriptors))

    def ranking_scores(self, columns: Mapping[str, Any], *,
                       descriptors: Mapping[str, DeviceDescriptor] | None = None) -> tuple[np.ndarray, Borrowed]:
        """The scores the selector ranks by, float ``[n, n_kernels]`` (higher is better; mask before use), and
        which problems borrowed a measured order: :meth:`logits`, with the measured kernels of a problem that a
        training device of the same architecture measured raised above all others, fastest first, on a device
        the model was not trained on (columns need ``problem_id`` and ``device`` for that; see
        :mod:`reformer.borrowed`).

        Raises:
            InputError: as :meth:`logits`.
        """
        logits = self.logits(columns, descriptors=descriptors if self.reads_device else None)
        n = len(logits)
        if self.trained.measured is None or "device" not in columns or "problem_id" not in columns:
            return logits, Borrowed(source=("",) * n)
        return borrow_scores(logits, columns["problem_id"], columns["device"], self.trained.measured,
                             descriptors=self.described(descriptors))

    def borrowed_order(self, problem: ConvProblem, device: str | None) -> tuple[list[str], str]:
        """The measured order ``problem`` borrows on ``device`` (kernel names, fastest first) and the device it
        comes from; ``([], "")`` when it borrows none (see :mod:`reformer.borrowed`)."""
        if self.trained.measured is None or not self._borrows(device):
            return [], ""
        found, source = first_order(self.trained.measured, self._sources[device], problem.problem_id)
        return ([], "") if found is None else ([self.kernels[j] for j in found], source)

    def _borrows(self, device: str | None) -> bool:
        """Whether problems on ``device`` may borrow a measured order (cached per device)."""
        if self.trained.measured is None or device is None:
            return False
        if device not in self._sources:
            self._sources[device] = sources(self.trained.measured, device, descriptors=self.described())
        return bool(self._sources[device])

    def described(self, extra: Mapping[str, DeviceDescriptor] | None = None) -> dict[str, DeviceDescriptor]:
        """Devices by label as the encoder sees them (:func:`reformer.device_features.find_descriptor`): the
        training devices' own descriptors win, then the selector's, then ``extra``; the package's table is the
        fallback of every lookup."""
        return {**(extra or {}), **self.fast.descriptors, **dict(self.trained.encoder.devices)}

    @staticmethod
    def _with_borrowed(ranked: list[tuple[str, float]], order: list[str], top: int) -> list[tuple[str, float]]:
        """``ranked`` (every kernel the mask allows, by the model) with ``order``'s kernels first, in that order, cut
        to ``top``."""
        place = {k: i for i, k in enumerate(order)}
        first = sorted((entry for entry in ranked if entry[0] in place), key=lambda entry: place[entry[0]])
        return (first + [entry for entry in ranked if entry[0] not in place])[:top]

    def unknown_kernels(self, names: Iterable[str]) -> list[str]:
        """The names that are not in the model's vocabulary."""
        return [k for k in names if k not in self._index]

    def probabilities(self, columns: Mapping[str, Any], applicable: np.ndarray | None = None) -> np.ndarray:
        """Probabilities float32 ``[n, n_kernels]`` for problems given as columns.

        ``applicable`` is a boolean ``[n, n_kernels]`` mask (None: all kernels);
        masked kernels get probability 0.  Rows with no applicable kernel are all NaN.
        """
        return self.fast.probabilities(self.fast.encode(columns), applicable)

    def select(self, problem: ProblemLike, applicable: Iterable[str] | None = None, top: int = 1, *,
               device: str | None = None) -> list[tuple[str, float]]:
        """The ``top`` most probable kernels for one problem: ``[(kernel, probability), ...]``, best first.

        Without ``applicable``, the model's candidates for the problem (on ``device``, see
        :meth:`candidate_mask`) are ranked (probabilities are the softmax over them); with it, the named kernels.

        ``device`` also feeds the device tokens of a model trained on several devices (which then needs it).
        On a device the model was not trained on, a problem a training device of the same architecture
        measured lists that device's measured kernels first, fastest first (:mod:`reformer.borrowed`); the
        probabilities stay the model's.

        Raises:
            InputError: the problem is invalid, ``applicable`` names no known kernel, the problem's
                direction was never seen in training, or the model reads the device and it is missing or
                undescribed.
        """
        if top < 1:
            raise InputError(f"--top must be >= 1, got {top}")
        borrows = self._borrows(device)
        if applicable is None or borrows:
            problem = problem if isinstance(problem, ConvProblem) else ConvProblem.from_mapping(problem)
        mask = self.candidate_mask(problem, device=device)[0] if applicable is None else self.mask(applicable)
        order = self.borrowed_order(problem, device)[0] if borrows else []
        if not order:
            return self.fast.select_one(problem, mask, top=top, device=device)
        return self._with_borrowed(self.fast.select_one(problem, mask, top=len(self.kernels), device=device),
                                   order, top)

    def select_many(
        self,
        problems: Sequence[ProblemLike],
        applicable: Sequence[Iterable[str] | None] | None = None,
        top: int = 1,
        *,
        device: str | None = None,
    ) -> list[list[tuple[str, float]]]:
        """:meth:`select` for many problems in one batched pass; ``applicable`` is per problem (or None); every
        problem runs on ``device``."""
        if top < 1:
            raise InputError(f"--top must be >= 1, got {top}")
        if not problems:
            return self.fast.select_many(problems, None, top=top, device=device)
        per_problem = applicable if applicable is not None else [None] * len(problems)
        borrows = self._borrows(device)
        # As in select: a problem is parsed (validated) only where its candidates or a borrowed order need it.
        parsed = [p if isinstance(p, ConvProblem) or (names is not None and not borrows)
                  else ConvProblem.from_mapping(p) for p, names in zip(problems, per_problem)]
        masks = [self.candidate_mask(problem, device=device)[0] if names is None else self.mask(names)
                 for problem, names in zip(parsed, per_problem)]
        orders = [self.borrowed_order(p, device)[0] for p in parsed] if borrows else []
        if not any(orders):
            return self.fast.select_many(parsed, np.stack(masks), top=top, device=device)
        ranked = self.fast.select_many(parsed, np.stack(masks), top=len(self.kernels), device=device)
        return [self._with_borrowed(entries, order, top) for entries, order in zip(ranked, orders)]
