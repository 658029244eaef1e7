"""The public plugin API: what plugins register and what the host hands them.

Everything a plugin (first-party or third-party) registers or receives is
defined here; the toolkit that methods use to compute masks lives beside it
(:mod:`robustprune.plugin.masks`, :mod:`robustprune.plugin.channels`,
:mod:`robustprune.plugin.allocation`, :mod:`robustprune.plugin.sensitivity`).
This module imports no torch, so suites and the pytest plugin stay cheap to
import; tensors appear only in type hints.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch
    from torch import nn

    from .channels import ChannelGroup

__all__ = [
    "AUTO_FAMILY",
    "NOMINAL",
    "SEVERITY",
    "DEFAULT_METRICS",
    "DatasetRequest",
    "DatasetSpec",
    "DataSplits",
    "IGNORE_INDEX",
    "ImageSet",
    "Metric",
    "ModelSpec",
    "PixelShift",
    "PruneContext",
    "PruneMethod",
    "PublishedShift",
    "Recipe",
    "ShiftGroup",
    "ShiftParam",
    "ShiftedSet",
    "TASKS",
    "TensorShift",
    "check_name",
    "describe_sequence",
    "hookimpl",
    "mask_problem",
]


# --------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    """How a network is trained; replayed (compressed to fewer epochs) on retraining.

    ``milestones`` and ``warmup`` are fractions of ``epochs`` so that the same
    schedule can be replayed over a shorter retrain ("learning-rate rewinding").
    ``retrain_epochs`` is the length of each retrain after a prune step when the
    suite sets none (``None``: replay all ``epochs``, as the paper does for most
    networks). Augmentations: ``crop`` pads 4 pixels and crops back (CIFAR),
    ``crop_flip`` adds a horizontal flip, ``resized_crop_flip`` is ImageNet's
    random-resized crop (area 8-100 %, aspect 3/4-4/3) plus flip.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    warmup: float = 0.0
    augment: str = "crop_flip"  # one of AUGMENTATIONS
    retrain_epochs: int | None = None

    AUGMENTATIONS = ("none", "crop", "crop_flip", "resized_crop_flip")

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if any(not 0 < m < 1 for m in self.milestones):
            problems.append(f"milestones are fractions of the epochs in (0, 1), got {self.milestones}")
        if not 0 <= self.warmup < 1:
            problems.append(f"warmup is a fraction of the epochs in [0, 1), got {self.warmup}")
        if self.augment not in self.AUGMENTATIONS:
            problems.append(f"augment must be one of {', '.join(self.AUGMENTATIONS)}, got {self.augment!r}")
        if self.retrain_epochs is not None and self.retrain_epochs < 0:
            problems.append(f"retrain_epochs must be >= 0 or None, got {self.retrain_epochs}")
        if problems:
            raise ValueError("invalid recipe: " + "; ".join(problems))

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed; unknown fields are an error naming the valid ones."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - valid)
        if unknown:
            raise ValueError(
                f"unknown recipe field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(valid))}"
            )
        if "milestones" in changes:
            changes["milestones"] = tuple(changes["milestones"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """A network architecture.

    ``build(num_classes, input_shape)`` returns a freshly initialised
    ``nn.Module`` taking ``(N, C, H, W)`` float tensors; the host seeds torch
    before calling it. ``recipe`` is the default training recipe.
    """

    name: str
    build: Callable[[int, tuple[int, int, int]], nn.Module]
    recipe: Recipe = field(default_factory=Recipe)
    description: str = ""
    version: str | None = None


# --------------------------------------------------------------------------- datasets


TASKS = ("classification", "segmentation")
"""What a dataset's labels are: one class per image (``(N,)``), or one class per pixel (``(N, H, W)``)."""

IGNORE_INDEX = 255
"""The label of pixels that neither training nor scoring counts (Pascal VOC's object borders)."""


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 ``(N, H, W, 3)`` and integer labels: ``(N,)`` classes, or ``(N, H, W)`` per-pixel
    classes (segmentation masks, :data:`IGNORE_INDEX` where a pixel is not labelled)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W, 3), got shape {self.images.shape}")
        if str(self.images.dtype) != "uint8":
            raise ValueError(f"images must be uint8, got {self.images.dtype}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        import numpy as np  # an ImageSet holds arrays: numpy is there already

        shape = np.shape(self.labels)
        if len(shape) not in (1, 3) or (len(shape) == 3 and shape[1:] != self.images.shape[1:3]):
            raise ValueError(f"labels must be (N,) classes or (N, H, W) masks the size of the images "
                             f"{self.images.shape[1:3]}, got shape {shape}")

    @property
    def dense(self) -> bool:
        """Whether the labels are per-pixel masks."""
        import numpy as np

        return len(np.shape(self.labels)) == 3

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class DataSplits:
    """What a dataset plugin returns: train and test images plus normalisation.

    ``published_shift(shift_name, param)``, if given, lets the dataset supply a
    shifted test set read from disk (e.g. the published CIFAR-10-C arrays for
    ``contrast@3``, or CIFAR-10.1 for ``cifar10_1@6``). The host asks it before
    generating any pixel shift: it returns a :class:`ShiftedSet` to use instead,
    ``None`` to let the shift be generated as usual, or raises (with the path
    and the fix) when published data that should be there is missing or broken.
    It must be deterministic; its images must have the test images' height,
    width and channels. Like ``load``, it must stay cheap to call again: the
    host re-reads the set rather than keeping every one in memory.
    """

    train: ImageSet
    test: ImageSet
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...] = ()
    published_shift: Callable[[str, Any], ShiftedSet | None] | None = field(default=None, compare=False)
    task: str = "classification"
    """One of :data:`TASKS`; ``segmentation`` datasets label every pixel (``(N, H, W)`` masks)."""
    metric: str | None = None
    """The registered :class:`Metric` that scores networks on this data (``None``: the task's default,
    ``top1`` for classification, ``miou`` for segmentation). A suite may ask for another (``Suite.metric``)."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        dense = self.task == "segmentation"
        if dense and not 0 < self.num_classes <= IGNORE_INDEX:
            raise ValueError(f"a segmentation dataset has 1 to {IGNORE_INDEX} classes ({IGNORE_INDEX} labels "
                             f"unlabelled pixels), got num_classes={self.num_classes}")
        for split, images in (("train", self.train), ("test", self.test)):
            if images.dense != dense:
                want = "(N, H, W) masks" if dense else "(N,) classes"
                raise ValueError(f"a {self.task} dataset's {split} labels must be {want}, got "
                                 f"{'masks' if images.dense else 'one label per image'}")
            if dense:
                problem = mask_problem(images.labels, self.num_classes)
                if problem:
                    raise ValueError(f"{split} masks: {problem}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        _, h, w, c = self.test.images.shape
        return (c, h, w)

    @property
    def metric_name(self) -> str:
        """The metric this data is scored with when the suite asks for none."""
        return self.metric or DEFAULT_METRICS[self.task]


@dataclass(frozen=True)
class ShiftedSet:
    """A shifted test set read from disk: its own images *and labels* (CIFAR-10.1 has both).

    ``source`` says where it came from (a file path); the report shows it.
    Accuracy on it is measured against its own labels, so excess error stays
    err(shifted set) - err(nominal test set) even when the two sets differ.
    """

    test: ImageSet
    source: str


@dataclass(frozen=True)
class DatasetRequest:
    """What the host asks of a dataset plugin: where data lives and how to split it."""

    seed: int = 0
    root: Path | None = None
    download: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset. ``load(request)`` returns :class:`DataSplits`.

    ``version`` changes whenever the produced data changes; it enters the
    store keys of everything trained or evaluated on it.
    """

    name: str
    load: Callable[[DatasetRequest], DataSplits]
    description: str = ""
    version: str | None = None
    check: Callable[[DatasetRequest], str | None] | None = None
    """Optional and cheap (no decoding): ``None`` if ``load`` will find its data, else a
    message naming the path looked at and how to point robustprune at the data.
    Suites use it through :func:`robustprune.skip_unless_data` to skip cleanly."""


def mask_problem(masks: np.ndarray, num_classes: int) -> str | None:
    """What is wrong with segmentation masks' values (``None``: every pixel is a class or :data:`IGNORE_INDEX`)."""
    import numpy as np

    masks = np.asarray(masks)
    if masks.dtype.kind not in "iu":
        return f"mask values must be integers, got {masks.dtype}"
    bad = (masks < 0) | ((masks >= num_classes) & (masks != IGNORE_INDEX))
    if bad.any():
        image = int(np.flatnonzero(bad.reshape(len(masks), -1).any(1))[0])
        return (f"image {image} has the label {int(masks[image][bad[image]][0])}: labels are 0..{num_classes - 1}, "
                f"or {IGNORE_INDEX} for unlabelled pixels")
    return None


# --------------------------------------------------------------------------- metrics

DEFAULT_METRICS = {"classification": "top1", "segmentation": "miou"}
"""The metric of each task when neither the dataset nor the suite names one."""


@dataclass(frozen=True)
class Metric:
    """A score where higher is better, in [0, 1], made of per-sample statistics that add up.

    ``statistics(outputs, labels, num_classes)`` turns a batch of the network's
    outputs (logits ``(N, C)``, or ``(N, C, H, W)`` for dense tasks) and its
    labels into an ``(N, K)`` tensor: what each sample contributes (top-1: 1 if
    right; mean IoU: the image's flattened confusion matrix). The host stores
    these rows, so re-scoring, bootstrap resamples and re-reads need no
    inference. ``score(totals, count)`` maps summed rows (``totals`` of shape
    ``(..., K)``, numpy, any leading dimensions) over ``count`` samples to the
    score, vectorized. Both must be deterministic; the statistics must be exact
    integers (counts) or the bootstrap's sums stop being bit-identical across
    machines.

    Prune potential, excess error (1 - score), Δe, gates and reports all read
    the score; ``label`` names it in table headers (``top-1 acc``, ``mIoU``).
    ``tasks`` lists the :data:`TASKS` whose labels ``statistics`` understands.
    """

    name: str
    label: str
    statistics: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
    score: Callable[[np.ndarray, int], np.ndarray]
    tasks: tuple[str, ...] = ("classification",)
    description: str = ""
    version: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ValueError(f"metric {self.name!r}: tasks must be among {', '.join(TASKS)}, got {self.tasks}")


# --------------------------------------------------------------------------- shifts


@dataclass(frozen=True)
class ShiftParam:
    """The parameter written after ``@`` in a shift name, with its valid range."""

    name: str
    kind: type = float
    minimum: float = -math.inf
    maximum: float = math.inf

    def parse(self, text: str) -> int | float:
        """Parse and validate; raise ``ValueError`` saying what is valid."""
        try:
            value = self.kind(float(text)) if self.kind is int and float(text).is_integer() else self.kind(text)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} must be {self.describe()}, got {text!r}") from None
        if not (self.minimum <= value <= self.maximum) or (isinstance(value, float) and math.isnan(value)):
            raise ValueError(f"{self.name} must be {self.describe()}, got {text}")
        return value

    def describe(self) -> str:
        """What a valid value is, for messages: ``an integer from 1 to 5``."""
        kind = "an integer" if self.kind is int else "a number"
        if math.isinf(self.maximum):
            return f"{kind} >= {self.minimum:g}"
        return f"{kind} from {self.minimum:g} to {self.maximum:g}"


NOMINAL = "nominal"
"""The identity shift: the nominal test set, always evaluated and always first."""

SEVERITY = ShiftParam("severity", int, 1, 5)
"""The corruption severity of Hendrycks & Dietterich: an integer 1-5."""


@dataclass(frozen=True)
class PixelShift:
    """A shift applied to each uint8 ``(H, W, 3)`` image before normalisation.

    ``apply(image, param, seed)`` must be deterministic given ``seed`` and
    picklable (a module-level function or a ``functools.partial`` of one), since
    the host runs it in worker processes. Results are cached in the store.
    """

    name: str
    apply: Callable[[np.ndarray, Any, int], np.ndarray]
    param: ShiftParam = SEVERITY
    description: str = ""
    version: str | None = None
    families: Mapping[str, Callable[[np.ndarray, Any, int], np.ndarray]] = field(default_factory=dict, hash=False)
    """Named parameterisations of the same shift (``{"cifar10-c": ..., "imagenet-c": ...}``), each an
    ``apply``-like function. A suite's ``shift_family`` names one; else :attr:`default_family` picks one
    by image size. The family used enters the store keys and the report's shift sources."""
    default_family: Callable[[int, int], str | None] | None = None
    """``(height, width)`` of a dataset's images -> the family used when the suite names none
    (``None``: :attr:`apply`)."""
    check_ready: Callable[[str | None], None] | None = None
    """Called once per family a run uses, before any work, with the family's name (``None`` for
    :attr:`apply`): raises :class:`~robustprune.plugin.errors.MissingDependencyError` naming what this
    machine lacks (a library, a file) and how to install it."""

    def family_for(self, requested: str | None, height: int, width: int) -> str | None:
        """The family that makes this shift for ``height`` x ``width`` images: ``requested`` (a suite's
        ``shift_family``; ``None`` or ``"auto"`` for the default), else :attr:`default_family`'s choice.
        ``None`` when the shift has no families (its :attr:`apply` is used). Raises ``ValueError`` for a
        requested family this shift does not have."""
        if not self.families:
            return None
        if requested not in (None, AUTO_FAMILY):
            self.check_family(requested)
            return requested
        chosen = self.default_family(height, width) if self.default_family is not None else None
        if chosen is not None and chosen not in self.families:
            raise ValueError(f"shift {self.name!r}: default_family chose {chosen!r}, which is not one of its "
                             f"families ({', '.join(sorted(self.families))})")
        return chosen

    def check_family(self, requested: str) -> None:
        """Raise ``ValueError`` naming this shift's families if it has families and ``requested`` (neither
        ``"auto"`` nor one of them) is not one."""
        if self.families and requested != AUTO_FAMILY and requested not in self.families:
            raise ValueError(f"shift {self.name!r} has no parameter family {requested!r}; its families: "
                             f"{', '.join(sorted(self.families))} (or {AUTO_FAMILY!r}: chosen by image size)")

    def implementation(self, family: str | None) -> Callable[[np.ndarray, Any, int], np.ndarray]:
        """The function that makes the shift under ``family`` (:attr:`apply` for ``None``)."""
        return self.apply if family is None else self.families[family]


AUTO_FAMILY = "auto"
"""``Suite.shift_family``'s default: each shift's family chosen by the dataset's image size."""


@dataclass(frozen=True)
class TensorShift:
    """A shift applied to a normalized ``(N, C, H, W)`` float batch.

    ``apply(batch, param, seeds)`` gets one integer seed per image (an int64
    numpy array) and must be deterministic given them.
    """

    name: str
    apply: Callable[[torch.Tensor, Any, np.ndarray], torch.Tensor]
    param: ShiftParam = ShiftParam("eps", float, 0.0)
    description: str = ""
    version: str | None = None


@dataclass(frozen=True)
class PublishedShift:
    """A shift that exists only as a published test set, such as CIFAR-10.1 (``cifar10_1@6``).

    No transformation of the nominal test set can make it: a dataset supplies
    it through :attr:`DataSplits.published_shift`, and evaluating it on a
    dataset that does not is an error naming the dataset.
    """

    name: str
    param: ShiftParam
    description: str = ""
    version: str | None = None


@dataclass(frozen=True)
class ShiftGroup:
    """A named set of shifts sharing one parameter: ``noise@3`` means each member at 3."""

    name: str
    members: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))


# --------------------------------------------------------------------------- methods


@dataclass
class PruneContext:
    """What the host hands a prune method besides the network and the ratio.

    ``masks`` holds the current mask of every prunable weight (all True for the
    parent; earlier steps' masks in a cascade). ``data`` is a seeded batch of
    normalized training inputs for data-informed methods (else ``None``), as
    many as :meth:`PruneMethod.data_size` asks for.
    """

    masks: dict[str, torch.Tensor]
    generator: torch.Generator
    example_input: torch.Tensor
    data: torch.Tensor | None = None
    network: nn.Module | None = field(default=None, repr=False)
    """The network being pruned (what :attr:`channel_groups` analyses)."""
    groups: list[ChannelGroup] | None = field(default=None, repr=False)
    """The network's channel groups when already known (tests, a host that caches them); else analysed on first
    use of :attr:`channel_groups`."""
    # robustprune 0.1 spelled the two fields above _network and _groups; accepted still, so contexts that
    # plugins' own tests build by hand keep working
    _network: InitVar[nn.Module | None] = None
    _groups: InitVar[list[ChannelGroup] | None] = None

    def __post_init__(self, _network: nn.Module | None, _groups: list[ChannelGroup] | None) -> None:
        if self.network is None:
            self.network = _network
        if self.groups is None:
            self.groups = _groups

    @classmethod
    def for_network(
        cls,
        network: nn.Module,
        example_input: torch.Tensor,
        *,
        masks: dict[str, torch.Tensor] | None = None,
        seed: int = 0,
        data: torch.Tensor | None = None,
    ) -> PruneContext:
        """The context the host would build: for testing a method outside a suite.

        ``masks`` defaults to keeping every prunable weight (the parent).
        """
        import torch

        from .masks import full_masks

        return cls(
            masks=full_masks(network) if masks is None else masks,
            generator=torch.Generator().manual_seed(seed),
            example_input=example_input,
            data=data,
            network=network,
        )

    @property
    def channel_groups(self) -> list[ChannelGroup]:
        """The network's prunable channel groups (see :mod:`robustprune.plugin.channels`)."""
        if self.groups is None:
            from .channels import channel_groups  # torch: only when a structured method asks

            if self.network is None:
                raise ValueError("this PruneContext knows no network: build it with PruneContext.for_network(...)")
            self.groups = channel_groups(self.network, self.example_input)
        return self.groups


class PruneMethod:
    """Base class for prune methods (subclassing is optional; the attributes are the contract).

    ``structured`` and ``data_informed`` declare what the method is; the host
    and the report act on them (data for ``data_informed``, compaction and a
    latency measurement for ``structured``), never on a method's name.

    ``prune(network, ratio, context)`` returns a boolean mask (True = keep) for
    every prunable weight, keyed like ``context.masks`` (parameter names of the
    weights of Conv2d and Linear layers). The host checks that the masks remove
    ``ratio`` of the prunable weights within 0.5 % (relative), keeps weights
    that earlier cascade steps removed at zero, and raises a clear error if not.
    It must not modify ``network``.
    """

    name: str = ""
    structured: bool = False
    data_informed: bool = False
    data_batch_size: int = 0
    version: str | None = None
    description: str = ""

    def params(self) -> dict[str, Any]:
        """Settings that change the result; they enter the store key."""
        return {}

    def data_size(self, network: nn.Module, example_input: torch.Tensor) -> int:
        """How many training inputs a data-informed method wants for ``network`` (at most ``data_batch_size``).

        The host calls this before each prune step of a data-informed method
        and passes that many seeded training inputs in ``context.data``
        (fewer if the training set is smaller). Override it when the size
        follows from the network, as SiPP's and PFP's sample-size bound does;
        whatever it depends on must be in :meth:`params`.
        """
        return int(self.data_batch_size)

    def prune(self, network: nn.Module, ratio: float, context: PruneContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def check_name(kind: str, name: str) -> None:
    """Names are what users type in suites and on the command line: keep them simple."""
    if not name or not all(ch.isalnum() or ch in "_-." for ch in name) or "@" in name:
        raise ValueError(
            f"invalid {kind} name {name!r}: use letters, digits, '_', '-' or '.' (no '@', no spaces)"
        )


def describe_sequence(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "(none)"
