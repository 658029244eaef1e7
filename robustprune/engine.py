"""Plans a suite's grid and runs it lazily, sharing and caching every piece of work.

Data flows one way: dataset -> parent (trained once per model x dataset) ->
each method's cascade of prune + retrain -> every network evaluated once per
shift -> accuracy curves. Each arrow is cached in the store under a key made
of everything that determines it, so a second run trains nothing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .api import ImageSet, PruneContext, Recipe, ShiftedSet
from .data import PreparedData, content_hash, default_workers, generate_pixel_shifts, prepare
from .datasource import dataset_request
from .evaluation import accuracy, predict
from .gate import resolve_entries
from .metrics import bisect_last_qualifying
from .pruning import PruneError, full_masks, validate_masks
from .registry import Registry
from .shifts import NOMINAL, NOMINAL_SHIFT, Shift, ShiftEntry, all_members, image_seeds, parse_shifts
from .features import case_features
from .shift_mix import mix_spec, resolve_mix, training_inputs
from .similarity import case_similarity
from .store import Store, make_key
from .suite import Suite
from .training import train

_COSTS_VERSION = 1  # bump when what costs.py counts or how it times changes
_LATENCY_BATCH = 64

ProgressFn = Callable[[str], None]

_SHIFT_CACHE_BYTES = 2 * 1024**3  # keep normalized shifted sets in memory up to this size


class CaseError(RuntimeError):
    """A case could not be computed (a plugin raised, a ratio was unreachable, ...)."""


@dataclass(frozen=True)
class CaseKey:
    """One method x model x dataset combination."""

    method: str
    model: str
    dataset: str

    @property
    def id(self) -> str:
        return f"{self.method}-{self.model}-{self.dataset}"


@dataclass(frozen=True)
class RunOptions:
    """How a run executes. ``threads`` is torch's intra-op thread count: results depend on it
    (parallel reductions add in a different order), so it is fixed, enters the store keys, and
    defaults to 1: the same suite then gives the same numbers serially, under xdist and on Ray."""

    store: Store
    device: str = "cpu"
    threads: int = 1
    workers: int = field(default_factory=default_workers)
    data_root: Path | None = None
    download: bool = False
    progress: ProgressFn = lambda message: None


@dataclass
class NetworkRecord:
    """A network of a curve: the parent or one cascade step."""

    key: str
    ratio: float  # requested (0 for the parent)
    achieved: float
    state: dict[str, torch.Tensor] | None = None  # only while needed
    masks: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class _Published:
    """What the engine keeps of a published shifted set: its labels, where it came from, a content digest."""

    labels: torch.Tensor
    source: str
    digest: str  # enters the evaluation keys: a changed file on disk is evaluated again


@dataclass
class CaseResult:
    """Accuracy curves of one case on nominal and every shift."""

    case: CaseKey
    method: dict[str, Any]
    ratios: tuple[float, ...]
    achieved: tuple[float, ...]
    parent_key: str
    step_keys: tuple[str, ...]
    accuracy: dict[str, list[float]]  # shift label -> [parent, step 1, ...]
    seconds: float = 0.0
    # [parent, step 1, ...]: params, macs, and for structured methods latency (s) and speedup vs the parent
    costs: list[dict[str, Any]] = field(default_factory=list)
    # shift label -> "generated" or "published: <path>" (CIFAR-10-C arrays, CIFAR-10.1 on disk)
    shift_sources: dict[str, str] = field(default_factory=dict)
    # beyond accuracy (empty unless the suite asks): see robustprune.similarity and robustprune.features
    similarity: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)

    def parent_accuracy(self, shift: str = NOMINAL) -> float:
        return self.accuracy[shift][0]

    def accuracies(self, shift: str = NOMINAL) -> list[float]:
        return self.accuracy[shift][1:]


class Engine:
    """Runs one suite: validated at construction, computed lazily per case."""

    def __init__(self, suite: Suite, registry: Registry, options: RunOptions):
        self.suite = suite
        self.registry = registry
        self.options = options
        self.models = {name: registry.model(name) for name in suite.models}
        self.datasets = {name: registry.dataset(name) for name in suite.datasets}
        self.methods = {name: registry.method(name) for name in suite.methods}
        for field_name in ("recipes", "parent_checkpoints"):
            for model in getattr(suite, field_name):
                if model not in self.models:
                    raise ValueError(
                        f"{field_name} names model {model!r}, which the suite does not use; suite models: "
                        f"{', '.join(suite.models)}"
                    )
        self.recipes: dict[str, Recipe] = {
            name: reg.item.recipe.replace(**suite.recipe).replace(**suite.recipes.get(name, {}))
            for name, reg in self.models.items()
        }
        torch.set_num_threads(options.threads)
        self.shift_entries: list[ShiftEntry] = parse_shifts(suite.shifts, registry)
        # robust training: the mix's members and the held-out shifts become two more report columns
        self.mix = resolve_mix(suite, registry)
        if self.mix is not None:
            self.shift_entries += self.mix.entries()
        self._train_pools: dict[str, Any] = {}
        self.shifts: list[Shift] = all_members(self.shift_entries)
        self._data: dict[str, PreparedData] = {}
        self._parents: dict[tuple[str, str, int], NetworkRecord | CaseError] = {}  # (model, dataset, seed)
        self._results: dict[CaseKey, CaseResult | CaseError] = {}
        self._shifted: dict[tuple[str, str], torch.Tensor] = {}  # normalized inputs, by (dataset, shift)
        self._pixel_images: dict[tuple[str, str], np.ndarray] = {}  # uint8 sets loaded but not yet normalized
        self._shifted_bytes = 0
        self._published: dict[tuple[str, str], _Published | None] = {}
        if suite.gate is not None:  # a gated entry the suite does not evaluate is a collection error
            resolve_entries(suite.gate, {e.label: [m.label for m in e.members] for e in self.shift_entries})

    # ------------------------------------------------------------------ plan

    def cases(self) -> list[CaseKey]:
        """Every method x model x dataset, then each pruned checkpoint on its model (and dataset)."""
        return [
            CaseKey(method, model, dataset)
            for dataset in self.suite.datasets
            for model in self.suite.models
            for method in self.suite.methods
        ] + [
            CaseKey(name, entry.model, dataset)
            for dataset in self.suite.datasets
            for name, entry in self.suite.pruned_checkpoints.items()
            if entry.dataset in (None, dataset)
        ]

    def computed(self) -> dict[CaseKey, CaseResult | CaseError]:
        return dict(self._results)

    def _progress(self, case: str, message: str) -> None:
        self.options.progress(f"[{case}] {message}")

    # ------------------------------------------------------------------ data

    def data(self, name: str) -> PreparedData:
        if name not in self._data:
            reg = self.datasets[name]
            request = dataset_request(self.suite, name, data_root=self.options.data_root,
                                      download=self.options.download)
            splits = reg.item.load(request)
            key = make_key(
                {"dataset": reg.identity(), "params": dict(request.params), "seed": request.seed,
                 "content": content_hash(splits)}
            )
            self._data[name] = prepare(name, key, splits)
        return self._data[name]

    def published(self, data: PreparedData, shift: Shift) -> _Published | None:
        """The dataset's published test set for ``shift`` (CIFAR-10-C arrays, CIFAR-10.1), if it supplies one."""
        if shift.kind not in ("pixel", "published"):
            return None
        key = (data.name, shift.label)
        if key not in self._published:
            self._published[key] = self._read_published(data, shift)
        return self._published[key]

    def _read_published(self, data: PreparedData, shift: Shift) -> _Published | None:
        found = self._published_set(data, shift)
        if found is None:
            return None
        digest = content_hash_of(found.test)
        return _Published(torch.from_numpy(np.asarray(found.test.labels, dtype=np.int64)), found.source, digest)

    def _published_set(self, data: PreparedData, shift: Shift) -> ShiftedSet | None:
        lookup = data.splits.published_shift
        found = None
        if lookup is not None:
            try:
                found = lookup(shift.name, shift.param)
            except Exception as exc:  # noqa: BLE001 - the plugin's message names the file and the fix
                raise CaseError(f"dataset {data.name!r} could not read the published set for {shift.label}: "
                                f"{type(exc).__name__}: {exc}") from exc
        if found is None:
            if shift.kind == "published":
                raise CaseError(f"shift {shift.label} is a published test set, and dataset {data.name!r} does not "
                                "supply it (it is not on disk, or not a shift of this dataset)")
            return None
        nominal = data.splits.test.images.shape[1:]
        if not isinstance(found, ShiftedSet) or found.test.images.shape[1:] != nominal:
            shape = found.test.images.shape[1:] if isinstance(found, ShiftedSet) else type(found).__name__
            raise CaseError(f"dataset {data.name!r} supplied {shape} for {shift.label}; expected a ShiftedSet of "
                            f"images shaped like the test set's {nominal}")
        labels = np.asarray(found.test.labels)
        if len(labels) and (labels.min() < 0 or labels.max() >= data.splits.num_classes):
            raise CaseError(f"the published set for {shift.label} ({found.source}) has labels outside "
                            f"0..{data.splits.num_classes - 1}")
        return found

    def shift_labels(self, data: PreparedData, shift: Shift) -> torch.Tensor:
        """The labels accuracy under ``shift`` is measured against: a published set's own, else the test set's."""
        published = self.published(data, shift)
        return published.labels if published is not None else data.test_labels

    def shift_source(self, data: PreparedData, shift: Shift) -> str:
        """``"generated"`` or ``"published: <path>"``: where a shifted test set came from (the report shows it)."""
        published = self.published(data, shift)
        return f"published: {published.source}" if published is not None else "generated"

    def shifted_inputs(self, data: PreparedData, shift: Shift) -> torch.Tensor:
        """The normalized test inputs under ``shift`` (generated, read from disk or loaded as needed)."""
        cached = self._shifted.get((data.name, shift.label))
        if cached is not None:
            return cached
        if self.published(data, shift) is not None:
            found = self._published_set(data, shift)  # re-read: published sets are not all kept in memory
            assert found is not None
            inputs = data.normalize(found.test.images)
            self._remember(data, shift, inputs)
            return inputs
        if shift.kind == "pixel":
            self._ensure_pixel_sets(data, [shift])  # loads or generates the uint8 images
            images = self._pixel_images.pop((data.name, shift.label), None)
            if images is None:
                return self._pixel_inputs_uncached(data, shift)
            inputs = data.normalize(images)  # normalized only now: a warm run that evaluates nothing never pays
            self._remember(data, shift, inputs)
            return inputs
        if shift.kind == NOMINAL:
            inputs = data.normalize(data.splits.test.images)
        else:
            seeds = np.array(image_seeds(self.suite.seed, data.key, shift, len(data.test_labels)), dtype=np.int64)
            inputs = shift.registered.item.apply(data.normalize(data.splits.test.images), shift.param, seeds)  # type: ignore[union-attr]
        self._remember(data, shift, inputs)
        return inputs

    def _shifted_key(self, data: PreparedData, shift: Shift) -> str:
        return make_key({"kind": "shifted", "data": data.key, "shift": shift.identity(), "seed": self.suite.seed})

    def _pixel_inputs_uncached(self, data: PreparedData, shift: Shift) -> torch.Tensor:
        images = self.options.store.load("shifted", self._shifted_key(data, shift))
        if images is None:  # removed as damaged between generation and use: make it again
            self._ensure_pixel_sets(data, [shift])
            images = self.options.store.load("shifted", self._shifted_key(data, shift))
        return data.normalize(images.numpy())

    def _ensure_pixel_sets(self, data: PreparedData, shifts: list[Shift]) -> None:
        """Load pixel-shifted sets from the store; generate the missing ones in one worker pool."""
        wanted = [s for s in shifts if (data.name, s.label) not in self._shifted
                  and (data.name, s.label) not in self._pixel_images and self.published(data, s) is None]
        if not self._load_pixel_sets(data, wanted):
            return
        with self.options.store.claim("shifted", data.key):
            # again: another process may have made them while we waited for the claim
            missing = self._load_pixel_sets(data, wanted)
            if missing:
                self._generate_pixel_sets(data, missing)

    def _load_pixel_sets(self, data: PreparedData, shifts: list[Shift]) -> list[Shift]:
        """Remember the stored sets among ``shifts``; return the ones not in the store."""
        missing = []
        for shift in shifts:
            images = self.options.store.load("shifted", self._shifted_key(data, shift))
            if images is None:
                missing.append(shift)
            else:
                self._pixel_images[(data.name, shift.label)] = images.numpy()
        return missing

    def _generate_pixel_sets(self, data: PreparedData, missing: list[Shift]) -> None:
        self._progress(data.name, f"generating {len(missing)} shifted test sets with {self.options.workers} workers")
        jobs = [(s, image_seeds(self.suite.seed, data.key, s, len(data.test_labels))) for s in missing]
        outputs = generate_pixel_shifts(
            data.splits.test.images, jobs, self.options.workers, lambda m: self._progress(data.name, m)
        )
        for shift, images in zip(missing, outputs):
            self.options.store.save(
                "shifted", self._shifted_key(data, shift), torch.from_numpy(images),
                {"data": data.key, "shift": shift.identity()},
            )
            self.options.store.log_work("shifted", self._shifted_key(data, shift), f"{data.name} {shift.label}")
            self._pixel_images[(data.name, shift.label)] = images

    def _remember(self, data: PreparedData, shift: Shift, inputs: torch.Tensor) -> None:
        size = inputs.numel() * inputs.element_size()
        if self._shifted_bytes + size <= _SHIFT_CACHE_BYTES:
            self._shifted[(data.name, shift.label)] = inputs
            self._shifted_bytes += size

    # ------------------------------------------------------------------ networks

    def build(self, model: str, data: PreparedData) -> nn.Module:
        reg = self.models[model]
        network = reg.item.build(data.splits.num_classes, data.splits.input_shape)
        if not isinstance(network, nn.Module):
            raise CaseError(f"model {model!r} (plugin {reg.plugin.name}) built {type(network).__name__}, not an nn.Module")
        return network

    def parent(self, model: str, dataset: str, seed: int | None = None) -> NetworkRecord:
        """The trained parent of a model x dataset, trained once per store.

        ``seed`` (default: the suite's) seeds initialisation and training order only, not the data
        split: another seed gives the "separately trained parent" of functional similarity.
        """
        seed = self.suite.seed if seed is None else int(seed)
        cached = self._parents.get((model, dataset, seed))
        if isinstance(cached, CaseError):
            raise cached
        if cached is not None:
            return cached
        try:
            record = self._parent(model, dataset, seed)
        except CaseError as exc:
            self._parents[(model, dataset, seed)] = exc
            raise
        except Exception as exc:  # noqa: BLE001 - reported on every case of this parent
            error = CaseError(f"training the parent {model} on {dataset} failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._parents[(model, dataset, seed)] = error
            raise error from exc
        self._parents[(model, dataset, seed)] = record
        return record

    def _parent(self, model: str, dataset: str, seed: int) -> NetworkRecord:
        data = self.data(dataset)
        checkpoint = self.suite.parent_checkpoints.get(model)
        if checkpoint is not None and seed == self.suite.seed:  # a parent of another seed is always trained
            return self._parent_from_checkpoint(model, data, Path(checkpoint).expanduser().resolve())
        recipe = self.recipes[model]
        spec = {"kind": "parent", "model": self.models[model].identity(), "data": data.key,
                "recipe": recipe.to_dict(), "seed": seed, "numerics": self._numerics(), **mix_spec(self)}
        key = make_key(spec)
        label = f"{model}-{dataset}" if seed == self.suite.seed else f"{model}-{dataset}-seed{seed}"

        def compute() -> dict[str, Any]:
            self._progress(label, f"training the parent ({recipe.epochs} epochs)")
            torch.manual_seed(seed)
            network = self.build(model, data)
            train(network, data.train_inputs, data.train_labels, recipe, epochs=recipe.epochs, seed=seed,
                  pad_value=data.pad_value, device=self.options.device,
                  progress=lambda m: self._progress(label, f"parent {m}"),
                  epoch_inputs=training_inputs(self, data))
            return {"state": _cpu_state(network)}

        state = self.options.store.load_or_compute("network", key, compute, spec, f"parent {label}")["state"]
        return NetworkRecord(key, 0.0, 0.0, state=state)

    def _parent_from_checkpoint(self, model: str, data: PreparedData, path: Path) -> NetworkRecord:
        """The parent read from the suite's checkpoint file, checked to fit the network exactly."""
        from .checkpoints import CheckpointError, file_digest, fit_problems, read_checkpoint

        if not path.is_file():
            raise CaseError(f"parent checkpoint {path} for {model} not found; fix the path in the suite's "
                            "parent_checkpoints (relative paths are relative to the suite file)")
        # the file's content, not its name, identifies the parent: a replaced file is a new parent
        spec = {"kind": "parent", "model": self.models[model].identity(), "data": data.key,
                "checkpoint": file_digest(path)}
        label = f"{model}-{data.name}"

        def compute() -> dict[str, Any]:
            self._progress(label, f"parent from checkpoint {path}")
            try:
                state = read_checkpoint(path)
            except CheckpointError as exc:
                raise CaseError(str(exc)) from exc
            network = self.build(model, data)
            problems = fit_problems(network, state)
            if problems:
                raise CaseError(
                    f"parent checkpoint {path} does not fit {model} built for {data.splits.num_classes} classes: "
                    f"{problems}. Was it saved from another architecture or number of classes?"
                )
            network.load_state_dict(state)
            return {"state": _cpu_state(network)}

        key = make_key(spec)
        state = self.options.store.load_or_compute("network", key, compute, spec, f"parent {label} from {path}")["state"]
        return NetworkRecord(key, 0.0, 0.0, state=state)

    # ------------------------------------------------------------------ cases

    def result(self, case: CaseKey) -> CaseResult:
        """The case's curves, computed on first use and shared by every check."""
        cached = self._results.get(case)
        if cached is None:
            try:
                cached = self._compute(case)
            except CaseError as exc:
                cached = exc
            except Exception as exc:  # noqa: BLE001 - a crash fails only the checks of this case
                cached = CaseError(f"{case.id}: {type(exc).__name__}: {exc}")
                cached.__cause__ = exc
            self._results[case] = cached
        if isinstance(cached, CaseError):
            raise cached
        return cached

    def _numerics(self) -> dict[str, Any]:
        """What changes floating-point results of training besides the inputs: device type and threads."""
        return {"device": torch.device(self.options.device).type, "threads": self.options.threads}

    def _compute(self, case: CaseKey) -> CaseResult:
        if case.method in self.suite.pruned_checkpoints:
            return self._compute_pruned(case)
        started = time.monotonic()
        data = self.data(case.dataset)
        parent = self.parent(case.model, case.dataset)
        steps = self._cascade(case, data, parent)
        records = [parent, *steps]
        curves = self._evaluate(case, data, records)
        costs = self._costs(case, data, records)
        similarity = case_similarity(self, case, data, parent, steps)
        features = case_features(self, case, data, parent, steps)
        method = self.methods[case.method]
        return CaseResult(
            case=case,
            method={**method.identity(), "structured": bool(method.item.structured),
                    "data_informed": bool(method.item.data_informed)},
            ratios=tuple(r.ratio for r in steps),
            achieved=tuple(r.achieved for r in steps),
            parent_key=parent.key,
            step_keys=tuple(r.key for r in steps),
            accuracy=curves,
            costs=costs,
            seconds=time.monotonic() - started,
            shift_sources={s.label: self.shift_source(data, s) for s in self.shifts if not s.is_nominal},
            similarity=similarity,
            features=features,
        )

    # ------------------------------------------------------------------ pruned checkpoints (robustprune.byo)

    def _compute_pruned(self, case: CaseKey) -> CaseResult:
        """A network pruned elsewhere: one network against its parent, through the same evaluation cache."""
        started = time.monotonic()
        data = self.data(case.dataset)
        parent = self.parent(case.model, case.dataset)
        record, info = self._pruned_record(case, data, parent)
        records = [parent, record]
        curves = self._evaluate(case, data, records)
        costs = self._costs(case, data, records)
        return CaseResult(
            case=case,
            method={"name": case.method, "plugin": "pruned checkpoint", "version": info["sha256"][:12],
                    "structured": False, "data_informed": False, "pruned_checkpoint": info},
            ratios=(record.ratio,),
            achieved=(record.achieved,),
            parent_key=parent.key,
            step_keys=(record.key,),
            accuracy=curves,
            costs=costs,
            seconds=time.monotonic() - started,
            shift_sources={s.label: self.shift_source(data, s) for s in self.shifts if not s.is_nominal},
        )

    def _pruned_record(self, case: CaseKey, data: PreparedData,
                       parent: NetworkRecord) -> tuple[NetworkRecord, dict[str, Any]]:
        """The pruned checkpoint read, checked against the model and its parent, and stored like a cascade step.

        Keyed by the file's content and the parent's key: a replaced file (or parent) is evaluated again.
        """
        from .byo import read_pruned
        from .checkpoints import CheckpointError, file_digest

        entry = self.suite.pruned_checkpoints[case.method]
        path = Path(entry.path).expanduser().resolve()
        what = f"pruned checkpoint {case.method!r}"
        if not path.is_file():
            raise CaseError(f"{what}: {path} not found; fix the path in the suite's pruned_checkpoints "
                            "(relative paths are relative to the suite file)")
        digest = file_digest(path)
        spec = {"kind": "pruned-checkpoint", "model": self.models[case.model].identity(), "data": data.key,
                "checkpoint": digest, "parent": parent.key}
        key = make_key(spec)

        def compute() -> dict[str, Any]:
            self._progress(case.id, f"pruned network from checkpoint {path}")
            network = self.build(case.model, data)
            try:
                pruned = read_pruned(path, network, self._state(parent, case, data), what)
            except CheckpointError as exc:
                raise CaseError(str(exc)) from exc
            network.load_state_dict(pruned.state)
            return {"state": _cpu_state(network), "masks": pruned.masks, "achieved": pruned.sparsity,
                    "layout": pruned.layout}

        stored = self.options.store.load_or_compute("network", key, compute, spec, f"{case.id} from {path}")
        achieved = float(stored["achieved"])
        info = {"path": str(path), "sha256": digest, "layout": stored.get("layout", "state dict"),
                "sparsity": achieved}
        return NetworkRecord(key, achieved, achieved, stored["state"], stored["masks"]), info

    def _cascade(self, case: CaseKey, data: PreparedData, parent: NetworkRecord) -> list[NetworkRecord]:
        """Prune to each ratio in turn, starting from the previous retrained network."""
        if self.suite.search == "bisect":
            return self._bisect(case, data, parent)
        previous = parent
        steps: list[NetworkRecord] = []
        for index, ratio in enumerate(self.suite.ratios):
            record = self._step(case, data, previous, ratio, f"ratio {ratio:.3g} ({index + 1}/{len(self.suite.ratios)})")
            if previous is not parent:
                previous.state = None  # only the newest network's weights are needed for the next step
            steps.append(record)
            previous = record
        return steps

    def _bisect(self, case: CaseKey, data: PreparedData, parent: NetworkRecord) -> list[NetworkRecord]:
        """Find the nominal prune potential by bisection over the grid, retraining only the probed ratios.

        Each probe prunes from the largest probed ratio below it (the cascade's
        rule, with gaps). On a monotone curve the answer equals the full grid's:
        the largest qualifying ratio and the smallest failing one are both
        probed. The gate ratio is always probed, so the gate can be read.
        """
        ratios = self.suite.ratios
        threshold = self._accuracy(case, data, parent, NOMINAL_SHIFT) - self.suite.delta
        probed: dict[int, NetworkRecord] = {}

        def probe(index: int) -> bool:
            below = [i for i in probed if i < index]
            previous = probed[max(below)] if below else parent
            where = f"ratio {ratios[index]:.3g} (bisection probe {len(probed) + 1})"
            probed[index] = self._step(case, data, previous, ratios[index], where)
            return self._accuracy(case, data, probed[index], NOMINAL_SHIFT) >= threshold - 1e-12

        bisect_last_qualifying(len(ratios), probe)
        gate = ratios.index(self.suite.gate_ratio_for(case.method))
        if gate not in probed:
            probe(gate)
        self._progress(case.id, f"bisection retrained {len(probed)} of {len(ratios)} grid ratios")
        return [probed[i] for i in sorted(probed)]

    def _step(self, case: CaseKey, data: PreparedData, previous: NetworkRecord, ratio: float,
              where: str) -> NetworkRecord:
        """One prune + retrain step from ``previous`` (loaded from the store when already done)."""
        method_reg = self.methods[case.method]
        method = method_reg.item
        recipe = self.recipes[case.model]
        # the suite's retrain length, else the recipe's own (VGG: 150 of 300 epochs), else the full recipe
        epochs = self.suite.retrain_epochs
        if epochs is None:
            epochs = recipe.epochs if recipe.retrain_epochs is None else recipe.retrain_epochs
        step_seed = int(make_key([self.suite.seed, case.method, ratio])[:8], 16)
        spec = {"kind": "pruned", "method": method_reg.identity(), "params": method.params(),
                "previous": previous.key, "ratio": ratio, "retrain_epochs": epochs,
                "recipe": recipe.to_dict(), "data_batch": int(method.data_batch_size), "seed": step_seed,
                "numerics": self._numerics(), **mix_spec(self)}
        key = make_key(spec)

        def compute() -> dict[str, Any]:
            self._progress(case.id, f"{where}: pruning")
            network = self.build(case.model, data)
            network.load_state_dict(self._state(previous, case, data))
            previous_masks = previous.masks or full_masks(network)
            masks, achieved = self._prune(case, method, network, ratio, previous_masks, data, step_seed)
            train(network, data.train_inputs, data.train_labels, recipe, epochs=epochs, seed=step_seed,
                  pad_value=data.pad_value, masks=masks, device=self.options.device,
                  progress=lambda m: self._progress(case.id, f"{where}: retrain {m}"),
                  epoch_inputs=training_inputs(self, data))
            return {"state": _cpu_state(network), "masks": masks, "achieved": achieved}

        stored = self.options.store.load_or_compute("network", key, compute, spec, f"{case.id} {where}")
        return NetworkRecord(key, ratio, float(stored["achieved"]), stored["state"], stored["masks"])

    def _state(self, record: NetworkRecord, case: CaseKey, data: PreparedData) -> dict[str, torch.Tensor]:
        if record.state is None:
            stored = self.options.store.load("network", record.key)
            if stored is None:
                raise CaseError(f"{case.id}: network {record.key[:12]} vanished from the store; run again")
            record.state = stored["state"]
        return record.state

    def _prune(self, case, method, network, ratio, previous_masks, data, seed):
        generator = torch.Generator().manual_seed(seed)
        batch = None
        if method.data_informed:
            example = data.train_inputs[:2].clone()
            # PruneMethod.data_size lets the size follow from the network (SiPP's and PFP's bound);
            # methods that do not subclass PruneMethod give a fixed data_batch_size
            wanted = method.data_size(network, example) if hasattr(method, "data_size") else method.data_batch_size
            size = min(int(wanted) or 128, len(data.train_inputs))
            index = torch.randperm(len(data.train_inputs), generator=generator)[:size]
            batch = data.train_inputs[index]
        context = PruneContext(
            masks={k: v.clone() for k, v in previous_masks.items()},
            generator=generator,
            example_input=data.train_inputs[:2].clone(),
            data=batch,
            _network=network,
        )
        before = {k: v.clone() for k, v in network.state_dict().items()}
        try:
            masks = method.prune(network, ratio, context)
        except PruneError as exc:
            raise CaseError(f"{case.id} at ratio {ratio:.3g}: {exc}") from exc
        except Exception as exc:
            raise CaseError(
                f"{case.id}: method {case.method!r} raised at ratio {ratio:.3g}: {type(exc).__name__}: {exc}"
            ) from exc
        changed = [k for k, v in network.state_dict().items() if not torch.equal(v, before[k])]
        if changed:  # the host applies masks itself; a method that edits weights would corrupt the cascade
            raise CaseError(
                f"{case.id}: method {case.method!r} modified the network in prune() (e.g. {changed[0]}); "
                "return masks and leave the weights alone"
            )
        try:
            return validate_masks(masks, previous_masks, ratio, case.method)
        except PruneError as exc:
            raise CaseError(f"{case.id} at ratio {ratio:.3g}: {exc}") from exc

    def _eval_key(self, record: NetworkRecord, data: PreparedData, shift: Shift) -> str:
        spec = {"kind": "eval", "network": record.key, "data": data.key, "shift": shift.identity(),
                "seed": self.suite.seed}
        published = self.published(data, shift)
        if published is not None:  # what was evaluated is the file's content, not a generated set
            spec["published"] = published.digest
        return make_key(spec)

    def _accuracy(self, case: CaseKey, data: PreparedData, record: NetworkRecord, shift: Shift) -> float:
        """One network's accuracy on one shift, through the same cache as full evaluations."""

        def compute() -> torch.Tensor:
            network = self.build(case.model, data)
            network.load_state_dict(self._state(record, case, data))
            return predict(network, self.shifted_inputs(data, shift), self.options.device)

        key = self._eval_key(record, data, shift)
        preds = self.options.store.load_or_compute("eval", key, compute, {"network": record.key,
                                                   "shift": shift.identity()}, f"{case.id} {shift.label}")
        return accuracy(preds, self.shift_labels(data, shift))

    def _costs(self, case: CaseKey, data: PreparedData, records: list[NetworkRecord]) -> list[dict[str, Any]]:
        """Parameters and MACs of every network; for a structured method also the measured latency of the
        compacted networks and of the parent (a batch of 64 on this machine), hence the speed-up.

        The method's ``structured`` flag decides, never its name. Counts are keyed by network;
        latencies also by the machine (costs.machine_fingerprint), so warm runs reuse them and
        print the same table.
        """
        from .costs import machine_fingerprint

        # a pruned checkpoint is costed as masked: nothing says its zeros form whole channels
        structured = case.method in self.methods and bool(self.methods[case.method].item.structured)
        machine = machine_fingerprint()
        specs = []
        for i, record in enumerate(records):
            compacted = structured and i > 0
            count_spec = {"kind": "costs", "network": record.key, "compacted": compacted, "version": _COSTS_VERSION}
            time_spec = {**count_spec, "kind": "latency", "machine": machine, "batch": _LATENCY_BATCH} if structured else None
            specs.append((record, compacted, count_spec, time_spec))
        pending = sum(1 for _, _, c, t in specs
                      if not self.options.store.contains("costs", make_key(c))
                      or (t is not None and not self.options.store.contains("costs", make_key(t))))
        if pending:
            what = "compaction, latency" if structured else "parameters, MACs"
            self._progress(case.id, f"costing {pending} networks ({what})")
        out: list[dict[str, Any]] = []
        for i, (record, compacted, count_spec, time_spec) in enumerate(specs):
            counts = self.options.store.load_or_compute(
                "costs", make_key(count_spec), lambda: self._count(case, data, record, compacted), count_spec,
                f"{case.id} costs of network {i}")
            entry: dict[str, Any] = {"params": int(counts["params"]), "macs": int(counts["macs"])}
            if counts.get("note"):
                entry["note"] = counts["note"]
            if time_spec is not None:
                timed = self.options.store.load_or_compute(
                    "costs", make_key(time_spec), lambda: self._time(case, data, record, compacted), time_spec,
                    f"{case.id} latency of network {i}")
                entry["latency"] = float(timed["seconds"])
            out.append(entry)
        for record in records[1:]:
            record.state = None
        if structured:
            for entry in out:
                entry["speedup"] = out[0]["latency"] / entry["latency"] if entry["latency"] > 0 else None
        return out

    def _costed_network(self, case: CaseKey, data: PreparedData, record: NetworkRecord,
                        compacted: bool) -> tuple[dict[str, Any], nn.Module]:
        from .compaction import CompactionError
        from .costs import network_costs

        network = self.build(case.model, data)
        network.load_state_dict(self._state(record, case, data))
        example = data.train_inputs[:2].clone()
        try:
            costs, runnable = network_costs(network, record.masks, example, structured=compacted)
            return {**costs.to_dict(), "note": ""}, runnable
        except CompactionError as exc:  # costs of the masked network instead; accuracy gating is unaffected
            self._progress(case.id, f"compaction failed, costing the masked network: {exc}")
            costs, runnable = network_costs(network, record.masks, example, structured=False)
            return {**costs.to_dict(), "note": f"not compacted: {exc}"}, runnable

    def _count(self, case: CaseKey, data: PreparedData, record: NetworkRecord, compacted: bool) -> dict[str, Any]:
        counts, _ = self._costed_network(case, data, record, compacted)
        return counts

    def _time(self, case: CaseKey, data: PreparedData, record: NetworkRecord, compacted: bool) -> dict[str, Any]:
        from .costs import measure_latency

        _, network = self._costed_network(case, data, record, compacted)
        inputs = data.train_inputs[:_LATENCY_BATCH].clone()
        return {"seconds": measure_latency(network.to("cpu"), inputs)}

    def _evaluate(self, case: CaseKey, data: PreparedData, records: list[NetworkRecord]) -> dict[str, list[float]]:
        """Accuracy of every network on every shift, each evaluation cached.

        Each shift is scored against its own labels: a published set (CIFAR-10.1)
        has other images and labels than the nominal test set.
        """
        labels = {shift.label: self.shift_labels(data, shift) for shift in self.shifts}
        eval_keys = {(i, shift.label): self._eval_key(record, data, shift)
                     for i, record in enumerate(records) for shift in self.shifts}
        predictions: dict[tuple[int, str], torch.Tensor] = {}
        missing: list[tuple[int, Shift]] = []
        for i, _ in enumerate(records):
            for shift in self.shifts:
                stored = self.options.store.load("eval", eval_keys[(i, shift.label)])
                if stored is None or len(stored) != len(labels[shift.label]):
                    missing.append((i, shift))
                else:
                    predictions[(i, shift.label)] = stored
        if missing:
            started = time.monotonic()
            self._progress(case.id, f"evaluating {len(missing)} network x shift pairs")
            self._ensure_pixel_sets(data, sorted({s.label: s for _, s in missing if s.kind == "pixel"}.values(),
                                                 key=self.shifts.index))
            by_network: dict[int, list[Shift]] = {}
            for i, shift in missing:
                by_network.setdefault(i, []).append(shift)
            for i, shifts in by_network.items():
                # one claim per network: cases sharing the parent evaluate it once
                with self.options.store.claim("eval", records[i].key):
                    network: nn.Module | None = None
                    for shift in shifts:
                        key = eval_keys[(i, shift.label)]
                        preds = self.options.store.load("eval", key)  # done by another process meanwhile?
                        if preds is None or len(preds) != len(labels[shift.label]):
                            if network is None:
                                network = self.build(case.model, data)
                                network.load_state_dict(self._state(records[i], case, data))
                            preds = predict(network, self.shifted_inputs(data, shift), self.options.device)
                            self.options.store.save("eval", key, preds,
                                                    {"network": records[i].key, "shift": shift.identity()})
                            self.options.store.log_work("eval", key, f"{case.id} network {i} {shift.label}")
                        predictions[(i, shift.label)] = preds
            self._progress(case.id, f"evaluated in {time.monotonic() - started:.1f} s")
        for record in records[1:]:
            record.state = None  # curves are all that is kept in memory
        return {
            shift.label: [accuracy(predictions[(i, shift.label)], labels[shift.label]) for i in range(len(records))]
            for shift in self.shifts
        }


def content_hash_of(images: ImageSet) -> str:
    """A fingerprint of one image set's images and labels."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(images.images).data)
    h.update(np.ascontiguousarray(images.labels).astype(np.int64).data)
    return h.hexdigest()


def _cpu_state(network: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}


__all__ = ["CaseError", "CaseKey", "CaseResult", "Engine", "RunOptions"]
