"""Which channels must be pruned together: a small dependency graph built by tracing.

The model is traced once with ``torch.export`` on an example input (plain Python
control flow such as shape checks is fine: export runs it with the example's
shapes). Every tensor in the graph gets a *channel space* (its dim 1). A Conv or
Linear layer reads one space (its input channels, weight dim 1) and creates a
new one (its output channels, weight dim 0); BatchNorm, activations, pooling,
dropout and flattening of 1x1 maps pass a space through; an element-wise
``add``/``mul`` of two tensors merges their spaces, which is how the channels
tied by a residual connection (ResNet's ``out += identity``) end up in one group.

A group can be pruned when all of its producers and readers are layers that can
be sliced; anything else - the model input, the model output, an op not listed
here, a layer called twice, a grouped convolution - freezes the group, so an
unknown model is left alone rather than broken.

>>> import torch
>>> from kdlab import models, prune
>>> groups = prune.channel_groups(models.create("cnn-teacher", input_shape=(1, 8, 8)),
...                               torch.randn(2, 1, 8, 8))
>>> [(g.producers, g.readers, g.norms) for g in groups][0]
(['features.0.0'], ['features.2.0'], ['features.0.1'])
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
from torch import nn

PASS_THROUGH = {
    "relu", "relu_", "relu6", "gelu", "silu", "silu_", "sigmoid", "tanh", "hardtanh", "hardtanh_",
    "leaky_relu", "leaky_relu_", "elu", "elu_", "hardswish", "hardswish_", "dropout", "dropout_",
    "feature_dropout", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool2d", "clone", "contiguous", "alias", "detach",
}
MERGING = {"add", "add_", "sub", "sub_", "mul", "mul_"}
RESHAPING = {"flatten", "view", "reshape", "_unsafe_view", "mean", "squeeze", "amax"}
SLICEABLE = (nn.Linear, nn.modules.conv._ConvNd)
NORMS = (nn.modules.batchnorm._BatchNorm,)


@dataclass
class ChannelGroup:
    """Channels that must be removed together.

    ``producers`` create them (weight dim 0 sliced, with the bias), ``readers`` read
    them (weight dim 1 sliced), ``norms`` normalise them (all statistics sliced);
    ``channels`` is their number."""

    producers: list = field(default_factory=list)
    readers: list = field(default_factory=list)
    norms: list = field(default_factory=list)
    channels: int = 0
    frozen: bool = False


class _Spaces:
    """Union-find over channel spaces."""

    def __init__(self):
        self.parent, self.groups = [], []

    def new(self, frozen: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.groups.append(ChannelGroup(frozen=frozen))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def group(self, i: int) -> ChannelGroup:
        return self.groups[self.find(i)]

    def union(self, i: int, j: int) -> int:
        i, j = self.find(i), self.find(j)
        if i != j:
            a, b = self.groups[i], self.groups[j]
            for key in ("producers", "readers", "norms"):
                getattr(a, key).extend(getattr(b, key))
            a.frozen = a.frozen or b.frozen
            a.channels = a.channels or b.channels
            self.parent[j] = i
        return i

    def freeze(self, i) -> None:
        if i is not None:
            self.group(i).frozen = True


def _shape(node):
    val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return tuple(val.shape) if isinstance(val, torch.Tensor) else None


def _keeps_channels(src, out) -> bool:
    """A reshape or reduction keeps dim 1 as the channel dim: (N, C, ...) -> (N, C, ...)
    with every later input dim of size 1 or every later dim untouched."""
    if src is None or out is None or len(src) < 2 or len(out) < 2 or src[:2] != out[:2]:
        return False
    return math.prod(src[2:]) == 1 or src[2:] == out[2:] or math.prod(out[2:]) == math.prod(src[2:])


def channel_groups(model: nn.Module, example_input, *, include_frozen: bool = False) -> list:
    """Trace ``model`` on ``example_input`` (a tensor or tuple of tensors) and return
    its :class:`ChannelGroup` list, in graph order; frozen groups only with
    ``include_frozen=True``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    args = (example_input,) if isinstance(example_input, torch.Tensor) else example_input
    if not isinstance(args, tuple) or not all(isinstance(a, torch.Tensor) for a in args):
        raise TypeError(f"example_input must be a tensor or a tuple of tensors, got {type(example_input).__name__}")
    was_training = model.training
    model.eval()
    try:
        exported = torch.export.export(model, args)
    finally:
        model.train(was_training)
    signature = exported.graph_signature
    owner_of = {**signature.inputs_to_parameters, **signature.inputs_to_buffers}
    modules = dict(model.named_modules())
    spaces, space, calls = _Spaces(), {}, {}

    for node in exported.graph.nodes:
        tensors = [a for a in node.all_input_nodes if a.name not in owner_of]
        inputs = [space.get(a) for a in tensors]
        if node.op == "placeholder":
            if node.name not in owner_of:
                space[node] = spaces.new(frozen=True)
            continue
        if node.op == "output":
            for i in inputs:
                spaces.freeze(i)
            continue
        owners = {owner_of[a.name].rpartition(".")[0] for a in node.all_input_nodes if a.name in owner_of}
        name = getattr(getattr(node.target, "_overloadpacket", None), "__name__", str(node.target))
        module = modules.get(next(iter(owners))) if len(owners) == 1 else None
        src = space.get(node.args[0]) if node.args and isinstance(node.args[0], torch.fx.Node) else None
        if isinstance(module, SLICEABLE) and len(tensors) == 1 and src is not None and \
                getattr(module, "groups", 1) == 1 and len(_shape(node.args[0]) or ()) >= 2 and \
                (isinstance(module, nn.modules.conv._ConvNd) or len(_shape(node.args[0])) == 2):
            owner = next(iter(owners))
            spaces.group(src).readers.append(owner)
            out = spaces.new()
            spaces.group(out).producers.append(owner)
            spaces.group(out).channels = module.weight.shape[0]
            space[node] = out
            calls.setdefault(owner, []).extend([src, out])
        elif isinstance(module, NORMS) and src is not None:
            owner = next(iter(owners))
            spaces.group(src).norms.append(owner)
            space[node] = src
            calls.setdefault(owner, []).append(src)
        elif owners:
            for i in inputs:
                spaces.freeze(i)
            space[node] = spaces.new(frozen=True)
        elif node.target is operator.getitem:
            space[node] = src if node.args[1] == 0 else spaces.new(frozen=True)
        elif name in PASS_THROUGH and src is not None:
            space[node] = src
        elif name in MERGING and len(tensors) == 2 and None not in inputs and \
                _shape(tensors[0]) == _shape(tensors[1]):
            space[node] = spaces.union(*inputs)
        elif name in MERGING and len(tensors) == 1 and src is not None:
            space[node] = src
        elif name in RESHAPING and src is not None and _keeps_channels(_shape(node.args[0]), _shape(node)):
            space[node] = src
        else:
            for i in inputs:
                spaces.freeze(i)
            space[node] = spaces.new(frozen=True)

    for owner, used in calls.items():
        if len(used) > (2 if isinstance(modules[owner], SLICEABLE) else 1):  # called twice
            for i in used:
                spaces.freeze(i)
    roots = sorted({spaces.find(i) for i in range(len(spaces.parent))})
    groups = [spaces.groups[r] for r in roots if spaces.groups[r].producers]
    return [g for g in groups if include_frozen or not g.frozen]
