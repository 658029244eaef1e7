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
* A depthwise ``Conv2d`` (``groups`` = inputs = outputs) acts on each channel
  alone: its output stays in its input's space and its weight rows join the
  space's producers (a removed channel loses its depthwise filter too). This
  is how an inverted residual's expansion, depthwise conv and projection
  inputs become one group.
* Channel-wise operations pass a space through: batch norm, elementwise
  activations (module or functional, in place or not), pooling (including
  adaptive pooling and a mean over the spatial dimensions), resampling
  (``F.interpolate`` and the ``Upsample`` modules: DeepLabV3's image-pooling
  branch and its upsampled logits), dropout, identity,
  torchvision's stochastic depth, scaling by a number. A flatten (the module,
  the function, ``view`` or ``reshape`` from ``(N, C, H, W)`` to
  ``(N, C*H*W)``) passes the space on with ``H*W`` features per channel, so a
  ``Linear`` after it loses a block of ``H*W`` input columns for every removed
  channel.
* An elementwise addition (or subtraction) of two tensors *joins* their spaces:
  after ``x + y`` channel ``k`` is ``x_k + y_k``, so channel ``k`` can only go
  if every producer drops it. This is how a ResNet stage's stem or shortcut
  conv and every block's last conv end up in one group. A product ``x * s``
  with ``s`` of ``x``'s shape or ``(N, C, 1, 1)`` (a squeeze-excitation gate)
  joins the two spaces the same way.
* A concatenation along the channels (``torch.cat(xs, dim=1)``) lays its
  inputs' spaces side by side: a layer reading it consumes each space at its
  offset, a batch norm on it normalises each at its offset. This is how
  every DenseNet layer's new channels are a group read by all later layers of
  the block.
* Anything else (slicing, permutes, grouped convs that are not depthwise,
  division by a tensor, unknown functions or modules, a layer called twice)
  makes every space it touches non-prunable. The analysis may miss a pruning
  opportunity but never removes a channel that something still reads.
* A space that reaches the network output is never pruned (a classifier's
  outputs are the classes), nor the input space (no layer produces it).

On the twelve architectures of ``tests/test_architecture_coverage.py``
(the paper's CIFAR networks, torchvision's ResNets, MobileNets, EfficientNet
and DenseNet) every layer whose output channels Torch-Pruning's dependency
graph can prune is a producer of one of these groups.

:func:`explain_channels` lists every space with the reason it is not prunable,
for when a structured method prunes less of a network than expected.

A removed channel's producers get zero rows, so after batch norm and the
activation it carries at most a constant (the norm's bias, scaled by a
gate); every consumer ignores it because its columns are zero as well. Zeroing the weights is
therefore enough to remove the channel exactly, and a later compaction can cut
the rows, columns and norm entries out physically.

Turning per-channel scores into masks that hit a ratio is
:mod:`robustprune.plugin.allocation`'s job.
"""

from __future__ import annotations

import math
import operator
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .masks import ArrayLike, Masks, PruneError, as_numpy, prunable_weights, weight_name

__all__ = [
    "NORM_LAYERS",
    "ChannelGroup",
    "Consumer",
    "StructureError",
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
    for a ``Linear`` after a flatten of a ``C x H x W`` map. ``offset`` is
    where the group's channels start among the layer's input channels: 0
    unless the layer reads a concatenation, where the group's channel ``k`` is
    input channel ``offset + k`` (columns ``(offset + k) * features_per_channel``
    onwards).
    """

    module: str
    features_per_channel: int = 1
    offset: int = 0

    def columns(self, channels: np.ndarray) -> np.ndarray:
        """The layer's input columns that read the group's ``channels`` (an int array of channel indices)."""
        fpc = self.features_per_channel
        return ((np.asarray(channels)[:, None] + self.offset) * fpc + np.arange(fpc)[None, :]).ravel()


@dataclass
class ChannelGroup:
    """One channel space whose channels are removed together.

    ``producers`` are the modules whose weight rows are the space's channels:
    the Conv2d/Linear layers whose outputs make up the space (several when
    additions or a squeeze-excitation product join them) and the depthwise
    convolutions that act on it channel by channel. ``consumers`` are the
    layers reading it and ``norms`` the batch norms applied to it, all in
    graph order. ``producer_offsets`` and ``norm_offsets`` (parallel to
    ``producers`` and ``norms``; empty means all 0) say where the group's
    channels start in that module's channels: non-zero only for a depthwise
    conv or a batch norm applied to a concatenation.
    """

    channels: int
    producers: list[str] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)
    producer_offsets: list[int] = field(default_factory=list)
    norm_offsets: list[int] = field(default_factory=list)
    upstream: dict[str, list[int]] = field(default_factory=dict, compare=False, repr=False)
    """For each consumer and depthwise conv (by module name): the positions in ``producers`` of the producers
    whose output reaches it. After a residual addition a block's conv reads only what the stem and the
    blocks before it wrote. Missing: every producer (the group as a whole)."""

    @property
    def name(self) -> str:
        """A readable name for reports: the first producer."""
        return self.producers[0] if self.producers else "(no producer)"

    def producers_reaching(self, module: str) -> list[int]:
        """Positions in ``producers`` of the producers whose output reaches ``module`` (a consumer or a depthwise
        conv of the group)."""
        return self.upstream.get(module, list(range(len(self.producers))))

    def producer_rows(self) -> list[tuple[str, int]]:
        """``(module, offset)`` per producer: the group's channel ``k`` is row ``offset + k`` of its weight."""
        return list(zip(self.producers, self.producer_offsets or [0] * len(self.producers)))

    def norm_entries(self) -> list[tuple[str, int]]:
        """``(module, offset)`` per batch norm: the group's channel ``k`` is its feature ``offset + k``."""
        return list(zip(self.norms, self.norm_offsets or [0] * len(self.norms)))

    def producer_weights(self, network: nn.Module) -> list[torch.Tensor]:
        """The producers' weight rows of the group's channels, each viewed as ``(channels, -1)``."""
        weights = prunable_weights(network)
        return [weights[weight_name(p)].detach()[o : o + self.channels].reshape(self.channels, -1)
                for p, o in self.producer_rows()]

    def filter_l1(self, network: nn.Module) -> torch.Tensor:
        """The l1 norm of each channel's filters, summed over the producers (float64, length ``channels``)."""
        total = np.zeros(self.channels)
        for rows in self.producer_weights(network):
            total += np.abs(as_numpy(rows.float())).sum(axis=1, dtype=np.float64)
        return torch.from_numpy(total)

    def dead_rows(self, masks: Mapping[str, ArrayLike]) -> np.ndarray:
        """Channels whose rows every producer's mask removes (a bool array)."""
        dead = np.ones(self.channels, dtype=bool)
        for p, o in self.producer_rows():
            dead &= ~as_numpy(masks[weight_name(p)])[o : o + self.channels].reshape(self.channels, -1).any(axis=1)
        return dead

    def unread(self, masks: Mapping[str, ArrayLike]) -> np.ndarray:
        """Channels that no consumer reads under ``masks``: every consumer column is masked out (a bool array)."""
        dead = np.ones(self.channels, dtype=bool)
        for c in self.consumers:
            mask = as_numpy(masks[weight_name(c.module)])
            fpc = c.features_per_channel
            # (out, C_in*fpc, ...) -> (out, C_in, fpc * rest): does anything still read channel offset + k?
            per_channel = mask.reshape(mask.shape[0], -1, fpc * math.prod(mask.shape[2:]))
            block = per_channel[:, c.offset : c.offset + self.channels]
            dead &= ~block.any(axis=(0, 2))
        return dead

    def removed_channels(self, masks: Mapping[str, ArrayLike]) -> torch.Tensor:
        """Channels the masks already remove: every producer row is masked out, or every consumer column.

        Either way the channel carries nothing any layer uses, so a cascade
        must treat it as gone.
        """
        if not self.consumers:
            return torch.from_numpy(self.dead_rows(masks))
        return torch.from_numpy(self.dead_rows(masks) | self.unread(masks))


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

NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
"""The normalisation layers the analysis passes a channel space through (and compaction shrinks)."""

# Modules that act on each channel separately and keep dim 1 as the channel dim.
_CHANNELWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Upsample, nn.UpsamplingBilinear2d, nn.UpsamplingNearest2d,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.Identity,
)  # fmt: skip

_CHANNELWISE_FUNCTIONS: set[Callable[..., Any]] = {
    torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu,
    F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus,
    torch.sigmoid, torch.tanh, F.sigmoid, F.tanh,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
    F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
    F.interpolate, F.upsample, F.upsample_bilinear, F.upsample_nearest,
    torch.clone,
}  # fmt: skip

_CHANNELWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_",
    "contiguous", "clone", "float", "to", "detach",
}  # fmt: skip

# Functions of other libraries that act on each channel alike, by module and name (no import needed):
# torchvision's stochastic depth (EfficientNet's residual branches; fx-wrapped, so traced as one call)
# drops whole samples or the whole batch.
_CHANNELWISE_LIBRARY_FUNCTIONS = {("torchvision.ops.stochastic_depth", "stochastic_depth")}

_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
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
    producers: list[tuple[int, str, int]] = field(default_factory=list)  # (graph index, module, offset)
    consumers: list[tuple[int, Consumer]] = field(default_factory=list)
    norms: list[tuple[int, str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class _Result:
    """Every channel space of a network: prunable groups and the rest with the reasons."""

    groups: list[ChannelGroup]
    rejected: list[tuple[ChannelGroup, list[str]]]


Layout = tuple[tuple[int, int], ...]
"""The channel dim of a tensor as segments ``(space id, channels)``: one segment, or several after a ``cat``."""


def _offsets(layout: Layout) -> list[tuple[int, int, int]]:
    """``(space, offset, channels)`` per segment of ``layout``."""
    out, offset = [], 0
    for space, channels in layout:
        out.append((space, offset, channels))
        offset += channels
    return out


class _Analysis:
    def __init__(self, network: nn.Module, gm: torch.fx.GraphModule, shapes: dict[torch.fx.Node, tuple[int, ...]]):
        self.modules = dict(network.named_modules())
        self.gm = gm
        self.shapes = shapes
        self.spaces: list[_Space] = []
        self.parent: list[int] = []
        # node -> (layout, features per channel): dim 1 of the node's tensor is sum(channels) * fpc
        self.at: dict[torch.fx.Node, tuple[Layout, int]] = {}
        self.calls: Counter[str] = Counter()
        self.touched: dict[str, set[int]] = defaultdict(set)
        self.index = 0
        self._reach: dict[int, set[int]] = {}
        self._nodes: list[torch.fx.Node] = []
        self._positions: dict[torch.fx.Node, int] = {}

    # union-find over spaces ----------------------------------------------------
    def _new(self, channels: int, problem: str | None = None) -> Layout:
        self.spaces.append(_Space(channels=channels, first=self.index))
        self.parent.append(len(self.parent))
        if problem:
            self.spaces[-1].problems.append(problem)
        return ((len(self.spaces) - 1, channels),)

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

    def _space(self, s: int) -> _Space:
        return self.spaces[self._find(s)]

    def _spoil(self, node: torch.fx.Node, problem: str) -> None:
        if node in self.at:
            for s, _ in self.at[node][0]:
                self._space(s).problems.append(problem)

    # walking the graph ---------------------------------------------------------
    def run(self) -> _Result:
        for index, node in enumerate(self.gm.graph.nodes):
            self.index = index
            self._visit(node)
        for name, count in self.calls.items():
            if count > 1:
                for s in self.touched[name]:
                    self._space(s).problems.append(f"{name} is called {count} times")
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

    def _unknown(self, node: torch.fx.Node, what: str, why: str = "is not understood by the channel analysis") -> None:
        """Conservative fallback: nothing touched by ``node`` may be pruned."""
        problem = f"{what} ({node.name}) {why}"
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
        """Pass ``x``'s channels to ``node`` if ``node`` keeps batch and channel dims unchanged."""
        out, inp = self.shapes.get(node), self.shapes[x]
        if out is None or len(out) != len(inp) or len(out) < 2 or out[:2] != inp[:2]:
            return False
        if len(out) == 2 and out != inp:
            return False
        self.at[node] = self.at[x]
        return True

    def _touch(self, name: str, *layouts: Layout) -> None:
        """Count one call of layer ``name``, touching the spaces of ``layouts`` (for the called-twice rule)."""
        self.calls[name] += 1
        for layout in layouts:
            self.touched[name].update(s for s, _ in layout)

    def _module(self, node: torch.fx.Node, name: str, module: nn.Module) -> None:
        x = self._single_input(node)
        if x is None:
            return self._unknown(node, f"module {name} with these inputs")
        layout, fpc = self.at[x]
        shape = self.shapes[x]
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            return self._grouped_conv(node, name, module, x)
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if isinstance(module, nn.Conv2d):
                ok = len(shape) == 4 and fpc == 1
                out_channels = module.out_channels
            else:
                # a Linear acts on the last dim: only the channel dim of a 2-d input is ours
                ok = len(shape) == 2
                out_channels = module.out_features
            if not ok or node not in self.shapes:
                self._touch(name, layout)
                return self._unknown(node, f"layer {name} on an input of shape {shape}")
            for s, offset, _ in _offsets(layout):
                self._space(s).consumers.append((self.index, Consumer(name, fpc, offset)))
            produced = self._new(out_channels)
            self._space(produced[0][0]).producers.append((self.index, name, 0))
            self._touch(name, layout, produced)
            self.at[node] = (produced, 1)
        elif isinstance(module, NORM_LAYERS):
            if fpc != 1 or not self._pass(node, x):
                return self._unknown(node, f"batch norm {name} on features of shape {shape}")
            for s, offset, _ in _offsets(layout):
                self._space(s).norms.append((self.index, name, offset))
        elif isinstance(module, _CHANNELWISE_MODULES):
            if not self._pass(node, x):
                return self._unknown(node, f"{type(module).__name__} module {name}")
        elif isinstance(module, nn.Flatten):
            if not self._reshape(node, x):
                return self._unknown(node, f"Flatten module {name}")
        else:
            return self._unknown(node, f"{type(module).__name__} module {name}")

    def _grouped_conv(self, node: torch.fx.Node, name: str, conv: nn.Conv2d, x: torch.fx.Node) -> None:
        """A depthwise conv acts on each channel alone: its rows join the input's channels (output = input space).

        Other grouped convs tie blocks of channels together in ways the
        analysis does not model; they keep their channels.
        """
        layout, fpc = self.at[x]
        if not (conv.in_channels == conv.out_channels == conv.groups):
            return self._unknown(
                node, f"grouped convolution {name}",
                f"has groups={conv.groups} with {conv.in_channels} inputs and {conv.out_channels} outputs; "
                "only depthwise convolutions (groups = inputs = outputs) are pruned",
            )
        self._touch(name, layout)
        if fpc != 1 or node not in self.shapes or not self._pass(node, x):
            return self._unknown(node, f"depthwise convolution {name} on an input of shape {self.shapes[x]}")
        for s, offset, _ in _offsets(layout):
            self._space(s).producers.append((self.index, name, offset))

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
        elif not method and target in _CAT_FUNCTIONS:
            if self._cat(node):
                return
        else:
            x = self._single_input(node)
            if x is not None:
                if (method and target in _CHANNELWISE_METHODS) or (not method and (
                        target in _CHANNELWISE_FUNCTIONS or _library_name(target) in _CHANNELWISE_LIBRARY_FUNCTIONS)):
                    if self._pass(node, x):
                        return
                elif (method and target in _RESHAPE_METHODS) or (not method and target in _RESHAPE_FUNCTIONS):
                    if self._reshape(node, x):
                        return
                elif (method and target in _REDUCE_METHODS) or (not method and target in _REDUCE_FUNCTIONS):
                    if self._reduce(node, x):
                        return
        self._unknown(node, label)

    def _merge(self, node: torch.fx.Node, a: torch.fx.Node, b: torch.fx.Node, result: torch.fx.Node) -> bool:
        """Channel ``k`` of ``node`` combines channel ``k`` of ``a`` and of ``b``: their spaces merge, segment by
        segment; ``node`` takes ``result``'s layout (the operand of its shape)."""
        (layout_a, fa), (layout_b, fb) = self.at[a], self.at[b]
        if fa != fb or [c for _, c in layout_a] != [c for _, c in layout_b]:
            return False
        for (sa, _), (sb, _) in zip(layout_a, layout_b):
            self._union(sa, sb)
        self.at[node] = self.at[result]
        return True

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
        if len(tensors) != 2 or any(self.shapes[t] != out for t in tensors) or len(out) < 2:
            return False
        # the spaces' fields stay where they are: _collect pools them by root
        return self._merge(node, tensors[0], tensors[1], tensors[0])

    def _scale(self, node: torch.fx.Node) -> bool:
        """``x * 2`` or ``x / 2``: channel-wise. ``x * s`` with ``s`` of shape ``(N, C, 1, 1)`` (a
        squeeze-excitation gate) or of ``x``'s shape: channel ``k`` of the product needs channel ``k`` of both,
        so their spaces merge. Division by a tensor is not understood."""
        operands = list(node.args[:2])
        tensors = [a for a in operands if isinstance(a, torch.fx.Node)]
        numbers = [a for a in operands if isinstance(a, (int, float))]
        if len(tensors) == 1 and len(numbers) == 1 and tensors[0] in self.at and len(self._tensor_inputs(node)) == 1:
            return self._pass(node, tensors[0])
        is_product = node.target in (operator.mul, operator.imul, torch.mul, "mul", "mul_")
        if not is_product or len(tensors) != 2 or any(t not in self.at for t in tensors):
            return False
        out = self.shapes[node]
        big = [t for t in tensors if self.shapes[t] == out]
        if not big or len(out) != 4:
            return False
        other = tensors[1] if big[0] is tensors[0] else tensors[0]
        gate = self.shapes[other]
        if gate != out and gate != (out[0], out[1], 1, 1):
            return False
        return self._merge(node, big[0], other, big[0])

    def _cat(self, node: torch.fx.Node) -> bool:
        """``torch.cat(xs, dim=1)``: the output's channels are the inputs' segments one after another."""
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        out = self.shapes[node]
        if not isinstance(tensors, (list, tuple)) or not isinstance(dim, int) or len(out) < 2 or dim % len(out) != 1:
            return False
        if not all(isinstance(t, torch.fx.Node) and t in self.at and self.at[t][1] == 1 for t in tensors):
            return False
        if any(self.shapes[t][:1] + self.shapes[t][2:] != out[:1] + out[2:] for t in tensors):
            return False
        self.at[node] = (tuple(segment for t in tensors for segment in self.at[t][0]), 1)
        return True

    def _reshape(self, node: torch.fx.Node, x: torch.fx.Node) -> bool:
        """Identity reshapes pass through; ``(N, C, *S) -> (N, C*prod(S))`` flattens with prod(S) features
        per channel."""
        out, inp = self.shapes[node], self.shapes[x]
        layout, fpc = self.at[x]
        if out == inp:
            self.at[node] = self.at[x]
            return True
        if len(inp) >= 3 and fpc == 1 and out == (inp[0], math.prod(inp[1:])):
            self.at[node] = (layout, math.prod(inp[2:]))
            return True
        return False

    def _reduce(self, node: torch.fx.Node, x: torch.fx.Node) -> bool:
        """A mean/sum/max over spatial dims only (dims >= 2) keeps the channels."""
        inp = self.shapes[x]
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        if dims is None or len(inp) < 3 or self.at[x][1] != 1:
            return False
        listed = [dims] if isinstance(dims, int) else list(dims) if isinstance(dims, (list, tuple)) else [None]
        if not all(isinstance(d, int) for d in listed) or any(int(d) % len(inp) < 2 for d in listed):  # type: ignore[arg-type]
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
            producers = sorted(p for m in members for p in m.producers)
            consumers = [c for _, c in sorted(((i, c) for m in members for i, c in m.consumers), key=lambda t: t[0])]
            norms = sorted(n for m in members for n in m.norms)
            problems = list(dict.fromkeys(p for m in members for p in m.problems))
            if not any(self._is_layer(name) for _, name, _ in producers) and not problems:
                problems.append("no Conv2d or Linear layer produces it")
            consumer_indices = sorted((i, c.module) for m in members for i, c in m.consumers)
            readers = consumer_indices + [(i, name) for i, name, _ in producers if not self._is_layer(name)]
            upstream = {name: sorted({j for j, (at, _, _) in enumerate(producers) if i in self._downstream(at)})
                        for i, name in readers}
            group = ChannelGroup(
                members[0].channels,
                producers=[name for _, name, _ in producers],
                consumers=consumers,
                norms=[name for _, name, _ in norms],
                producer_offsets=[offset for _, _, offset in producers],
                norm_offsets=[offset for _, _, offset in norms],
                upstream=upstream,
            )
            groups.append((first, group, problems))
        groups.sort(key=lambda t: t[0])
        return _Result(
            groups=[g for _, g, problems in groups if not problems],
            rejected=[(g, problems) for _, g, problems in groups if problems],
        )

    def _downstream(self, index: int) -> set[int]:
        """Graph positions of every node that the node at ``index`` feeds, directly or not (cached)."""
        if index not in self._reach:
            if not self._positions:
                self._nodes = list(self.gm.graph.nodes)
                self._positions = {node: i for i, node in enumerate(self._nodes)}
            nodes, position = self._nodes, self._positions
            seen: set[int] = set()
            stack = [nodes[index]]
            while stack:
                for user in stack.pop().users:
                    if position[user] not in seen:
                        seen.add(position[user])
                        stack.append(user)
            self._reach[index] = seen
        return self._reach[index]

    def _is_layer(self, name: str) -> bool:
        """A producer that makes channels (not a depthwise conv, which only acts on channels made elsewhere)."""
        module = self.modules[name]
        return not (isinstance(module, nn.Conv2d) and module.groups != 1)


def _library_name(target: Any) -> tuple[str, str]:
    return getattr(target, "__module__", None) or "", getattr(target, "__name__", None) or ""


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
    network: nn.Module, groups: Sequence[ChannelGroup], keep: Sequence[ArrayLike]
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
    for group, keep_vector in zip(groups, keep):
        kept = as_numpy(keep_vector).astype(bool).ravel()
        if kept.size != group.channels:
            raise ValueError(
                f"keep vector for the group of {group.name} has {kept.size} entries, "
                f"but the group has {group.channels} channels"
            )
        dropped = ~kept
        if not dropped.any():
            continue
        removed = np.flatnonzero(dropped)
        for producer, offset in group.producer_rows():
            masks[weight_name(producer)][removed + offset] = False
        for consumer in group.consumers:
            masks[weight_name(consumer.module)][:, consumer.columns(removed)] = False
    return {name: torch.from_numpy(mask) for name, mask in masks.items()}
