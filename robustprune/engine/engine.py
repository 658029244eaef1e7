"""Plans a suite's grid and runs it lazily, sharing and caching every piece of work.

Data flows one way: dataset -> parent (trained once per model x dataset) ->
each method's cascade of prune + retrain -> every network evaluated once per
shift -> accuracy curves -> (costs, measures beyond accuracy). Each arrow is
cached in the store under a key made of everything that determines it, so a
second run trains nothing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from ..compute.checkpoints import CheckpointError, file_digest, fit_problems, read_checkpoint, read_pruned
from ..compute.data import PreparedData, content_hash, prepare
from ..compute.evaluation import evaluate
from ..compute.numerics import numerics
from ..compute.store import NotStored, make_key
from ..compute.training import train
from ..core.cases import Case
from ..core.datasource import dataset_request
from ..core.gate import resolve_entries
from ..core.metrics import bisect_last_qualifying
from ..core.results import (
    CaseError,
    CaseKey,
    CaseResult,
    FeaturesResult,
    RepeatCurves,
    SimilarityResult,
    StoreError,
    SuiteRun,
)
from ..core.shifts import NOMINAL_SHIFT, Shift, ShiftEntry, all_members, check_requested_family, parse_shifts
from ..core.suite import Suite
from ..core.uncertainty import Resampling
from ..plugin.api import (
    AUTO_FAMILY,
    DatasetRequest,
    DatasetSpec,
    Metric,
    ModelSpec,
    PruneContext,
    PruneMethod,
    Recipe,
)
from ..plugin.errors import DataFileError, MissingDependencyError
from ..plugin.host import prune_library_hash, scores_library_hash
from ..plugin.masks import Masks, PruneError, full_masks, validate_masks
from ..plugin.registry import PluginConflictError, Registered, Registry
from .bootstrap import ImageResamples
from .context import CaseContext, NetworkRecord, RunOptions, tagged
from .costing import curve_costs
from .features import case_features
from .robust_training import RobustTraining, TrainingPool, resolve_mix
from .shifted import ShiftedSets, ShiftFailure
from .similarity import baseline_seed, case_similarity

__all__ = ["Engine", "TrainedNetwork", "WorkPlan", "load_dataset"]


ParentKey = tuple[str, str, int | None]  # (model, dataset, seed); seed None: the suite's checkpoint


@dataclass(frozen=True)
class WorkPlan:
    """The independent pieces of work behind a set of cases, with what each one waits for."""

    parents: tuple[ParentKey, ...]
    repeats: tuple[tuple[CaseKey, int, ParentKey], ...]  # one repeat's cascade with its evaluations, its parent
    measures: tuple[tuple[CaseKey, tuple[ParentKey, ...]], ...]  # similarity and features of repeat 0; parents


@dataclass(frozen=True)
class TrainedNetwork:
    """A network of a case read back from the store: built, loaded, in eval mode, with its masks."""

    network: nn.Module
    masks: Masks | None
    key: str


class Engine:
    """Runs one suite: validated at construction, computed lazily per case."""

    def __init__(self, suite: Suite, registry: Registry, options: RunOptions):
        self.suite = suite
        self.registry = registry
        self.options = options
        # a name two plugins registered fails only the cases that use it (unknown names raise here)
        self.models: Available[Registered[ModelSpec]] = Available(registry, "model", suite.models)
        self.datasets: Available[Registered[DatasetSpec]] = Available(registry, "dataset", suite.datasets)
        self.methods: Available[Registered[PruneMethod]] = Available(registry, "method", suite.methods)
        for field_name in ("recipes", "parent_checkpoints"):
            for model in getattr(suite, field_name):
                if model not in suite.models:
                    raise ValueError(
                        f"{field_name} names model {model!r}, which the suite does not use; suite models: "
                        f"{', '.join(suite.models)}"
                    )
        self.recipes: Available[Recipe] = Available.derived(self.models, lambda name, reg: reg.item.recipe.replace(
            **suite.recipe).replace(**suite.recipes.get(name, {})))
        torch.set_num_threads(options.threads)
        # what the numbers depend on besides the inputs: in the key of everything trained or evaluated here
        self.numerics = numerics(options.device, options.threads)
        self.shift_entries: list[ShiftEntry] = parse_shifts(suite.shifts, registry)
        # robust training: the mix's members and the held-out shifts become two more report columns
        mix = resolve_mix(suite, registry)
        self.robust_training = None if mix is None else RobustTraining(
            mix, options.store, suite.seed, options.workers, options.progress, suite.shift_family_for)
        if mix is not None:
            self.shift_entries += mix.entries()
        self.shifts: list[Shift] = all_members(self.shift_entries)
        self._check_shift_family()
        self.shifted = ShiftedSets(options.store, suite.seed, options.workers, options.progress,
                                   suite.shift_family_for)
        self._data: dict[str, PreparedData] = {}
        self._task_checked: set[tuple[str, str]] = set()  # (model, dataset) pairs whose task fits the suite
        # (model, dataset, seed), or (model, dataset, None) for the suite's parent checkpoint
        self._parents: dict[tuple[str, str, int | None], NetworkRecord | CaseError] = {}
        self.resamples = ImageResamples(suite.seed, suite.bootstrap)
        self._results: dict[CaseKey, CaseResult | CaseError] = {}
        self._repeats: dict[tuple[CaseKey, int], tuple[RepeatCurves, list[NetworkRecord]]] = {}
        if suite.metric is not None:  # an unknown metric is a configuration error, found before any work
            registry.metric(suite.metric)
        if suite.gate is not None:  # a gated entry the suite does not evaluate is a collection error
            resolve_entries(suite.gate, {e.label: [m.label for m in e.members] for e in self.shift_entries})

    # ------------------------------------------------------------------ plan

    def _check_shift_family(self) -> None:
        """A ``Suite.shift_family`` that a shift of the suite lacks is a configuration error, found before any work."""
        requested = {self.suite.shift_family_for(d) for d in self.suite.datasets} - {AUTO_FAMILY}
        if not check_requested_family(self.shifts, requested) and requested:
            raise ValueError(f"Suite.shift_family asks for {', '.join(sorted(requested))}, but no shift of the suite "
                             "has parameter families (`robustprune plugins` lists the shifts; families belong to "
                             "pixel shifts such as the corruptions)")

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
            for name, entry in self.suite.pruned_entries.items()
            if entry.dataset in (None, dataset)
        ]

    def computed(self) -> dict[CaseKey, CaseResult | CaseError]:
        """Every case computed so far (or failed), in the order they were asked for."""
        return dict(self._results)

    def suite_run(self) -> SuiteRun:
        """What the report reads: the computed cases with the suite's shifts, as plain data."""
        mix = self.robust_training.mix.summary() if self.robust_training is not None else None
        return SuiteRun(
            suite=self.suite, entries=tuple(self.shift_entries), shifts=tuple(self.shifts), results=self.computed(),
            num_classes={name: data.splits.num_classes for name, data in self._data.items()},
            robust_training=mix, numerics=self.numerics,
            store={"root": str(self.options.store.root), "authenticated": self.options.store.authenticated,
                   "rejected": len(self.options.store.rejected), "rejected_entries": list(self.options.store.rejected)},
        )

    def view(self, case: CaseKey) -> Case:
        """The ``case`` view checks receive; its numbers are computed on first use."""
        return Case(lambda: self.result(case), self.suite, self.shift_entries, case)

    def _progress(self, tag: str) -> Callable[[str], None]:
        return tagged(self.options.progress, tag)

    # ------------------------------------------------------------------ data and networks

    def data(self, name: str) -> PreparedData:
        """Dataset ``name`` loaded through its plugin and prepared as tensors (once per engine)."""
        if name not in self._data:
            request = dataset_request(self.suite, name, data_root=self.options.data_root,
                                      download=self.options.download)
            self._data[name] = load_dataset(name, self.datasets[name], request)
        return self._data[name]

    def metric(self, data: PreparedData) -> Registered[Metric]:
        """The score ``data`` is measured with: the suite's ``metric``, else the dataset's own.

        Raises :class:`CaseError` (only the dataset's cases fail) when it is not registered or does not score the
        dataset's task."""
        name = self.suite.metric or data.splits.metric_name
        try:
            registered = self.registry.metric(name)
        except LookupError as exc:  # unknown or clashing: the registry's message lists what there is
            raise CaseError(f"dataset {data.name!r}: {exc}") from None
        task = data.splits.task
        if task not in registered.item.tasks:
            fitting = [m.name for m in self.registry.items("metric") if task in m.item.tasks]
            raise CaseError(f"metric {name!r} scores {' and '.join(registered.item.tasks)}, but dataset "
                            f"{data.name!r} is a {task} dataset; use one of "
                            f"{', '.join(fitting) or '(none registered)'}")
        return registered

    def metric_info(self, data: PreparedData) -> dict[str, str]:
        """What the report says about a dataset's score: its name, header label and the task."""
        metric = self.metric(data).item
        return {"name": metric.name, "label": metric.label, "task": data.splits.task}

    def test_inputs(self, data: PreparedData, shift: Shift = NOMINAL_SHIFT) -> torch.Tensor:
        """The normalized test inputs of ``data`` under ``shift``."""
        return self.shifted.inputs(data, shift)

    def build(self, model: str, data: PreparedData) -> nn.Module:
        """A freshly initialised ``model`` for ``data``'s classes and input shape."""
        reg = self.models[model]
        network = reg.item.build(data.splits.num_classes, data.splits.input_shape)
        if not isinstance(network, nn.Module):
            raise CaseError(f"model {model!r} (plugin {reg.plugin.name}) built {type(network).__name__}, "
                            "not an nn.Module")
        return network

    def _state(self, record: NetworkRecord, case: CaseKey) -> dict[str, torch.Tensor]:
        """A record's weights, read from the store when not in memory (and kept there until dropped)."""
        if record.state is not None:
            return record.state
        stored = self.options.store.load("network", record.key)
        if stored is None:
            raise CaseError(f"{case.id}: network {record.key[:12]} vanished from the store; run again")
        record.state = stored["state"]
        return record.state

    def _load(self, case: CaseKey, data: PreparedData, record: NetworkRecord) -> nn.Module:
        network = self.build(case.model, data)
        network.load_state_dict(self._state(record, case))
        return network

    def trained_network(self, case: CaseKey, key: str) -> TrainedNetwork:
        """The network stored under ``key`` (a step of ``case``'s curve), built and loaded, in eval mode."""
        stored = self.options.store.load("network", key)
        if stored is None:
            raise CaseError(f"{case.id}: network {key[:12]} is not in the store {self.options.store.root}")
        network = self.build(case.model, self.data(case.dataset))
        network.load_state_dict(stored["state"])
        return TrainedNetwork(network.eval(), stored.get("masks"), key)

    def _mix_key(self, data: PreparedData) -> dict[str, Any]:
        """The store-key part of the training data: empty without a mix, so existing keys stay valid."""
        return {} if self.robust_training is None else self.robust_training.key_part(data)

    def _epoch_inputs(self, data: PreparedData) -> TrainingPool | None:
        return None if self.robust_training is None else self.robust_training.pool(data)

    # ------------------------------------------------------------------ parents

    def parent(self, model: str, dataset: str, repeat: int = 0) -> NetworkRecord:
        """The parent of repeat ``repeat`` of a model x dataset, trained once per store.

        Repeat ``r`` trains with seed ``suite.seed + r`` (initialisation and data order; the data split
        is the suite's). With ``Suite.parent_checkpoints`` every repeat starts from the checkpoint, and the
        repeats differ in their pruning and retraining only.
        """
        seed = None if model in self.suite.parent_checkpoints else self.suite.seed + repeat
        return self.parent_of(model, dataset, seed)

    def trained_parent(self, model: str, dataset: str, seed: int) -> NetworkRecord:
        """A parent trained with ``seed`` whatever the suite says: the separately trained parent of
        functional similarity."""
        return self.parent_of(model, dataset, int(seed))

    def parent_of(self, model: str, dataset: str, seed: int | None) -> NetworkRecord:
        """The parent trained with ``seed``, or (``None``) the suite's parent checkpoint of ``model``."""
        cached = self._parents.get((model, dataset, seed))
        if isinstance(cached, CaseError):
            raise cached
        if cached is not None:
            return cached
        try:
            record = self._parent(model, dataset, seed)
        except (NotStored, StoreError):
            raise  # a lookup found it missing (see work_plan), or the machine failed: no case failed
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

    def _parent(self, model: str, dataset: str, seed: int | None) -> NetworkRecord:
        data = self.data(dataset)
        self._check_task(model, data)  # before any training: a wrong score or model fails its cases now
        if seed is None:
            checkpoint = self.suite.parent_checkpoints[model]
            return self._parent_from_checkpoint(model, data, Path(checkpoint).expanduser().resolve())
        recipe = self.recipes[model]
        spec = {"kind": "parent", "model": self.models[model].identity(), "data": data.key,
                "recipe": recipe.to_dict(), "seed": seed, "numerics": self.numerics, **self._mix_key(data)}
        key = make_key(spec)
        label = f"{model}-{dataset}" if seed == self.suite.seed else f"{model}-{dataset}-seed{seed}"
        progress = self._progress(label)

        def compute() -> dict[str, Any]:
            progress(f"training the parent ({recipe.epochs} epochs)")
            torch.manual_seed(seed)
            network = self.build(model, data)
            train(network, data.train_inputs, data.train_labels, recipe, epochs=recipe.epochs, seed=seed,
                  pad_value=data.pad_value, device=self.options.device,
                  progress=lambda m: progress(f"parent {m}"), epoch_inputs=self._epoch_inputs(data))
            return {"state": _cpu_state(network)}

        state = self.options.store.load_or_compute("network", key, compute, spec, f"parent {label}")["state"]
        return NetworkRecord(key, 0.0, 0.0, state=state)

    def _parent_from_checkpoint(self, model: str, data: PreparedData, path: Path) -> NetworkRecord:
        """The parent read from the suite's checkpoint file, checked to fit the network exactly."""
        if not path.is_file():
            raise CaseError(f"parent checkpoint {path} for {model} not found; fix the path in the suite's "
                            "parent_checkpoints (relative paths are relative to the suite file)")
        # the file's content, not its name, identifies the parent: a replaced file is a new parent
        spec = {"kind": "parent", "model": self.models[model].identity(), "data": data.key,
                "checkpoint": file_digest(path)}
        label = f"{model}-{data.name}"

        def compute() -> dict[str, Any]:
            self._progress(label)(f"parent from checkpoint {path}")
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
        stored = self.options.store.load_or_compute("network", key, compute, spec, f"parent {label} from {path}")
        state = stored["state"]
        return NetworkRecord(key, 0.0, 0.0, state=state)

    # ------------------------------------------------------------------ cases

    def result(self, case: CaseKey) -> CaseResult:
        """The case's curves, computed on first use and shared by every check."""
        cached = self._results.get(case)
        if cached is None:
            try:
                cached = self._compute(case)
            except StoreError:
                raise  # the store, not the case: the harness stops the run with one message
            except CaseError as exc:
                cached = exc
            except Exception as exc:  # noqa: BLE001 - a crash fails only the checks of this case
                cached = CaseError(f"{case.id}: {type(exc).__name__}: {exc}")
                cached.__cause__ = exc
            self._results[case] = cached
        if isinstance(cached, CaseError):
            raise cached
        return cached

    def work_plan(self, cases: Sequence[CaseKey]) -> WorkPlan:
        """The pieces of work behind ``cases`` that the store does not hold yet, for worker processes: every
        parent, every repeat's cascade with its evaluations (after its parent), the measures beyond accuracy
        (after the first repeat and the parents they compare with). Pruned checkpoints (one evaluation
        each) are left to :meth:`result`.

        What is stored is found by reading it (see :meth:`_stored`), and kept: the checks then use it."""
        methods = [c for c in cases if c.method not in self.suite.pruned_checkpoints]
        parents: dict[ParentKey, None] = {}
        repeats: list[tuple[CaseKey, int, ParentKey]] = []
        measures: list[tuple[CaseKey, tuple[ParentKey, ...]]] = []
        measured = self.suite.similarity is not None or self.suite.features is not None
        for case in methods:
            for repeat in range(self.suite.repeats):
                seed = None if case.model in self.suite.parent_checkpoints else self.suite.seed + repeat
                parents[(case.model, case.dataset, seed)] = None
                repeats.append((case, repeat, (case.model, case.dataset, seed)))
            compared: tuple[ParentKey, ...] = ()
            if self.suite.similarity is not None and self.suite.similarity.baseline:
                compared = ((case.model, case.dataset, baseline_seed(self.suite.similarity, self.suite.seed)),)
                parents[compared[0]] = None
            if measured:
                measures.append((case, compared))
        return WorkPlan(
            parents=tuple(p for p in parents if not self._stored(functools.partial(self.parent_of, *p))),
            repeats=tuple(r for r in repeats if not self._stored(functools.partial(self._stored_repeat, r[0], r[1]))),
            measures=tuple(m for m in measures if not self._stored(functools.partial(self._first_measures, m[0]))),
        )

    def check_shifts_ready(self, cases: Sequence[CaseKey]) -> None:
        """Before any work: raise :class:`MissingDependencyError` if a pixel shift whose test set the cases still
        need to generate cannot run on this machine (its plugin's ``check_ready`` says what is missing)."""
        for dataset in dict.fromkeys(c.dataset for c in cases):
            try:
                data = self.data(dataset)
            except (DataFileError, MissingDependencyError):
                raise
            except Exception:  # noqa: BLE001 - a dataset plugin that fails: its checks say so; check the others
                continue
            self.shifted.check_ready(data, self.shifted.to_generate(data, self.shifts))

    def planned_bytes(self, cases: Sequence[CaseKey], plan: WorkPlan) -> int:
        """Roughly what ``plan`` and the cases' generated shifted sets not stored yet will add to the store:
        the weights of every parent, weights and masks of every pruned network, every network's per-image
        statistics on every shift. For the free-disk warning before any work; measures are left out (they are small)."""
        sizes: dict[tuple[str, str], int] = {}

        def network_bytes(model: str, dataset: str) -> int:
            if (model, dataset) not in sizes:
                state = self.build(model, self.data(dataset)).state_dict()
                sizes[(model, dataset)] = sum(t.numel() * t.element_size() for t in state.values())
            return sizes[(model, dataset)]

        entry = 2 << 10  # each entry's own overhead: torch's file format, the spec, the tags
        total = sum(entry + network_bytes(model, dataset) for model, dataset, _ in plan.parents)
        evaluations = sum(self._draws(shift) for shift in self.shifts)
        for case, _, _ in plan.repeats:
            splits = self.data(case.dataset).splits
            pruned, images = len(self.suite.ratios), len(splits.test)
            total += pruned * (entry + 2 * network_bytes(case.model, case.dataset))  # a mask as large, at most
            # int64 statistics per image: one count for classification, a confusion matrix for segmentation
            row = 8 * (splits.num_classes**2 if splits.task == "segmentation" else 1)
            total += (pruned + 1) * evaluations * (entry + images * row)
        for dataset in dict.fromkeys(c.dataset for c in cases):
            data = self.data(dataset)
            total += len(self.shifted.to_generate(data, self.shifts)) * (entry + data.splits.test.images.nbytes)
        return total

    def _stored(self, compute: Callable[[], object]) -> bool:
        """Whether ``compute`` finds everything it needs in the store: run it reading only."""
        try:
            with self.options.store.lookup_only():
                compute()
        except NotStored:
            return False
        except Exception:  # noqa: BLE001 - it fails: let a worker meet the failure, the checks report it
            return False
        return True

    def referenced_entries(self, cases: Sequence[CaseKey]) -> set[tuple[str, str]]:
        """Every store entry ``cases`` read, as ``(kind, key)``: what ``robustprune store gc`` keeps for them.

        Found by computing them with the store in lookup-only mode while it
        records what is read; each repeat, the costs and measures separately,
        so that one missing piece does not hide the others.
        """
        store = self.options.store
        # from cold caches: what this engine already holds would otherwise be used without being read
        self._parents.clear()
        self._repeats.clear()
        self._results.clear()
        with store.lookup_only(), store.recording() as seen:
            for case in cases:
                if case.method in self.suite.pruned_checkpoints:
                    _quietly(functools.partial(self._compute_pruned, case))
                    continue
                for repeat in range(self.suite.repeats):
                    _quietly(functools.partial(self._stored_repeat, case, repeat))
                _quietly(functools.partial(self._first_costs, case))
                _quietly(functools.partial(self._first_measures, case))
            for dataset in dict.fromkeys(c.dataset for c in cases):
                pixel = [s for s in self.shifts if s.kind == "pixel"]
                seen.update(("shifted", key) for key in self.shifted.generated_keys(self.data(dataset), pixel))
                seen.update(("shiftfail", key) for key in self.shifted.failure_keys(self.data(dataset), self.shifts))
        self._repeats.clear()
        return set(seen)

    def verify_evaluations(self, cases: Sequence[CaseKey],
                           progress: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
        """Recompute every stored evaluation of ``cases``' networks from the stored networks and compare; returns
        how many were checked and what differs. Networks or sets not in the store are skipped: this checks
        what a run would read, it computes nothing new into the store."""
        store, checked, problems = self.options.store, 0, []
        for case in cases:
            if case.method in self.suite.pruned_checkpoints:
                continue
            data = self.data(case.dataset)
            for repeat in range(self.suite.repeats):
                seed = self.suite.seed + repeat
                try:
                    with store.lookup_only():
                        parent = self.parent(case.model, case.dataset, repeat)
                        records = [parent, *self._cascade(case, data, parent, seed)]
                except NotStored:
                    continue
                for i, record in enumerate(records):
                    network: nn.Module | None = None
                    for shift in self.shifts:
                        if self.shifted.failure(data, shift) is not None:
                            continue  # no set to recompute with: reported by the runs, not here
                        labels = self.shifted.labels(data, shift)
                        for draw in range(self._draws(shift)):
                            key = self._eval_key(record, data, shift, draw)
                            stored = store.load("eval", key)
                            if stored is None:
                                continue
                            try:
                                with store.lookup_only():
                                    self.shifted.inputs(data, shift, draw)
                            except (NotStored, ShiftFailure):
                                continue
                            network = network if network is not None else self._load(case, data, record).eval()
                            fresh = self._statistics(network, data, shift, draw)
                            checked += 1
                            if len(stored) != len(labels) or not torch.equal(fresh, stored):
                                differ = (int((fresh != stored).reshape(len(fresh), -1).any(1).sum())
                                          if stored.shape == fresh.shape else len(fresh))
                                problems.append(
                                    f"{case.id} repeat {repeat + 1} network {i} ({record.key[:12]}) under "
                                    f"{shift.label}{f' draw {draw + 1}' if draw else ''}: {differ} of {len(fresh)} "
                                    f"stored per-image evaluations differ from the network's (eval {key[:12]})")
                    if i > 0:
                        record.state = None
                if progress is not None:
                    progress(f"{case.id} repeat {repeat + 1}: {checked} evaluations checked")
        return checked, problems

    def prepare_shifted_sets(self, cases: Sequence[CaseKey]) -> None:
        """Load or generate every pixel-shifted test set the cases need, with all of this process's workers
        (before the work is spread over processes that would each want every core)."""
        pixel = [s for s in self.shifts if s.kind == "pixel"]
        for dataset in dict.fromkeys(c.dataset for c in cases):
            self.shifted.ensure_pixel_sets(self.data(dataset), pixel)

    def compute_repeat(self, case: CaseKey, repeat: int) -> None:
        """Train, prune and evaluate one repeat of a case into the store (a worker process's unit of work);
        :meth:`result` then reads it from there."""
        self._repeat(case, self.data(case.dataset), repeat)
        self._repeats.pop((case, repeat), None)  # a worker moves on to other pieces

    def compute_measures(self, case: CaseKey) -> None:
        """Similarity and features of a case's first repeat into the store (a worker process's unit of work)."""
        self._first_measures(case)
        self._repeats.pop((case, 0), None)

    def _stored_repeat(self, case: CaseKey, repeat: int) -> None:
        self._repeat(case, self.data(case.dataset), repeat)

    def _first_costs(self, case: CaseKey) -> None:
        data = self.data(case.dataset)
        self._costs(case, data, self._repeat(case, data, 0)[1],
                    structured=bool(self.methods[case.method].item.structured))

    def _first_measures(self, case: CaseKey) -> None:
        data = self.data(case.dataset)
        _, records = self._repeat(case, data, 0)
        self._measures(case, data, records)

    def _compute(self, case: CaseKey) -> CaseResult:
        if case.method in self.suite.pruned_checkpoints:
            return self._compute_pruned(case)
        started = time.monotonic()
        data = self.data(case.dataset)
        self._check_task(case.model, data)  # before any training
        repeats, first = [], []
        for repeat in range(self.suite.repeats):
            curves, records = self._repeat(case, data, repeat)
            repeats.append(curves)
            if repeat == 0:
                first = records
        for repeat in range(self.suite.repeats):
            self._repeats.pop((case, repeat), None)
        method = self.methods[case.method]
        # costs, similarity and features are read on the first repeat's networks (the one exported)
        costs = self._costs(case, data, first, structured=bool(method.item.structured))
        similarity, features = self._measures(case, data, first)
        return CaseResult(
            case=case,
            method={**method.identity(), "structured": bool(method.item.structured),
                    "data_informed": bool(method.item.data_informed),
                    # as JSON would write them: a plugin's numpy number or Path must not break the report
                    "params": json.loads(json.dumps(method.item.params(), default=str))},
            ratios=tuple(r.ratio for r in first[1:]),
            repeats=tuple(repeats),
            resampling=self._resampling(len(repeats)),
            costs=costs,
            seconds=time.monotonic() - started,
            shift_sources=self._shift_sources(data),
            shift_errors=self._shift_errors(data, repeats),
            similarity=similarity,
            features=features,
            metric=self.metric_info(data),
        )

    def _measures(self, case: CaseKey, data: PreparedData,
                  records: list[NetworkRecord]) -> tuple[SimilarityResult | None, FeaturesResult | None]:
        """Functional similarity and informative features of one repeat's networks, as the suite asks."""
        parent, steps = records[0], records[1:]
        self._check_measures_apply(data)
        context = self._context(case, data)
        similarity = features = None
        if self.suite.similarity is not None:
            similarity = case_similarity(context, self.suite.similarity, parent, steps)
        if self.suite.features is not None:
            features = case_features(context, self.suite.features, parent, steps)
        for record in steps:
            record.state = None
        return similarity, features

    def _check_task(self, model: str, data: PreparedData) -> None:
        """What the dataset's task asks of a suite, checked once per model x dataset before any training: a
        metric that scores the task, no measure defined for classification only, a model whose outputs fit
        (logits ``(N, classes)`` for classification, ``(N, classes, H, W)`` at the image's size for
        segmentation). Raises :class:`CaseError` saying which and what would fit."""
        if (model, data.name) in self._task_checked:
            return
        self.metric(data)
        self._check_measures_apply(data)
        splits = data.splits
        with torch.random.fork_rng(devices=[]), torch.no_grad():  # leaves the seeded streams as they were
            outputs = self.build(model, data).eval()(data.normalize(splits.test.images[:1]))
        shape = tuple(getattr(outputs, "shape", ()))
        height, width = splits.test.images.shape[1:3]
        dense = splits.task == "segmentation"
        expected = (1, splits.num_classes, height, width) if dense else (1, splits.num_classes)
        if shape != expected:
            what = "dense logits (N, classes, H, W) at the image's size" if dense else "logits (N, classes)"
            raise CaseError(f"model {model!r} returns outputs of shape {shape or type(outputs).__name__} for one "
                            f"{height}x{width} image of dataset {data.name!r}, a {splits.task} dataset with "
                            f"{splits.num_classes} classes: it needs {what}, {expected}; use a "
                            f"{splits.task} model (`robustprune plugins` lists the models)")
        self._task_checked.add((model, data.name))

    def _check_measures_apply(self, data: PreparedData) -> None:
        """Functional similarity and informative features are defined on one class per image: a suite asking for
        them on a segmentation dataset fails its cases with that, not with numbers that mean something else."""
        asked = [name for name in ("similarity", "features") if getattr(self.suite, name) is not None]
        if asked and data.splits.task != "classification":
            raise CaseError(f"{' and '.join(asked)} apply to classification only (agreement of top-1 classes, "
                            f"features that keep an image's class); dataset {data.name!r} is a {data.splits.task} "
                            f"dataset: remove Suite({', '.join(f'{n}=...' for n in asked)}) for it")

    def _repeat(self, case: CaseKey, data: PreparedData, repeat: int) -> tuple[RepeatCurves, list[NetworkRecord]]:
        """One repeat of a case: its parent, its cascade (seeded by ``suite.seed + repeat``), every evaluation.

        Kept until the case's result is made, so what :meth:`work_plan` read is not read again."""
        done = self._repeats.get((case, repeat))
        if done is not None:
            return done
        seed = self.suite.seed + repeat
        parent = self.parent(case.model, case.dataset, repeat)
        steps = self._cascade(case, data, parent, seed)
        records = [parent, *steps]
        curves = self._evaluate(case, data, records, seed)
        if repeat > 0:
            for record in steps:
                record.state = None  # read again if needed; curves are what later repeats are kept for
        self._repeats[(case, repeat)] = curves, records
        return curves, records

    def _resampling(self, repeats: int) -> Resampling:
        return Resampling(repeats=repeats, samples=self.suite.bootstrap, level=self.suite.confidence)

    def _context(self, case: CaseKey, data: PreparedData) -> CaseContext:
        """The narrow view of this run that the measures beyond accuracy receive."""
        return CaseContext(
            case=case, data=data, store=self.options.store, device=self.options.device, numerics=self.numerics,
            seed=self.suite.seed,
            gate_ratio=self.suite.gate_ratio_for(case.method), progress=self._progress(case.id),
            load=lambda record: self._load(case, data, record).eval(),
            test_inputs=lambda: self.test_inputs(data),
            parent_of_seed=lambda seed: self.trained_parent(case.model, case.dataset, seed),
        )

    def _shift_errors(self, data: PreparedData, repeats: Sequence[RepeatCurves]) -> dict[str, str]:
        """The case's shifts missing from any repeat's curves, with why (a shift that failed after this case read
        its evaluations from the store is not the case's error)."""
        present = set.intersection(*(set(r.accuracy) for r in repeats)) if repeats else set()
        return {s.label: self.shifted.failure(data, s) or f"shift {s.label} was not evaluated on {data.name}"
                for s in self.shifts if s.label not in present}

    def _shift_sources(self, data: PreparedData) -> dict[str, str]:
        return {s.label: self.shifted.source(data, s) for s in self.shifts
                if not s.is_nominal and self.shifted.failure(data, s) is None}

    # ------------------------------------------------------------------ pruned checkpoints

    def _compute_pruned(self, case: CaseKey) -> CaseResult:
        """A network pruned elsewhere: one network against its parent, through the same evaluation cache."""
        started = time.monotonic()
        data = self.data(case.dataset)
        parent = self.parent(case.model, case.dataset)
        record, info = self._pruned_record(case, data, parent)
        records = [parent, record]
        curves = self._evaluate(case, data, records, self.suite.seed)  # one network: one repeat
        # a pruned checkpoint is costed as masked: nothing says its zeros form whole channels
        costs = self._costs(case, data, records, structured=False)
        return CaseResult(
            case=case,
            method={"name": case.method, "plugin": "pruned checkpoint", "version": info["sha256"][:12],
                    "structured": False, "data_informed": False, "pruned_checkpoint": info},
            ratios=(record.ratio,),
            repeats=(curves,),
            resampling=self._resampling(1),
            costs=costs,
            seconds=time.monotonic() - started,
            shift_sources=self._shift_sources(data),
            shift_errors=self._shift_errors(data, [curves]),
            metric=self.metric_info(data),
        )

    def _pruned_record(self, case: CaseKey, data: PreparedData,
                       parent: NetworkRecord) -> tuple[NetworkRecord, dict[str, Any]]:
        """The pruned checkpoint read, checked against the model and its parent, and stored like a cascade step.

        Keyed by the file's content and the parent's key: a replaced file (or parent) is evaluated again.
        """
        entry = self.suite.pruned_entries[case.method]
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
            self._progress(case.id)(f"pruned network from checkpoint {path}")
            network = self.build(case.model, data)
            try:
                pruned = read_pruned(path, network, self._state(parent, case), what)
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

    # ------------------------------------------------------------------ cascades

    def _cascade(self, case: CaseKey, data: PreparedData, parent: NetworkRecord, seed: int) -> list[NetworkRecord]:
        """Prune to each ratio in turn, starting from the previous retrained network (``seed``: the repeat's)."""
        if self.suite.search == "bisect":
            return self._bisect(case, data, parent, seed)
        previous = parent
        steps: list[NetworkRecord] = []
        for index, ratio in enumerate(self.suite.ratios):
            where = f"ratio {ratio:.3g} ({index + 1}/{len(self.suite.ratios)})" + self._repeat_tag(seed)
            record = self._step(case, data, previous, ratio, where, seed)
            if previous is not parent:
                previous.state = None  # only the newest network's weights are needed for the next step
            steps.append(record)
            previous = record
        return steps

    def _repeat_tag(self, seed: int) -> str:
        """`` repeat 2/3`` in progress lines and work-log labels, when there is more than one repeat."""
        if self.suite.repeats == 1:
            return ""
        return f" repeat {seed - self.suite.seed + 1}/{self.suite.repeats}"

    def _bisect(self, case: CaseKey, data: PreparedData, parent: NetworkRecord, seed: int) -> list[NetworkRecord]:
        """Find the nominal prune potential by bisection over the grid, retraining only the probed ratios.

        Each probe prunes from the largest probed ratio below it (the cascade's
        rule, with gaps). On a monotone curve the answer equals the full grid's:
        the largest qualifying ratio and the smallest failing one are both
        probed. The gate ratio is always probed, so the gate can be read.
        """
        ratios = self.suite.ratios
        threshold = self._score(case, data, parent, NOMINAL_SHIFT) - self.suite.delta
        probed: dict[int, NetworkRecord] = {}

        def probe(index: int) -> bool:
            below = [i for i in probed if i < index]
            previous = probed[max(below)] if below else parent
            where = f"ratio {ratios[index]:.3g} (bisection probe {len(probed) + 1})"
            probed[index] = self._step(case, data, previous, ratios[index], where, seed)
            return self._score(case, data, probed[index], NOMINAL_SHIFT) >= threshold - 1e-12

        bisect_last_qualifying(len(ratios), probe)
        gate = ratios.index(self.suite.gate_ratio_for(case.method))
        if gate not in probed:
            probe(gate)
        self._progress(case.id)(f"bisection retrained {len(probed)} of {len(ratios)} grid ratios")
        return [probed[i] for i in sorted(probed)]

    def _step(self, case: CaseKey, data: PreparedData, previous: NetworkRecord, ratio: float,
              where: str, seed: int) -> NetworkRecord:
        """One prune + retrain step from ``previous`` (loaded from the store when already done)."""
        method_reg = self.methods[case.method]
        method = method_reg.item
        recipe = self.recipes[case.model]
        # the suite's retrain length, else the recipe's own (VGG: 150 of 300 epochs), else the full recipe
        epochs = self.suite.retrain_epochs
        if epochs is None:
            epochs = recipe.epochs if recipe.retrain_epochs is None else recipe.retrain_epochs
        step_seed = int(make_key([seed, case.method, ratio])[:8], 16)
        spec = {"kind": "pruned", "method": method_reg.identity(), "params": method.params(),
                "library": prune_library_hash(),
                "previous": previous.key, "ratio": ratio, "retrain_epochs": epochs,
                "recipe": recipe.to_dict(), "data_batch": int(method.data_batch_size), "seed": step_seed,
                "numerics": self.numerics, **self._mix_key(data)}
        key = make_key(spec)
        progress = self._progress(case.id)

        def compute() -> dict[str, Any]:
            progress(f"{where}: pruning")
            network = self._load(case, data, previous)
            previous_masks = previous.masks or full_masks(network)
            masks, achieved = self._prune(case, method, network, ratio, previous_masks, data, step_seed)
            train(network, data.train_inputs, data.train_labels, recipe, epochs=epochs, seed=step_seed,
                  pad_value=data.pad_value, masks=masks, device=self.options.device,
                  progress=lambda m: progress(f"{where}: retrain {m}"), epoch_inputs=self._epoch_inputs(data))
            return {"state": _cpu_state(network), "masks": masks, "achieved": achieved}

        stored = self.options.store.load_or_compute("network", key, compute, spec, f"{case.id} {where}")
        return NetworkRecord(key, ratio, float(stored["achieved"]), stored["state"], stored["masks"])

    def _prune(self, case: CaseKey, method: PruneMethod, network: nn.Module, ratio: float,
               previous_masks: Mapping[str, torch.Tensor], data: PreparedData,
               seed: int) -> tuple[Masks, float]:
        generator = torch.Generator().manual_seed(seed)
        batch = None
        if method.data_informed:
            # the size may follow from the network (SiPP's and PFP's bound); 0 asks for the default 128
            wanted = method.data_size(network, data.train_inputs[:2].clone())
            size = min(int(wanted) or 128, len(data.train_inputs))
            index = torch.randperm(len(data.train_inputs), generator=generator)[:size]
            batch = data.train_inputs[index]
        context = PruneContext(
            masks={k: v.clone() for k, v in previous_masks.items()},
            generator=generator,
            example_input=data.train_inputs[:2].clone(),
            data=batch,
            network=network,
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

    # ------------------------------------------------------------------ evaluations and costs

    def _draws(self, shift: Shift) -> int:
        """Independent draws of a noise (tensor) shift; every other shift is one fixed set."""
        return self.suite.noise_draws if shift.kind == "tensor" else 1

    def _eval_key(self, record: NetworkRecord, data: PreparedData, shift: Shift, draw: int = 0) -> str:
        spec: dict[str, Any] = {"kind": "eval", "network": record.key, "data": data.key,
                                "shift": self.shifted.identity(data, shift), "seed": self.suite.seed,
                                "numerics": self.numerics,
                                "metric": {**self.metric(data).identity(), "library": scores_library_hash()}}
        if draw:
            spec["draw"] = draw
        published = self.shifted.published(data, shift)
        if published is not None:  # what was evaluated is the file's content, not a generated set
            spec["published"] = published.digest
        return make_key(spec)

    def _statistics(self, network: nn.Module, data: PreparedData, shift: Shift, draw: int = 0) -> torch.Tensor:
        """The metric's per-image statistics of ``network`` on ``shift`` (what the store keeps of an evaluation)."""
        return evaluate(network, self.shifted.inputs(data, shift, draw), self.shifted.labels(data, shift),
                        self.metric(data).item.statistics, data.splits.num_classes, self.options.device)

    def _scores(self, data: PreparedData, statistics: Sequence[torch.Tensor]) -> list[float]:
        """The score of each network from its per-image statistics on one set."""
        totals = torch.stack([s.sum(0) for s in statistics]).numpy()
        values = self.metric(data).item.score(totals, len(statistics[0]))
        return [float(v) for v in values]

    def _score(self, case: CaseKey, data: PreparedData, record: NetworkRecord, shift: Shift) -> float:
        """One network's score on one shift, through the same cache as full evaluations."""

        def compute() -> torch.Tensor:
            return self._statistics(self._load(case, data, record), data, shift)

        key = self._eval_key(record, data, shift)
        statistics = self.options.store.load_or_compute("eval", key, compute, {
            "network": record.key, "shift": self.shifted.identity(data, shift)}, f"{case.id} {shift.label}")
        return self._scores(data, [statistics])[0]

    def _evaluate(self, case: CaseKey, data: PreparedData, records: list[NetworkRecord], seed: int) -> RepeatCurves:
        """Every network on every shift (and every draw of a noise shift), each evaluation cached; then the
        scores on the whole sets and on the bootstrap's image resamples, from the stored per-image statistics.

        Each shift is scored against its own labels: a published set (CIFAR-10.1)
        has other images and labels than the nominal test set. A shift that
        fails (its plugin's code raises, say) is left out of the curves: the
        result names it in ``shift_errors`` and only the checks needing it fail.
        """
        usable = [shift for shift in self.shifts if self.shifted.failure(data, shift) is None]
        labels = {shift.label: self.shifted.labels(data, shift) for shift in usable}
        pairs = [(shift, draw) for shift in usable for draw in range(self._draws(shift))]
        eval_keys = {(i, shift.label, draw): self._eval_key(record, data, shift, draw)
                     for i, record in enumerate(records) for shift, draw in pairs}
        statistics: dict[tuple[int, str, int], torch.Tensor] = {}
        missing: list[tuple[int, Shift, int]] = []
        for i, _ in enumerate(records):
            for shift, draw in pairs:
                stored = self.options.store.load("eval", eval_keys[(i, shift.label, draw)])
                if stored is None or len(stored) != len(labels[shift.label]):
                    missing.append((i, shift, draw))
                else:
                    statistics[(i, shift.label, draw)] = stored
        if missing:
            self._evaluate_missing(case, data, records, missing, eval_keys, labels, statistics, seed)
        for record in records[1:]:
            record.state = None  # curves are all that is kept in memory
        accuracies: dict[str, tuple[tuple[float, ...], ...]] = {}
        replicates: dict[str, tuple[tuple[Sequence[float], ...], ...]] | None = {} if self.suite.bootstrap else None
        for shift in usable:
            if self.shifted.failure(data, shift) is not None:  # failed while its sets were made, just now
                continue
            draws_accuracy, draws_replicates = [], []
            for draw in range(self._draws(shift)):
                rows = [statistics[(i, shift.label, draw)] for i in range(len(records))]
                draws_accuracy.append(tuple(self._scores(data, rows)))
                if replicates is not None:
                    resampled = self.resamples.scores(torch.stack(rows).numpy(), self.metric(data).item.score)
                    draws_replicates.append(tuple(array("d", row) for row in resampled))
            accuracies[shift.label] = tuple(draws_accuracy)
            if replicates is not None:
                replicates[shift.label] = tuple(draws_replicates)
        steps = records[1:]
        return RepeatCurves(seed=seed, achieved=tuple(r.achieved for r in steps), parent_key=records[0].key,
                            step_keys=tuple(r.key for r in steps), accuracy=accuracies, replicates=replicates)

    def _evaluate_missing(self, case: CaseKey, data: PreparedData, records: list[NetworkRecord],
                         missing: list[tuple[int, Shift, int]], eval_keys: Mapping[tuple[int, str, int], str],
                         labels: Mapping[str, torch.Tensor], statistics: dict[tuple[int, str, int], torch.Tensor],
                         seed: int) -> None:
        """Run the networks on the (shift, draw) pairs whose statistics are not in the store yet."""
        if self.options.store.looking_up:  # a lookup (work_plan): missing, and nothing to announce
            raise NotStored("eval", records[missing[0][0]].key)
        progress = self._progress(case.id)
        started = time.monotonic()
        progress(f"evaluating {len(missing)} network x shift pairs{self._repeat_tag(seed)}")
        self.shifted.ensure_pixel_sets(data, sorted({s.label: s for _, s, _ in missing if s.kind == "pixel"}.values(),
                                                    key=self.shifts.index))
        by_network: dict[int, list[tuple[Shift, int]]] = {}
        for i, shift, draw in missing:
            by_network.setdefault(i, []).append((shift, draw))
        for i, shifts in by_network.items():
            # one claim per network: cases sharing the parent evaluate it once
            with self.options.store.claim("eval", records[i].key):
                network: nn.Module | None = None
                for shift, draw in shifts:
                    if self.shifted.failure(data, shift) is not None:
                        continue  # its set could not be made: left out of the curves
                    key = eval_keys[(i, shift.label, draw)]
                    preds = self.options.store.load("eval", key)  # done by another process meanwhile?
                    if preds is None or len(preds) != len(labels[shift.label]):
                        if network is None:
                            network = self._load(case, data, records[i])
                        try:
                            preds = self._statistics(network, data, shift, draw)
                        except ShiftFailure:
                            continue  # recorded by ShiftedSets; the checks needing this shift report it
                        spec = {"network": records[i].key, "shift": self.shifted.identity(data, shift)}
                        self.options.store.save("eval", key, preds, {**spec, "draw": draw} if draw else spec)
                        label = shift.label + (f" draw {draw + 1}" if draw else "")
                        self.options.store.log_work("eval", key, f"{case.id} network {i} {label}")
                    statistics[(i, shift.label, draw)] = preds
        progress(f"evaluated{self._repeat_tag(seed)} in {time.monotonic() - started:.1f} s")

    def _costs(self, case: CaseKey, data: PreparedData, records: list[NetworkRecord], *,
               structured: bool) -> list[dict[str, Any]]:
        # weights are read from the store for what is not stored yet (counts, and the whole curve at once
        # for the interleaved latency measurement); then dropped
        costs = curve_costs(records, structured=structured, store=self.options.store,
                            load=lambda record: self._load(case, data, record),
                            inputs=data.train_inputs, label=case.id, progress=self._progress(case.id),
                            time_latency=self.suite.latency)
        for record in records[1:]:
            record.state = None
        return costs


V = TypeVar("V")


def load_dataset(name: str, registered: Registered[DatasetSpec], request: DatasetRequest) -> PreparedData:
    """Dataset ``name`` loaded through its plugin and prepared as tensors, under the key runs store it by."""
    splits = registered.item.load(request)
    # the data key names the data itself: its content hash covers whatever the plugin's code changes
    # in it, so the plugin's source hash stays out (the key also seeds every generated shift's draws:
    # an edit that leaves the data alone leaves the shifted sets, and the numbers, alone)
    identity = {k: v for k, v in registered.identity().items() if k != "source"}
    key = make_key({"dataset": identity, "params": dict(request.params), "seed": request.seed,
                    "content": content_hash(splits)})
    return prepare(name, key, splits)


class Available(dict[str, V]):
    """The suite's names of one kind, resolved; a name several plugins registered is left out, and looking it
    up raises :class:`CaseError` with the clash (so only the cases that use it fail)."""

    def __init__(self, registry: Registry | None, kind: str, names: Sequence[str]) -> None:
        super().__init__()
        self.unavailable: dict[str, str] = {}
        if registry is None:
            return
        for name in names:
            try:
                self[name] = registry.get(kind, name)  # type: ignore[assignment]  # V is Registered[...] here
            except PluginConflictError as exc:
                self.unavailable[name] = str(exc)

    @classmethod
    def derived(cls, source: Available[Any], make: Callable[[str, Any], V]) -> Available[V]:
        """``make(name, item)`` for every available name of ``source``, with its unavailable names."""
        out: Available[V] = cls(None, "", ())
        out.update({name: make(name, item) for name, item in source.items()})
        out.unavailable = dict(source.unavailable)
        return out

    def __missing__(self, name: str) -> V:
        raise CaseError(self.unavailable.get(name, f"{name!r} is not one of the suite's names"))


def _quietly(compute: Callable[[], object]) -> None:
    """Run a lookup (see :meth:`Engine.referenced_entries`): what is missing or failing reads no further."""
    with contextlib.suppress(NotStored, CaseError):
        compute()


def _cpu_state(network: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
