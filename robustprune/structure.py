"""Channel structure of a network, for structured pruning.

A structured method removes whole *channels*: an output filter of a layer (a
row of its weight) together with everything that reads that channel (the
matching input columns of the layers after it). Which rows and columns belong
together is a property of the graph, not of the list of layers, so
:func:`channel_groups` traces the network with ``torch.fx``, runs it once on an
example input to learn every tensor's shape, and follows *channel spaces* (the
channel dimension, dim 1, of each tensor) along the edges of the graph:

* A ``Conv2d`` (``groups=1``) or ``Linear`` layer *consumes* the space of its
  input and *produces* a fresh space for its output.
* Channel-wise operations pass a space through: batch norm, elementwise
  activations (module or functional, in place or not), pooling (including
  adaptive pooling and a mean over the spatial dimensions), dropout, identity,
  scaling by a number. A flatten (the module, the function, ``view`` or
  ``reshape`` from ``(N, C, H, W)`` to ``(N, C*H*W)``) passes the space on with
  ``H*W`` features per channel, so a ``Linear`` after it loses a block of
  ``H*W`` input columns for every removed channel.
* An elementwise addition (or subtraction) of two tensors *joins* their spaces:
  after ``x + y`` channel ``k`` is ``x_k + y_k``, so channel ``k`` can only go
  if every producer drops it. This is how a ResNet stage's stem or shortcut
  conv and every block's last conv end up in one group.
* Anything else (``cat``, slicing, permutes, grouped or depthwise convs,
  products of two tensors, unknown functions or modules, a layer called twice)
  makes every space it touches non-prunable. The analysis may miss a pruning
  opportunity but never removes a channel that something still reads.
* A space that reaches the network output is never pruned (a classifier's
  outputs are the classes), nor the input space (no layer produces it).

:func:`explain_channels` lists every space with the reason it is not prunable,
for when a structured method prunes less of a network than expected.

A removed channel's producers get zero rows, so after batch norm and the
activation it carries at most a constant (the norm's bias); every consumer
ignores it because its columns are zero as well. Zeroing the weights is
therefore enough to remove the channel exactly, and a later compaction can cut
the rows, columns and norm entries out physically.

:func:`allocate_uniform` turns per-channel scores into masks that remove the
same fraction of channels in every group and hit a requested prune ratio; the
first-party structured methods (``ft``, ``random_structured``) are thin
wrappers around it, and third-party structured methods can be too.
:func:`allocate_counts` does the same for per-group budgets that follow from
one global knob (``pfp``: one error bound), root-finding the knob.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .pruning import RATIO_TOLERANCE, Masks, PruneError, prunable_weights, within_tolerance

__all__ = [
    "ChannelGroup",
    "Consumer",
    "StructureError",
    "allocate_counts",
    "allocate_uniform",
    "channel_groups",
    "channel_masks",
    "explain_channels",
]


class StructureError(PruneError):
    """The channel structure of a network could not be analysed (e.g. it is not fx-traceable)."""


# --------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class Consumer:
    """A layer reading a channel space: ``module`` loses ``features_per_channel`` input columns per removed channel.

    ``features_per_channel`` is 1 for a conv (one input channel) and ``H*W``
    for a ``Linear`` after a flatten of a ``C x H x W`` map.
    """

    module: str
    features_per_channel: int = 1


@dataclass
class ChannelGroup:
    """One channel space whose channels are removed together.

    ``producers`` are the Conv2d/Linear modules whose output channels make up
    the space (several when additions join them), ``consumers`` the layers
    reading it and ``norms`` the batch norms applied to it, all in graph order.
    """

    channels: int
    producers: list[str] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """A readable name for reports: the first producer."""
        return self.producers[0] if self.producers else "(no producer)"

    def producer_weights(self, network: nn.Module) -> list[torch.Tensor]:
        """The producers' weights, each viewed as ``(channels, -1)``: one row per channel."""
        weights = prunable_weights(network)
        return [weights[_weight_name(p)].detach().reshape(self.channels, -1) for p in self.producers]

    def filter_l1(self, network: nn.Module) -> torch.Tensor:
        """The l1 norm of each channel's filters, summed over the producers (float64, length ``channels``)."""
        total = np.zeros(self.channels)
        for rows in self.producer_weights(network):
            total += np.abs(_array(rows.float())).sum(axis=1, dtype=np.float64)
        return torch.from_numpy(total)

    def removed_channels(self, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Channels the masks already remove: every producer row is masked out, or every consumer column.

        Either way the channel carries nothing any layer uses, so a cascade
        must treat it as gone.
        """
        rows_dead = np.ones(self.channels, dtype=bool)
        for p in self.producers:
            rows_dead &= ~_array(masks[_weight_name(p)]).reshape(self.channels, -1).any(axis=1)
        if not self.consumers:
            return torch.from_numpy(rows_dead)
        cols_dead = np.ones(self.channels, dtype=bool)
        for c in self.consumers:
            mask = _array(masks[_weight_name(c.module)])
            # (out, C*fpc, ...) -> (out, C, everything else): does anything still read channel i?
            per_channel = mask.reshape(mask.shape[0], self.channels, -1)
            cols_dead &= ~per_channel.any(axis=(0, 2))
        return torch.from_numpy(rows_dead | cols_dead)


def _array(tensor: torch.Tensor | np.ndarray) -> np.ndarray:
    """A CPU numpy view of a tensor (no copy for CPU tensors).

    The mask bookkeeping runs on many tiny arrays; numpy does each in
    microseconds, while torch's per-op thread-pool overhead can cost
    milliseconds on a busy machine.
    """
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def _weight_name(module: str) -> str:
    # the same naming as pruning.prunable_weights
    return f"{module}.weight" if module else "weight"


# --------------------------------------------------------------------------- tracing


def _trace(network: nn.Module) -> torch.fx.GraphModule:
    try:
        return torch.fx.symbolic_trace(network)
    except Exception as exc:  # fx raises many kinds: TraceError, TypeError, NotImplementedError...
        raise StructureError(
            f"cannot analyse the channel structure of {type(network).__name__}: torch.fx could not trace it "
            f"({type(exc).__name__}: {exc}). Structured pruning needs a network whose forward torch.fx "
            "can trace symbolically (no control flow that depends on tensor values); unstructured "
            "methods still work on it"
        ) from exc


class _ShapeRecorder(torch.fx.Interpreter):
    """Runs the traced graph once and records the shape of every tensor a node produces."""

    def __init__(self, module: torch.fx.GraphModule):
        super().__init__(module)
        self.shapes: dict[torch.fx.Node, tuple[int, ...]] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            self.shapes[n] = tuple(result.shape)
        return result


def _record_shapes(
    gm: torch.fx.GraphModule, network: nn.Module, example_input: torch.Tensor
) -> dict[torch.fx.Node, tuple[int, ...]]:
    # The traced graph shares its submodules with `network`: run it in eval mode
    # so that batch norm running statistics are not updated, then restore.
    modes = {m: m.training for m in network.modules()}
    parameter = next(network.parameters(), None)
    x = example_input.to(parameter.device) if parameter is not None else example_input
    recorder = _ShapeRecorder(gm)
    try:
        network.eval()
        with torch.no_grad():
            recorder.run(x)
    except Exception as exc:
        raise StructureError(
            f"cannot analyse the channel structure of {type(network).__name__}: running the traced network "
            f"on an example input of shape {tuple(example_input.shape)} failed ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        for m, training in modes.items():
            m.training = training
    return recorder.shapes


# --------------------------------------------------------------------------- the analysis

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

# Modules that act on each channel separately and keep dim 1 as the channel dim.
_CHANNELWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.Identity,
)  # fmt: skip

_CHANNELWISE_FUNCTIONS: set[Callable[..., Any]] = {
    torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu,
    F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus,
    torch.sigmoid, torch.tanh, F.sigmoid, F.tanh,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
    torch.clone,
}  # fmt: skip

_CHANNELWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_",
    "contiguous", "clone", "float", "to", "detach",
}  # fmt: skip

_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"flatten", "view", "reshape"}
_REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax}
_REDUCE_METHODS = {"mean", "sum", "amax"}
_JOIN_FUNCTIONS = {operator.add, operator.sub, operator.iadd, operator.isub, torch.add, torch.sub}
_JOIN_METHODS = {"add", "add_", "sub", "sub_"}
_SCALE_FUNCTIONS = {operator.mul, operator.truediv, operator.imul, operator.itruediv, torch.mul, torch.div}
_SCALE_METHODS = {"mul", "mul_", "div", "div_"}
# Reading a tensor's shape tells nothing about its values: no effect on its channels.
_SHAPE_METHODS = {"size", "dim", "numel"}
_SHAPE_ATTRIBUTES = {"shape", "ndim", "dtype", "device"}


@dataclass
class _Space:
    """One channel space before union; merged spaces pool their fields at the end."""

    channels: int
    first: int
    producers: list[tuple[int, str]] = field(default_factory=list)
    consumers: list[tuple[int, Consumer]] = field(default_factory=list)
    norms: list[tuple[int, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class _Result:
    """Every channel space of a network: prunable groups and the rest with the reasons."""

    groups: list[ChannelGroup]
    rejected: list[tuple[ChannelGroup, list[str]]]


class _Analysis:
    def __init__(self, network: nn.Module, gm: torch.fx.GraphModule, shapes: dict[torch.fx.Node, tuple[int, ...]]):
        self.modules = dict(network.named_modules())
        self.gm = gm
        self.shapes = shapes
        self.spaces: list[_Space] = []
        self.parent: list[int] = []
        # node -> (space id, features per channel): dim 1 of the node's tensor is channels * fpc
        self.at: dict[torch.fx.Node, tuple[int, int]] = {}
        self.calls: Counter[str] = Counter()
        self.touched: dict[str, set[int]] = defaultdict(set)
        self.index = 0

    # union-find over spaces ----------------------------------------------------
    def _new(self, channels: int, problem: str | None = None) -> int:
        self.spaces.append(_Space(channels=channels, first=self.index))
        self.parent.append(len(self.parent))
        if problem:
            self.spaces[-1].problems.append(problem)
        return len(self.spaces) - 1

    def _find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def _union(self, a: int, b: int) -> int:
        a, b = self._find(a), self._find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)  # the earlier space stays root (stable ordering)
        return min(a, b)

    def _spoil(self, node: torch.fx.Node, problem: str) -> None:
        if node in self.at:
            self.spaces[self._find(self.at[node][0])].problems.append(problem)

    # walking the graph ---------------------------------------------------------
    def run(self) -> _Result:
        for self.index, node in enumerate(self.gm.graph.nodes):
            self._visit(node)
        for name, count in self.calls.items():
            if count > 1:
                for s in self.touched[name]:
                    self.spaces[self._find(s)].problems.append(f"{name} is called {count} times")
        return self._collect()

    def _visit(self, node: torch.fx.Node) -> None:
        if node.op == "placeholder":
            if node in self.shapes:
                self.at[node] = (self._new(_dim1(self.shapes[node]), "it is the network input"), 1)
        elif node.op == "output":
            for n in node.all_input_nodes:
                self._spoil(n, "it reaches the network output")
        elif node.op == "get_attr":
            if node in self.shapes:
                self.at[node] = (self._new(_dim1(self.shapes[node]), f"it is the tensor attribute {node.target}"), 1)
        elif node.op == "call_module":
            self._module(node, str(node.target), self.modules[str(node.target)])
        else:  # call_function, call_method
            self._function(node)

    def _unknown(self, node: torch.fx.Node, what: str) -> None:
        """Conservative fallback: nothing touched by ``node`` may be pruned."""
        problem = f"{what} ({node.name}) is not understood by the channel analysis"
        for n in node.all_input_nodes:
            self._spoil(n, problem)
        if node in self.shapes:
            self.at[node] = (self._new(_dim1(self.shapes[node]), problem), 1)

    def _tensor_inputs(self, node: torch.fx.Node) -> list[torch.fx.Node]:
        return [n for n in node.all_input_nodes if n in self.at]

    def _single_input(self, node: torch.fx.Node) -> torch.fx.Node | None:
        """The only tensor input of ``node`` if it is its first argument, else None."""
        inputs = self._tensor_inputs(node)
        if len(inputs) == 1 and node.args and node.args[0] is inputs[0]:
            return inputs[0]
        return None

    def _pass(self, node: torch.fx.Node, x: torch.fx.Node) -> bool:
        """Pass ``x``'s space to ``node`` if ``node`` keeps batch and channel dims unchanged."""
        out, inp = self.shapes.get(node), self.shapes[x]
        if out is None or len(out) != len(inp) or len(out) < 2 or out[:2] != inp[:2]:
            return False
        if len(out) == 2 and out != inp:
            return False
        self.at[node] = self.at[x]
        return True

    def _module(self, node: torch.fx.Node, name: str, module: nn.Module) -> None:
        x = self._single_input(node)
        if x is None:
            return self._unknown(node, f"module {name} with these inputs")
        space, fpc = self.at[x]
        shape = self.shapes[x]
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            self.calls[name] += 1
            self.touched[name].add(space)
            if isinstance(module, nn.Conv2d):
                if module.groups != 1:
                    return self._unknown(node, f"grouped convolution {name}")
                ok = len(shape) == 4 and fpc == 1
                out_channels = module.out_channels
            else:
                # a Linear acts on the last dim: only the channel dim of a 2-d input is ours
                ok = len(shape) == 2
                out_channels = module.out_features
            if not ok or node not in self.shapes:
                return self._unknown(node, f"layer {name} on an input of shape {shape}")
            self.spaces[self._find(space)].consumers.append((self.index, Consumer(name, fpc)))
            produced = self._new(out_channels)
            self.spaces[produced].producers.append((self.index, name))
            self.touched[name].add(produced)
            self.at[node] = (produced, 1)
        elif isinstance(module, _NORMS):
            if fpc != 1 or not self._pass(node, x):
                return self._unknown(node, f"batch norm {name} on features of shape {shape}")
            self.spaces[self._find(space)].norms.append((self.index, name))
        elif isinstance(module, _CHANNELWISE_MODULES):
            if not self._pass(node, x):
                return self._unknown(node, f"{type(module).__name__} module {name}")
        elif isinstance(module, nn.Flatten):
            if not self._reshape(node, x):
                return self._unknown(node, f"Flatten module {name}")
        else:
            return self._unknown(node, f"{type(module).__name__} module {name}")

    def _function(self, node: torch.fx.Node) -> None:
        target = node.target
        method = node.op == "call_method"
        label = f"method .{target}()" if method else f"function {getattr(target, '__name__', target)}"
        if node not in self.shapes:
            # not a tensor: fine if it only reads shapes, else it inspects values we know nothing about
            if (method and target in _SHAPE_METHODS) or (
                target is getattr and len(node.args) == 2 and node.args[1] in _SHAPE_ATTRIBUTES
            ):
                return
            if target is operator.getitem and not self._tensor_inputs(node):
                return  # indexing a tuple of sizes
            return self._unknown(node, label)
        if (method and target in _JOIN_METHODS) or (not method and target in _JOIN_FUNCTIONS):
            if self._join(node):
                return
        elif (method and target in _SCALE_METHODS) or (not method and target in _SCALE_FUNCTIONS):
            if self._scale(node):
                return
        else:
            x = self._single_input(node)
            if x is not None:
                if (method and target in _CHANNELWISE_METHODS) or (not method and target in _CHANNELWISE_FUNCTIONS):
                    if self._pass(node, x):
                        return
                elif (method and target in _RESHAPE_METHODS) or (not method and target in _RESHAPE_FUNCTIONS):
                    if self._reshape(node, x):
                        return
                elif (method and target in _REDUCE_METHODS) or (not method and target in _REDUCE_FUNCTIONS):
                    if self._reduce(node, x):
                        return
        self._unknown(node, label)

    def _join(self, node: torch.fx.Node) -> bool:
        """``a + b``: both operands must have the output's shape (no broadcasting), and their spaces merge."""
        operands = list(node.args[:2])
        tensors = [a for a in operands if isinstance(a, torch.fx.Node) and a in self.at]
        others = [a for a in operands if not (isinstance(a, torch.fx.Node) and a in self.at)]
        extra = [n for n in node.all_input_nodes if n in self.at and n not in tensors]
        if extra or any(isinstance(a, torch.fx.Node) for a in others):
            return False
        out = self.shapes[node]
        if len(tensors) == 1:
            return self._pass(node, tensors[0]) and all(isinstance(a, (int, float)) for a in others)
        if len(tensors) != 2 or any(self.shapes[t] != out for t in tensors):
            return False
        (sa, fa), (sb, fb) = self.at[tensors[0]], self.at[tensors[1]]
        if fa != fb or len(out) < 2:
            return False
        # the spaces' fields stay where they are: _collect pools them by root
        self.at[node] = (self._union(sa, sb), fa)
        return True

    def _scale(self, node: torch.fx.Node) -> bool:
        """``x * 2`` or ``x / 2``: channel-wise; a product of two tensors is not understood."""
        operands = list(node.args[:2])
        tensors = [a for a in operands if isinstance(a, torch.fx.Node)]
        numbers = [a for a in operands if isinstance(a, (int, float))]
        if len(tensors) != 1 or len(numbers) != 1 or tensors[0] not in self.at or len(self._tensor_inputs(node)) != 1:
            return False
        return self._pass(node, tensors[0])

    def _reshape(self, node: torch.fx.Node, x: torch.fx.Node) -> bool:
        """Identity reshapes pass through; ``(N, C, *S) -> (N, C*prod(S))`` flattens with prod(S) features per channel."""
        out, inp = self.shapes[node], self.shapes[x]
        space, fpc = self.at[x]
        if out == inp:
            self.at[node] = self.at[x]
            return True
        if len(inp) >= 3 and fpc == 1 and out == (inp[0], math.prod(inp[1:])):
            self.at[node] = (space, math.prod(inp[2:]))
            return True
        return False

    def _reduce(self, node: torch.fx.Node, x: torch.fx.Node) -> bool:
        """A mean/sum/max over spatial dims only (dims >= 2) keeps the channels."""
        inp = self.shapes[x]
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        if dims is None or len(inp) < 3 or self.at[x][1] != 1:
            return False
        dims = [dims] if isinstance(dims, int) else list(dims)
        if not all(isinstance(d, int) for d in dims) or any(d % len(inp) < 2 for d in dims):
            return False
        out = self.shapes[node]
        if out[:2] != inp[:2]:
            return False
        self.at[node] = (self.at[x][0], 1)
        return True

    # results ---------------------------------------------------------------------
    def _collect(self) -> _Result:
        pooled: dict[int, list[_Space]] = defaultdict(list)
        for s, space in enumerate(self.spaces):
            pooled[self._find(s)].append(space)
        groups: list[tuple[int, ChannelGroup, list[str]]] = []
        for members in pooled.values():
            first = min(m.first for m in members)
            producers = [p for _, p in sorted(p for m in members for p in m.producers)]
            consumers = [c for _, c in sorted(((i, c) for m in members for i, c in m.consumers), key=lambda t: t[0])]
            norms = [n for _, n in sorted(n for m in members for n in m.norms)]
            problems = list(dict.fromkeys(p for m in members for p in m.problems))
            if not producers and not problems:
                problems.append("no Conv2d or Linear layer produces it")
            group = ChannelGroup(members[0].channels, producers, consumers, norms)
            groups.append((first, group, problems))
        groups.sort(key=lambda t: t[0])
        return _Result(
            groups=[g for _, g, problems in groups if not problems],
            rejected=[(g, problems) for _, g, problems in groups if problems],
        )


def _dim1(shape: tuple[int, ...]) -> int:
    return shape[1] if len(shape) >= 2 else 0


def _analyse(network: nn.Module, example_input: torch.Tensor) -> _Result:
    gm = _trace(network)
    shapes = _record_shapes(gm, network, example_input)
    return _Analysis(network, gm, shapes).run()


def channel_groups(network: nn.Module, example_input: torch.Tensor) -> list[ChannelGroup]:
    """The prunable channel groups of ``network``, in order of first appearance in its graph.

    ``example_input`` is a ``(N, C, H, W)`` batch the network accepts (its
    values do not matter; the network runs once on it in eval mode, and its
    batch norm statistics are left untouched). Raises :class:`StructureError`
    if the network cannot be traced with ``torch.fx``.
    """
    return _analyse(network, example_input).groups


def explain_channels(network: nn.Module, example_input: torch.Tensor) -> list[str]:
    """One line per channel space: prunable or not, and why not. For debugging a structured method."""
    result = _analyse(network, example_input)
    lines = [f"prunable: {g.channels} channels from {', '.join(g.producers)}" for g in result.groups]
    for g, problems in result.rejected:
        origin = ", ".join(g.producers) if g.producers else "no producer"
        lines.append(f"not prunable: {g.channels} channels from {origin}: {'; '.join(problems)}")
    return lines


# --------------------------------------------------------------------------- masks


def channel_masks(
    network: nn.Module, groups: Sequence[ChannelGroup], keep: Sequence[torch.Tensor]
) -> Masks:
    """Weight masks removing the channels with ``keep[i] == False`` of each ``groups[i]``.

    Returns a CPU bool mask for every prunable weight (all True where no
    group reaches): the producers' rows of removed channels and the consumers'
    matching input columns (a block of ``features_per_channel`` columns each)
    are False. ``keep[i]`` is a bool tensor (or array) of ``groups[i].channels``
    entries, True = keep.
    """
    if len(keep) != len(groups):
        raise ValueError(f"{len(groups)} channel groups but {len(keep)} keep vectors")
    masks = {name: np.ones(tuple(w.shape), dtype=bool) for name, w in prunable_weights(network).items()}
    for group, kept in zip(groups, keep):
        kept = _array(kept).astype(bool).ravel()
        if kept.size != group.channels:
            raise ValueError(
                f"keep vector for the group of {group.name} has {kept.size} entries, "
                f"but the group has {group.channels} channels"
            )
        dropped = ~kept
        if not dropped.any():
            continue
        for producer in group.producers:
            masks[_weight_name(producer)][dropped] = False
        for consumer in group.consumers:
            masks[_weight_name(consumer.module)][:, np.repeat(dropped, consumer.features_per_channel)] = False
    return {name: torch.from_numpy(mask) for name, mask in masks.items()}


# --------------------------------------------------------------------------- allocation


class _Accounting:
    """Exact count of the kept prunable weights for any number of kept channels per group.

    Within a group, channels go in a fixed order (lowest score first), so a
    group's state is one integer: how many channels it keeps. A weight
    ``W[o, i, ...]`` survives if its producer channel ``o`` is kept, the
    channel ``i`` it reads is kept and the previous masks keep it. With ``K``
    the previous mask summed over the kernel (and over the
    ``features_per_channel`` columns of one channel), and rows and columns
    sorted best channel first, a layer keeping its best ``a`` output and ``b``
    input channels keeps the 2-d prefix sum ``K[:a, :b]``. Tabulating those
    sums once turns every evaluation into a few integer look-ups: exact
    (overlaps of removed rows and columns included) and cheap enough to try
    hundreds of thousands of allocations.
    """

    def __init__(
        self,
        network: nn.Module,
        groups: Sequence[ChannelGroup],
        scores: Sequence[torch.Tensor],
        previous: Mapping[str, torch.Tensor],
    ):
        self.best_first: list[np.ndarray] = []  # per group: channels, the most worth keeping first
        self.low: list[int] = []  # fewest kept channels allowed (never empty a group)
        self.high: list[int] = []  # most kept channels allowed (removed channels stay removed)
        for group, score in zip(groups, scores):
            score = _array(torch.as_tensor(score).double() if isinstance(score, torch.Tensor) else score)
            score = score.astype(np.float64).ravel()
            if score.size != group.channels:
                raise ValueError(
                    f"scores for the group of {group.name} have {score.size} entries, "
                    f"but the group has {group.channels} channels"
                )
            if np.isnan(score).any():
                raise PruneError(f"channel scores for the group of {group.name} contain NaN")
            dead = _array(group.removed_channels(previous))
            score = np.where(dead, -np.inf, score)
            # stable sort: equal scores are removed in channel order, so results are deterministic
            self.best_first.append(np.argsort(score, kind="stable")[::-1].copy())
            self.low.append(1)
            self.high.append(max(1, group.channels - int(dead.sum())))

        weights = prunable_weights(network)
        self.total = sum(w.numel() for w in weights.values())
        producer_of = {_weight_name(p): g for g, group in enumerate(groups) for p in group.producers}
        consumer_of = {
            _weight_name(c.module): (g, c.features_per_channel) for g, group in enumerate(groups) for c in group.consumers
        }
        self.constant = 0  # kept weights of the layers no group touches
        self.tables: list[np.ndarray] = []  # per layer: kept weights by (producer count, consumer count)
        self.ends: list[tuple[int, int]] = []  # per layer: (producer group, consumer group), -1 for none
        for name in weights:
            prev = _array(previous[name]).astype(bool, copy=False)
            p = producer_of.get(name, -1)
            c, fpc = consumer_of.get(name, (-1, 1))
            if p < 0 and c < 0:
                self.constant += int(prev.sum())
                continue
            # K[o, i]: kept weights between output channel o and input channel i
            in_channels = groups[c].channels if c >= 0 else prev.shape[1]
            k = prev.reshape(prev.shape[0], in_channels, -1).sum(axis=2, dtype=np.int64)
            if p >= 0:  # row a: the best a output channels kept
                k = np.vstack([np.zeros((1, k.shape[1]), np.int64), k[self.best_first[p]].cumsum(axis=0)])
            else:  # one row: every output channel kept
                k = k.sum(axis=0, keepdims=True)
            if c >= 0:
                k = np.hstack([np.zeros((k.shape[0], 1), np.int64), k[:, self.best_first[c]].cumsum(axis=1)])
            else:
                k = k.sum(axis=1, keepdims=True)
            self.tables.append(k)
            self.ends.append((p, c))

    def kept(self, counts: np.ndarray) -> np.ndarray:
        """Kept weights for each row of ``counts`` (shape (M, groups)), an int array of length M."""
        counts = np.atleast_2d(counts)
        zero = np.zeros(len(counts), dtype=np.int64)
        total = np.full(len(counts), self.constant, dtype=np.int64)
        for table, (p, c) in zip(self.tables, self.ends):
            total += table[counts[:, p] if p >= 0 else zero, counts[:, c] if c >= 0 else zero]
        return total

    def ratio(self, counts: Sequence[int]) -> float:
        return 1.0 - int(self.kept(np.asarray(counts))[0]) / self.total

    def keep_vector(self, g: int, count: int) -> np.ndarray:
        keep = np.zeros(len(self.best_first[g]), dtype=bool)
        keep[self.best_first[g][:count]] = True
        return keep


def _uniform_steps(channels: Sequence[int]) -> list[int]:
    """Groups in the order their kept count grows as the kept fraction f rises from 0 to 1.

    Group g keeps round(f * C_g) channels, i.e. its k-th channel returns at
    f = (k - 1/2) / C_g. Sorting these breakpoints turns the bisection over f
    into a bisection over a list; equal breakpoints (groups of equal width)
    are split by group order, so consecutive levels differ by one channel.
    """
    steps = sorted(((2 * k - 1) / (2 * c), g) for g, c in enumerate(channels) for k in range(1, c + 1))
    return [g for _, g in steps]


def _counts_at(level: int, steps: Sequence[int], accounting: _Accounting) -> np.ndarray:
    """Kept counts at a bisection level (-1 = keep the fewest), clamped to each group's bounds."""
    counts = np.bincount(np.asarray(steps[: level + 1], dtype=np.int64), minlength=len(accounting.low))
    return np.clip(counts, accounting.low, accounting.high)


def _moves(groups: int, size: int) -> Iterable[np.ndarray]:
    """All integer vectors with ``sum(|d|) == size``, in a fixed order, in blocks.

    A vector with ``size`` = m is m single-channel adjustments (+1 or -1) spread
    over some groups.
    """
    for support in range(1, min(size, groups) + 1):
        # magnitudes: compositions of `size` into `support` positive parts
        combos = list(itertools.combinations(range(1, size), support - 1))
        cuts = np.array(combos, dtype=np.int64).reshape(len(combos), support - 1)
        bounds = np.hstack([np.zeros((len(cuts), 1), np.int64), cuts, np.full((len(cuts), 1), size, np.int64)])
        magnitudes = np.diff(bounds, axis=1)
        signs = np.array(list(itertools.product((-1, 1), repeat=support)), dtype=np.int64)
        values = (magnitudes[:, None, :] * signs[None, :, :]).reshape(-1, support)
        for chosen in _blocks(itertools.combinations(range(groups), support), max(1, 16384 // len(values))):
            where = np.array(chosen, dtype=np.int64)  # (supports, support)
            block = np.zeros((len(where), len(values), groups), dtype=np.int64)
            rows = np.arange(len(where))[:, None, None]
            block[rows, np.arange(len(values))[None, :, None], where[:, None, :]] = values[None, :, :]
            yield block.reshape(-1, groups)


def _blocks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    iterator = iter(items)
    while block := list(itertools.islice(iterator, size)):
        yield block


_SEARCH_BUDGET = 2_000_000
"""Most allocations tried around the uniform one before giving up (a fraction of a second)."""


def _adjust(accounting: _Accounting, base: np.ndarray, target_kept: float, tolerance: float) -> np.ndarray:
    """The allocation closest to ``base`` (fewest +-1 channel moves) whose kept count fits the tolerance.

    Tries every allocation ``sum(|counts - base|) == m`` for m = 1, 2, ...
    (vectorized); among the fitting ones at the smallest m it takes the one
    nearest the target, ties to the first in a fixed order, so the result is
    deterministic. When the budget runs out it walks greedily (the best move of
    one or two channels at a time) from the nearest allocation seen so far.
    """
    low, high = np.asarray(accounting.low), np.asarray(accounting.high)
    best, best_error = base, abs(float(accounting.kept(base)[0]) - target_kept)
    tried, size = 0, 0
    while tried < _SEARCH_BUDGET:
        size += 1
        fitting: tuple[float, np.ndarray] | None = None
        for block in _moves(len(base), size):
            counts = base + block
            counts = counts[((counts >= low) & (counts <= high)).all(axis=1)]
            tried += len(block)
            if not len(counts):
                continue
            errors = np.abs(accounting.kept(counts) - target_kept)
            i = int(np.argmin(errors))
            if errors[i] < best_error:
                best, best_error = counts[i], float(errors[i])
            if errors[i] <= tolerance and (fitting is None or errors[i] < fitting[0]):
                fitting = (float(errors[i]), counts[i])
        if fitting is not None:
            return fitting[1]
        if size > int((high - low).sum()):  # every allocation within the bounds has been tried
            return best
    # greedy walk: descend with moves of one or two channels while the error drops
    while best_error > tolerance:
        neighbours = np.vstack([best + block for m in (1, 2) for block in _moves(len(base), m)])
        neighbours = neighbours[((neighbours >= low) & (neighbours <= high)).all(axis=1)]
        if not len(neighbours):
            break
        errors = np.abs(accounting.kept(neighbours) - target_kept)
        i = int(np.argmin(errors))
        if errors[i] >= best_error:
            break
        best, best_error = neighbours[i], float(errors[i])
    return best


def allocate_uniform(
    network: nn.Module,
    groups: Sequence[ChannelGroup],
    scores: Sequence[torch.Tensor],
    ratio: float,
    previous_masks: Mapping[str, torch.Tensor] | None = None,
) -> Masks:
    """Remove the lowest-scoring channels, the same fraction in every group, to hit ``ratio``.

    ``scores[i]`` scores the channels of ``groups[i]`` (higher = more worth
    keeping). The kept fraction is found by bisection; then the fewest
    single-channel moves (+-1 in individual groups) bring the achieved ratio
    of the prunable weights (dependent input channels included) within
    :data:`~robustprune.pruning.RATIO_TOLERANCE` of ``ratio``. Every group
    keeps at least one channel. Channels that ``previous_masks`` already
    removed are removed first and stay removed, and the returned masks (one
    per prunable weight) are combined with ``previous_masks``.

    Raises :class:`~robustprune.pruning.PruneError` when the ratio cannot be
    reached, naming the reachable ratios.
    """

    def uniform(accounting: _Accounting, ratio: float) -> np.ndarray:
        # Bisection over the uniform kept fraction; the ratio does not increase with the level.
        steps = _uniform_steps([g.channels for g in groups])
        lo, hi = -1, len(steps) - 1
        if accounting.ratio(_counts_at(hi, steps, accounting)) >= ratio:
            lo = hi
        else:
            while hi - lo > 1:  # invariant: ratio(lo) >= ratio > ratio(hi)
                mid = (lo + hi) // 2
                if accounting.ratio(_counts_at(mid, steps, accounting)) >= ratio:
                    lo = mid
                else:
                    hi = mid
        return np.stack([_counts_at(lo, steps, accounting), _counts_at(hi, steps, accounting)])

    return _allocate(network, groups, scores, ratio, previous_masks, uniform)


def allocate_counts(
    network: nn.Module,
    groups: Sequence[ChannelGroup],
    scores: Sequence[torch.Tensor],
    ratio: float,
    counts: Callable[[float], Sequence[int]],
    previous_masks: Mapping[str, torch.Tensor] | None = None,
    knob_range: tuple[float, float] = (1e-300, 1e150),
) -> Masks:
    """Keep the best ``counts(knob)[i]`` channels of each ``groups[i]``, with ``knob`` root-found to hit ``ratio``.

    For methods whose per-group budgets come from one global parameter (PFP:
    one error bound ``eps`` gives every layer its sample size). ``counts``
    maps a knob value in ``knob_range`` to the number of channels to keep per
    group; it must not increase as the knob grows. Counts are clamped to what
    a group can keep (at least one channel, at most the channels that earlier
    steps left). The knob is found by bisection on a log scale (both ends of
    ``knob_range`` must be > 0); then, as in :func:`allocate_uniform`, the
    fewest single-channel moves bring the ratio within
    :data:`~robustprune.pruning.RATIO_TOLERANCE`. ``scores`` decide *which*
    channels of a group are kept (the highest first); everything else behaves
    like :func:`allocate_uniform`, errors included.
    """
    low, high = knob_range
    if not 0 < low < high:
        raise ValueError(f"knob_range must satisfy 0 < low < high, got {knob_range}")

    def search(accounting: _Accounting, ratio: float) -> np.ndarray:
        def at(knob: float) -> np.ndarray:
            proposed = np.asarray(counts(knob), dtype=np.float64).ravel()
            if proposed.size != len(groups):
                raise ValueError(f"counts({knob:g}) returned {proposed.size} counts for {len(groups)} groups")
            return np.clip(np.ceil(proposed - 1e-9).astype(np.int64), accounting.low, accounting.high)

        lo, hi = math.log(low), math.log(high)
        if accounting.ratio(at(low)) >= ratio:  # even the smallest knob prunes enough
            return at(low)[None]
        if accounting.ratio(at(high)) < ratio:  # even the largest knob prunes too little
            return at(high)[None]
        for _ in range(400):  # invariant: ratio(lo) < ratio <= ratio(hi)
            mid = (lo + hi) / 2
            if mid in (lo, hi):
                break
            if accounting.ratio(at(math.exp(mid))) >= ratio:
                hi = mid
            else:
                lo = mid
        return np.stack([at(math.exp(lo)), at(math.exp(hi))])

    return _allocate(network, groups, scores, ratio, previous_masks, search)


def _allocate(
    network: nn.Module,
    groups: Sequence[ChannelGroup],
    scores: Sequence[torch.Tensor],
    ratio: float,
    previous_masks: Mapping[str, torch.Tensor] | None,
    propose: Callable[[_Accounting, float], np.ndarray],
) -> Masks:
    """What every allocation shares: checks, the proposal's closest candidate, +-1 adjustment, masks.

    ``propose(accounting, ratio)`` returns candidate kept counts, one row per
    candidate; the one nearest the target is refined.
    """
    if len(scores) != len(groups):
        raise ValueError(f"{len(groups)} channel groups but {len(scores)} score vectors")
    if not 0.0 <= ratio < 1.0:
        raise PruneError(f"prune ratio must be in [0, 1), got {ratio}")
    weights = prunable_weights(network)
    if previous_masks is None:
        previous = {n: np.ones(tuple(w.shape), dtype=bool) for n, w in weights.items()}
    else:
        previous = {n: _array(previous_masks[n]).astype(bool) for n in weights}
    if not groups:
        done = 1.0 - sum(int(m.sum()) for m in previous.values()) / sum(m.size for m in previous.values())
        if done == ratio or within_tolerance(done, ratio):
            return {name: torch.from_numpy(mask) for name, mask in previous.items()}
        raise PruneError(
            f"cannot prune {ratio:.4f} of {type(network).__name__} with a structured method: the network "
            "has no prunable channel groups (see robustprune.structure.explain_channels)"
        )
    accounting = _Accounting(network, groups, scores, previous)
    most = accounting.ratio(accounting.low)
    least = accounting.ratio(accounting.high)
    if ratio > most and not within_tolerance(most, ratio):
        raise PruneError(
            f"cannot prune {ratio:.4f} of the prunable weights by removing channels: the largest reachable "
            f"ratio, with one channel left in every group, is {most:.4f}; request at most that"
        )
    if ratio < least and not within_tolerance(least, ratio):
        raise PruneError(
            f"cannot prune only {ratio:.4f} of the prunable weights: the previous masks already remove "
            f"{least:.4f} (the smallest reachable ratio); a cascade step must not prune less than the one before"
        )

    target_kept = (1.0 - ratio) * accounting.total
    candidates = np.atleast_2d(propose(accounting, ratio))
    counts = candidates[int(np.argmin(np.abs(accounting.kept(candidates) - target_kept)))]
    if not within_tolerance(accounting.ratio(counts), ratio):
        # the same test as the host's (pruning.validate_masks), as a bound on kept weights
        # (shrunk by a hair so that float rounding cannot make the two tests disagree)
        counts = _adjust(accounting, counts, target_kept, RATIO_TOLERANCE * ratio * accounting.total * (1 - 1e-9))

    achieved = accounting.ratio(counts)
    if not within_tolerance(achieved, ratio):
        raise PruneError(
            f"cannot bring the structured prune ratio within {RATIO_TOLERANCE:.1%} of {ratio:.4f}: whole "
            f"channels are too coarse here, and the closest allocation near the method's own removes "
            f"{achieved:.4f}; try a nearby ratio"
        )
    keep = [accounting.keep_vector(g, int(k)) for g, k in enumerate(counts)]
    masks = {name: _array(mask) & previous[name] for name, mask in channel_masks(network, groups, keep).items()}
    # the accounting is exact; this guards the bookkeeping itself
    kept = sum(int(mask.sum()) for mask in masks.values())
    assert kept == accounting.kept(counts)[0], (kept, accounting.kept(counts)[0])
    return {name: torch.from_numpy(mask) for name, mask in masks.items()}
