"""Which channels must be pruned together: a dependency graph built by tracing.

The model is traced once with ``torch.export`` on an example input (plain Python
control flow such as shape checks is fine: export runs it with the example's
shapes). Every dimension of every tensor in the graph gets a layout of *channel
spaces* (:mod:`kdlab.prune.layouts`); each operation ties the layouts of its
inputs and outputs the way it reads them:

- Conv/Linear: the input's channel dim is tied to weight dim 1, the output's to
  weight dim 0. A depthwise conv ties its output channels to its input's; a
  grouped conv prunes the same channels in every group.
- BatchNorm/LayerNorm and other affine norms tie their parameters to the channel
  dim (LayerNorm on the last dim, so NHWC and ``(N, L, C)`` tensors work).
- element-wise ops with broadcasting (residual ``add``, squeeze-and-excitation
  ``mul``, a ``layer_scale`` parameter) tie the dims they line up.
- ``cat`` concatenates layouts; ``chunk``/``split``/``slice`` cut them; ``flatten``
  of ``(N, C, H, W)`` gives every channel ``H*W`` consecutive inputs of the next
  Linear; ``permute``/``transpose``/``view`` move and merge dims; ``mean``/``sum``
  over spatial dims keep the channel dim.
- whole modules are read as one unit: ``nn.MultiheadAttention``, torchvision's
  Swin and MaxViT attention and kdlab's ``MultiHeadSelfAttention`` (their heads form a
  group), ``nn.RNN``/``nn.GRU``/``nn.LSTM`` (their hidden units, all gates together).

Anything else - the model input and output, an operation not listed, one that
mixes channels (``softmax`` or ``mean`` over them, a reshape that cannot be
followed) - *freezes* the channels it touches, and the group records which
operation did it and where (file and line from the exported graph), so an
unknown model is left alone rather than broken. :func:`explain` prints this.

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
import os
import re
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from kdlab.prune.layouts import INHERENT, Reason, Seg, Spaces

ELEMENTWISE = {
    "relu", "relu_", "relu6", "gelu", "gelu_", "silu", "silu_", "sigmoid", "sigmoid_", "tanh", "tanh_",
    "hardtanh", "hardtanh_", "hardsigmoid", "hardsigmoid_", "hardswish", "hardswish_", "leaky_relu",
    "leaky_relu_", "elu", "elu_", "selu", "selu_", "celu", "mish", "mish_", "softplus", "log_sigmoid",
    "dropout", "dropout_", "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "native_dropout",
    "clone", "contiguous", "alias", "detach", "_to_copy", "to", "type_as", "fill_", "zero_", "bernoulli_",
    "clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "exp", "log", "log1p", "sqrt",
    "rsqrt", "abs", "neg", "reciprocal", "sign", "sin", "cos", "erf", "floor", "ceil", "round", "pow",
    "square", "logical_not", "bitwise_not", "isnan", "add", "add_", "sub", "sub_", "rsub", "mul", "mul_",
    "div", "div_", "maximum", "minimum", "where", "masked_fill", "masked_fill_", "eq", "ne", "lt", "le",
    "gt", "ge", "logical_and", "logical_or", "bitwise_and", "bitwise_or", "addcmul", "lerp", "copy_",
    "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
}
FACTORIES = {"zeros", "ones", "full", "empty", "arange", "rand", "randn", "randint", "scalar_tensor",
             "linspace", "eye", "new_zeros", "new_ones", "new_empty", "new_full", "empty_strided"}
# name -> (dims argument, keepdim argument, exact when the reduced dims hold zeroed channels)
REDUCTIONS = {
    "mean": (1, 2, False), "sum": (1, 2, True), "amax": (1, 2, False), "amin": (1, 2, False),
    "max": (1, 2, False), "min": (1, 2, False), "std": (1, 3, False), "var": (1, 3, False),
    "logsumexp": (1, 2, False), "prod": (1, 2, False), "argmax": (1, 2, False), "argmin": (1, 2, False),
    "any": (1, 2, False), "all": (1, 2, False), "linalg_vector_norm": (2, 3, True), "norm": (2, 3, True),
}
ALONG_DIM = {"softmax": 1, "_softmax": 1, "log_softmax": 1, "_log_softmax": 1, "cumsum": 1, "cumprod": 1,
             "sort": 1, "argsort": 1}
POOLING = re.compile(r"^(_?(adaptive_)?(max|avg|lp)_pool\dd(_with_indices)?|_?upsample_\w+|"
                     r"fractional_max_pool\dd|(reflection|replication)_pad\dd)$")
SHAPE_OPS = {"view", "reshape", "_unsafe_view", "flatten", "unflatten", "view_as", "reshape_as",
             "squeeze", "squeeze_", "unsqueeze", "unsqueeze_"}
EXPLICIT_SHAPE = {"view", "reshape", "_unsafe_view", "unflatten", "view_as", "reshape_as"}
NORM_MODULES = (nn.modules.batchnorm._NormBase, nn.LayerNorm) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
IGNORED_OPS = {"_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size",
               "sym_constrain_range", "_assert_async", "sym_size", "sym_numel", "sym_stride", "item",
               "_local_scalar_dense", "sym_storage_offset"}


@dataclass
class ChannelGroup:
    """Channels that must be removed together.

    ``producers`` create them (weight dim 0 sliced, with the bias), ``readers`` read
    them (weight dim 1 sliced), ``norms`` normalise them (all statistics sliced);
    ``channels`` is their number. ``kind`` is ``"channels"``, ``"heads"`` (the heads
    of the attention module ``owner``) or ``"units"`` (hidden units of the recurrent
    module ``owner``). ``members`` lists every ``(parameter, dim, role)`` that is
    sliced with the group; ``reasons`` says why a frozen group is frozen.
    """

    producers: list = field(default_factory=list)
    readers: list = field(default_factory=list)
    norms: list = field(default_factory=list)
    channels: int = 0
    frozen: bool = False
    kind: str = "channels"
    owner: str | None = None
    members: list = field(default_factory=list)
    reasons: list = field(default_factory=list)
    space: int | None = None
    stats_over_channels: bool = False
    slices: list = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        if self.kind != "channels":
            return f"{self.kind} of {self.owner}"
        names = self.producers or self.norms or [m.name for m in self.members[:1]]
        more = f" +{len(names) - 2}" if len(names) > 2 else ""
        return ", ".join(names[:2]) + more

    @property
    def blocking(self) -> list:
        """The reasons that are not the model's input or output or the user's choice."""
        return [r for r in self.reasons if r.kind not in INHERENT]


@dataclass(frozen=True)
class Member:
    """One parameter (or buffer) dimension sliced with a group."""

    name: str
    dim: int
    role: str

    @property
    def module(self) -> str:
        return self.name.rpartition(".")[0]


@dataclass
class HeadLink:
    """An attention module whose ``heads * head_dim`` must equal its embedding width
    (``nn.MultiheadAttention``, torchvision's Swin attention): its heads follow the
    embedding group rather than being chosen on their own."""

    module: str
    heads: int
    head_dim: int
    embed: tuple


def _opname(node) -> str:
    if node.target is operator.getitem:
        return "getitem"
    packet = getattr(node.target, "_overloadpacket", None)
    return getattr(packet, "__name__", None) or getattr(node.target, "__name__", str(node.target))


def _arg(node, i, name, default=None):
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _val(node):
    return node.meta.get("val") if isinstance(node, torch.fx.Node) else None


def _shape(node) -> tuple | None:
    val = _val(node)
    return tuple(int(s) for s in val.shape) if isinstance(val, torch.Tensor) else None


def _where(node) -> str:
    """``file:line `code``` of the innermost frame of ``node``'s stack trace outside torch."""
    trace = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in \S+\n\s*(.*)', trace)
    frames = [f for f in frames if f"{os.sep}torch{os.sep}" not in f[0]] or frames
    if not frames:
        return ""
    path, line, code = frames[-1]
    if "site-packages" + os.sep in path:
        path = path.split("site-packages" + os.sep, 1)[1]
    else:
        try:
            rel = os.path.relpath(path)
            path = rel if not rel.startswith("..") else path
        except ValueError:
            pass
    return f"{path}:{line} `{code.strip()}`"


def _export(model: nn.Module, args: tuple):
    """``torch.export`` in eval mode, with errors that say what went wrong and what to do."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), warnings.catch_warnings():  # grad keeps nn.TransformerEncoderLayer unfused
            # nn.RNN modules rebuild _flat_weights while traced; export's note about it is not for users
            warnings.filterwarnings("ignore", message="The tensor attributes .* were assigned during export")
            return torch.export.export(model, args, strict=False)
    except (GuardOnDataDependentSymNode, torch._dynamo.exc.UserError) as e:
        text = str(e)
        if not isinstance(e, GuardOnDataDependentSymNode) and "data-dependent" not in text \
                and "data dependent" not in text:
            raise _trace_error(model, e) from e
        call = re.search(r'File "([^"]+)", line (\d+), in \S+\n\s*(.*)', text.split("raised this error:")[-1])
        where = f" at {os.path.basename(call.group(1))}:{call.group(2)} `{call.group(3).strip()}`" if call else ""
        raise RuntimeError(
            f"{type(model).__name__}.forward branches on the values of a tensor{where} (data-dependent "
            "control flow), which torch.export cannot trace, so kdlab cannot see which channels are tied. "
            "Rewrite the branch with torch.cond or torch.where, move it out of forward, or prune a "
            "submodule without it (passing that submodule and an input it accepts).") from e
    except Exception as e:  # noqa: BLE001 - export raises many types; each becomes one clear message
        raise _trace_error(model, e) from e
    finally:
        model.train(was_training)


def _trace_error(model, e) -> RuntimeError:
    first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
    return RuntimeError(f"torch.export could not trace {type(model).__name__} on example_input "
                        f"({type(e).__name__}: {first[:300]}); kdlab finds tied channels in the exported "
                        "graph, so the model must run under torch.export.export(model, example_input)")


def example_args(example_input) -> tuple:
    args = (example_input,) if isinstance(example_input, torch.Tensor) else example_input
    if not isinstance(args, tuple) or not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise TypeError("example_input must be a tensor or a tuple of tensors, "
                        f"got {type(example_input).__name__}")
    return args


class Graph:
    """The traced model with a layout for every tensor dimension (internal; see
    :func:`channel_groups` for the public view)."""

    def __init__(self, model: nn.Module, args: tuple, *, strict: bool = False):
        self.model, self.args, self.strict = model, args, strict
        self.exported = _export(model, args)
        sig = self.exported.graph_signature
        self.owner_of = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
        self.constants = set(getattr(sig, "inputs_to_lifted_tensor_constants", {}))
        self.modules = dict(model.named_modules())
        self.sp = Spaces()
        self.lay: dict = {}           # node -> tuple of layouts (one per dim), or a list of them for tuples
        self.members: dict = {}       # (parameter name, dim) -> layout
        self.roles: dict = {}         # (parameter name, dim) -> "out" | "out_bias" | "in" | "norm" | "param"
        self.macs: list = []          # (MACs of the dense layer, [(parameter name, dim), ...])
        self.sizes: list = []         # (module name, attribute, layout): attribute = kept count
        self.head_links: list = []
        self.stats: set = set()       # roots of spaces normalised by a LayerNorm-like op
        self.used: set = set()
        self._run()

    # ---------------------------------------------------------------- helpers
    def dims(self, node):
        """The layouts of ``node``'s dims (a tuple), or None for a non-tensor or a tuple of tensors."""
        lay = self.lay.get(node) if isinstance(node, torch.fx.Node) else None
        return lay if isinstance(lay, tuple) else None

    def reason(self, node, detail: str = "") -> Reason:
        return Reason("op", f"aten.{_opname(node)}", _where(node), detail)

    def unify(self, a, b, node, detail: str = "shapes of tied channels do not line up") -> None:
        self.sp.unify(a, b, self.reason(node, detail))

    def freeze_dims(self, layouts, node, detail: str = "") -> None:
        for lay in layouts or ():
            if lay is not None and not self.sp.is_frozen(lay):
                self.sp.freeze(lay, self.reason(node, detail))

    def fresh(self, size: int, node, detail: str):
        return self.sp.fresh(size, self.reason(node, detail))

    def fresh_dims(self, shape, node, detail: str) -> tuple:
        return tuple(self.fresh(s, node, detail) for s in shape)

    def param(self, node) -> str | None:
        return self.owner_of.get(node.name) if isinstance(node, torch.fx.Node) else None

    def member(self, name: str, dim: int):
        return self.members[(name, dim)]

    def role(self, name: str | None, dim: int, role: str) -> None:
        if name is not None and (name, dim) in self.members:
            self.roles.setdefault((name, dim), role)

    def module_of(self, node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        return list(stack.values())[-1][0].split("@")[0] if stack else ""

    # ---------------------------------------------------------------- traversal
    def _run(self) -> None:
        nodes = list(self.exported.graph.nodes)
        unit = [self._unit_of(n) for n in nodes]
        i = 0
        while i < len(nodes):
            node = nodes[i]
            if unit[i] is not None:
                j = i
                while j + 1 < len(nodes) and unit[j + 1] == unit[i]:
                    j += 1
                self._unit_run(unit[i], nodes[i:j + 1])
                i = j + 1
                continue
            if node.op == "placeholder":
                self._placeholder(node)
            elif node.op == "output":
                for out in torch.utils._pytree.tree_leaves(node.args):
                    if isinstance(out, torch.fx.Node):
                        for lay in self._all_layouts(out):
                            if lay is not None:
                                self.sp.freeze(lay, Reason("output"))
            elif node.op == "call_function":
                for a in node.all_input_nodes:
                    if a.name in self.owner_of:
                        self.used.add(self.owner_of[a.name])
                self._call(node)
            i += 1

    def _all_layouts(self, node) -> list:
        lay = self.lay.get(node)
        if isinstance(lay, tuple):
            return list(lay)
        if isinstance(lay, list):
            return [x for t in lay if t for x in t]
        return []

    def _placeholder(self, node) -> None:
        shape = _shape(node)
        if shape is None:
            return
        name = self.owner_of.get(node.name)
        if name is not None:
            layouts = []
            for d, size in enumerate(shape):
                lay = (Seg(self.sp.new(size)),)
                self.members[(name, d)] = lay
                layouts.append(lay)
            self.lay[node] = tuple(layouts)
        elif node.name in self.constants:
            self.lay[node] = tuple(self.sp.fresh(s, Reason("op", "a constant tensor", "", "")) for s in shape)
        else:
            self.lay[node] = tuple(self.sp.fresh(s, Reason("input")) for s in shape)

    def _call(self, node) -> None:
        name = _opname(node)
        if name in IGNORED_OPS:
            return
        handler = getattr(self, f"_op_{name.lstrip('_')}", None)
        if handler is None:
            if name in ELEMENTWISE:
                handler = self._elementwise
            elif name in REDUCTIONS:
                handler = self._reduction
            elif name in ALONG_DIM:
                handler = self._along_dim
            elif name in SHAPE_OPS:
                handler = self._reshape_op
            elif name in FACTORIES:
                handler = self._factory
            elif POOLING.match(name):
                handler = self._pooling
            else:
                handler = self._unknown
        handler(node)

    def _outputs_fresh(self, node, detail: str) -> None:
        val = _val(node)
        if isinstance(val, torch.Tensor):
            self.lay[node] = self.fresh_dims(_shape(node), node, detail)
        elif isinstance(val, (tuple, list)):
            self.lay[node] = [tuple(self.fresh(int(s), node, detail) for s in v.shape)
                              if isinstance(v, torch.Tensor) else None for v in val]

    def _unknown(self, node) -> None:
        for a in node.all_input_nodes:
            self.freeze_dims(self._all_layouts(a), node, "operation not understood")
        self._outputs_fresh(node, "operation not understood")

    def _factory(self, node) -> None:
        self._outputs_fresh(node, "tensor created in forward with a fixed size")

    # ---------------------------------------------------------------- element-wise
    def _broadcast(self, node, tensors) -> tuple:
        out_shape = _shape(node)
        out = [None] * len(out_shape)
        for k in range(1, len(out_shape) + 1):
            size = out_shape[-k]
            tied = []
            for t in tensors:
                shape, lay = _shape(t), self.dims(t)
                if shape is None or lay is None or len(shape) < k or shape[-k] != size:
                    continue
                if lay[-k] is not None:
                    tied.append(lay[-k])
            if size == 1 or not tied:
                out[-k] = None if size == 1 else self.fresh(size, node, "broadcast")
                continue
            for other in tied[1:]:
                self.unify(tied[0], other, node)
            out[-k] = tied[0]
        return tuple(out)

    def _elementwise(self, node) -> None:
        tensors = [a for a in node.args if isinstance(a, torch.fx.Node) and self.dims(a) is not None]
        tensors += [a for a in node.kwargs.values() if isinstance(a, torch.fx.Node) and self.dims(a) is not None]
        val = _val(node)
        if not tensors:
            self._outputs_fresh(node, "tensor created in forward with a fixed size")
            return
        if isinstance(val, (tuple, list)):  # native_dropout: (output, mask)
            lay = self.dims(tensors[0])
            self.lay[node] = [lay, lay]
            return
        if not isinstance(val, torch.Tensor):
            return
        if _opname(node).endswith("_like"):
            self.lay[node] = self.dims(tensors[0])
            return
        self.lay[node] = self._broadcast(node, tensors)

    # ---------------------------------------------------------------- layers
    def _op_linear(self, node) -> None:
        x, w, b = node.args[0], node.args[1], _arg(node, 2, "bias")
        lx, lw = self.dims(x), self.dims(w)
        self.unify(lx[-1], lw[1], node)
        wn = self.param(w)
        self.role(wn, 0, "out")
        self.role(wn, 1, "in")
        if isinstance(b, torch.fx.Node):
            self.unify(self.dims(b)[0], lw[0], node)
            self.role(self.param(b), 0, "out_bias")
        self.lay[node] = lx[:-1] + (lw[0],)
        if wn:
            self.macs.append((math.prod(_shape(node)) * _shape(w)[1], [(wn, 0), (wn, 1)]))

    def _op_conv(self, node, transposed: bool = False, groups: int = 1) -> None:
        x, w, b = node.args[0], node.args[1], _arg(node, 2, "bias")
        lx, lw, sx, sw = self.dims(x), self.dims(w), _shape(x), _shape(w)
        cdim = len(sx) - (len(sw) - 2) - 1
        wn = self.param(w)
        out_dim, in_dim = (1, 0) if transposed else (0, 1)
        if groups == 1:
            self.unify(lx[cdim], lw[in_dim], node)
            out = lw[out_dim]
        elif transposed:
            self.freeze_dims([lx[cdim], lw[0], lw[1]], node, "grouped transposed convolution")
            out = lw[1]
        elif sw[1] == 1:  # depthwise: each input channel has its own filters
            out = self.sp.scaled(lx[cdim], inner=sw[0] // groups)
            self.unify(lw[0], out, node)
        else:  # grouped: the same channels go in every group
            self.unify(lx[cdim], self.sp.scaled(lw[1], repeat=groups), node,
                       "input channels do not line up with the groups")
            local = self.sp.new(sw[0] // groups)
            self.unify(lw[0], (Seg(local, 1, groups),), node)
            out = lw[0]
        self.role(wn, out_dim, "out")
        self.role(wn, in_dim, "in")
        if isinstance(b, torch.fx.Node):
            self.unify(self.dims(b)[0], out, node)
            self.role(self.param(b), 0, "out_bias")
        so = _shape(node)
        self.lay[node] = lx[:cdim] + (out,) + self.fresh_dims(so[cdim + 1:], node, "spatial positions")
        if wn:
            dense = (math.prod(sx) if transposed else math.prod(so)) * math.prod(sw[1:])
            self.macs.append((dense, [(wn, 0), (wn, 1)]))

    def _op_conv1d(self, node):
        self._op_conv(node, groups=_arg(node, 6, "groups", 1))

    _op_conv2d = _op_conv3d = _op_conv1d

    def _op_convolution(self, node):
        self._op_conv(node, transposed=bool(_arg(node, 6, "transposed", False)), groups=_arg(node, 8, "groups", 1))

    def _op_conv_transpose1d(self, node):
        self._op_conv(node, transposed=True, groups=_arg(node, 6, "groups", 1))

    _op_conv_transpose2d = _op_conv_transpose3d = _op_conv_transpose1d

    def _norm_params(self, node, cdim_layout, params, size_attr: str | None) -> None:
        for p in params:
            if isinstance(p, torch.fx.Node) and self.dims(p) is not None:
                self.unify(self.dims(p)[0], cdim_layout, node)
                self.role(self.param(p), 0, "norm")
        module = self.modules.get(self.module_of(node))
        if size_attr and isinstance(module, NORM_MODULES):
            self.sizes.append((self.module_of(node), size_attr, cdim_layout))

    def _op_batch_norm(self, node) -> None:
        x = node.args[0]
        lx = self.dims(x)
        cdim = 1 if len(lx) > 1 else 0
        params = [_arg(node, i, n) for i, n in enumerate(("input", "weight", "bias", "running_mean", "running_var"))][1:]
        self._norm_params(node, lx[cdim], params, "num_features")
        self.lay[node] = lx if isinstance(_val(node), torch.Tensor) else [lx] + [None] * (len(_val(node)) - 1)

    _op_native_batch_norm_legit_no_training = _op_batch_norm
    _op_native_batch_norm = _op_native_batch_norm_legit_functional = _op_batch_norm
    _op_instance_norm = _op_batch_norm

    def _op_layer_norm(self, node) -> None:
        x, shape = node.args[0], node.args[1]
        lx = self.dims(x)
        if len(shape) == 1:
            self._norm_params(node, lx[-1], [_arg(node, 2, "weight"), _arg(node, 3, "bias")], "normalized_shape")
            for r in self.sp.roots(lx[-1]):
                self.stats.add(r)
        else:
            self.freeze_dims(lx[-len(shape):], node, "normalises over several dims")
        self.lay[node] = lx if isinstance(_val(node), torch.Tensor) else [lx] + [None] * (len(_val(node)) - 1)

    _op_native_layer_norm = _op_layer_norm

    def _op_rms_norm(self, node) -> None:
        x, shape = node.args[0], node.args[1]
        lx = self.dims(x)
        if len(shape) == 1:
            self._norm_params(node, lx[-1], [_arg(node, 2, "weight")], "normalized_shape")
            for r in self.sp.roots(lx[-1]):
                self.stats.add(r)
        else:
            self.freeze_dims(lx[-len(shape):], node, "normalises over several dims")
        self.lay[node] = lx

    def _op_group_norm(self, node) -> None:
        lx = self.dims(node.args[0])
        self.freeze_dims([lx[1]], node, "GroupNorm mixes the channels of a group")
        for p in node.all_input_nodes[1:]:
            self.freeze_dims(self.dims(p), node, "GroupNorm mixes the channels of a group")
        self.lay[node] = lx if isinstance(_val(node), torch.Tensor) else [lx, None, None]

    _op_native_group_norm = _op_group_norm

    def _op_prelu(self, node) -> None:
        x, w = node.args[0], node.args[1]
        lx = self.dims(x)
        if _shape(w)[0] > 1:
            self.unify(self.dims(w)[0], lx[1 if len(lx) > 1 else 0], node)
            self.role(self.param(w), 0, "param")
        self.lay[node] = lx

    def _op_embedding(self, node) -> None:
        w, ids = node.args[0], node.args[1]
        self.role(self.param(w), 1, "out")
        self.lay[node] = self.dims(ids) + (self.dims(w)[1],)

    # ---------------------------------------------------------------- products
    def _op_matmul(self, node) -> None:
        a, b = node.args[0], node.args[1]
        la, lb = self.dims(a), self.dims(b)
        self.unify(la[-1], lb[-2] if len(lb) > 1 else lb[0], node)
        batch_a, batch_b = la[:-2], lb[:-2]
        sa, sb = _shape(a)[:-2], _shape(b)[:-2]
        out_batch = []
        for k in range(1, max(len(sa), len(sb)) + 1):
            x = batch_a[-k] if len(sa) >= k and sa[-k] != 1 else None
            y = batch_b[-k] if len(sb) >= k and sb[-k] != 1 else None
            if x is not None and y is not None:
                self.unify(x, y, node)
            out_batch.insert(0, x if x is not None else y)
        rows = (la[-2],) if len(la) > 1 else ()
        cols = (lb[-1],) if len(lb) > 1 else ()
        self.lay[node] = tuple(out_batch) + rows + cols

    _op_mm = _op_bmm = _op_matmul

    def _op_einsum(self, node) -> None:
        equation, operands = node.args[0], list(node.args[1])
        lhs, _, rhs = equation.replace(" ", "").partition("->")
        terms = lhs.split(",")
        if "." in equation or not rhs or len(terms) != len(operands):
            return self._unknown(node)
        letters: dict = {}
        for term, op in zip(terms, operands):
            for letter, lay, size in zip(term, self.dims(op), _shape(op)):
                if size == 1:
                    continue
                if letter in letters:
                    self.unify(letters[letter], lay, node)
                else:
                    letters[letter] = lay
        self.lay[node] = tuple(letters.get(c) for c in rhs)

    def _op_scaled_dot_product_attention(self, node) -> None:
        q, k, v = node.args[:3]
        lq, lk, lv = self.dims(q), self.dims(k), self.dims(v)
        self.unify(lq[-1], lk[-1], node)
        self.unify(lk[-2], lv[-2], node)
        for i in range(len(lq) - 2):
            for other in (lk, lv):
                if len(other) == len(lq) and lq[i] is not None and other[i] is not None:
                    self.unify(lq[i], other[i], node)
        if _arg(node, 6, "scale") is None:
            self.freeze_dims([lq[-1]], node, "its default scale 1/sqrt(E) depends on the head width")
        self.lay[node] = lq[:-1] + (lv[-1],)

    # ---------------------------------------------------------------- reductions
    @staticmethod
    def _reduced(dims, ndim: int) -> list:
        if dims is None or dims == []:
            return list(range(ndim))
        dims = [dims] if isinstance(dims, int) else list(dims)
        return sorted(d % ndim for d in dims)

    def _reduction(self, node) -> None:
        name = _opname(node)
        if getattr(node.target, "_overloadname", "") == "other":  # max(x, y), min(x, y)
            return self._elementwise(node)
        dim_i, keep_i, exact = REDUCTIONS[name]
        x = node.args[0]
        lx = self.dims(x)
        if lx is None:
            return
        if name in ("linalg_vector_norm", "norm"):
            dims = _arg(node, dim_i, "dim")
        elif len(node.args) > 1 or "dim" in node.kwargs:
            dims = _arg(node, dim_i, "dim")
        else:
            dims = None
        keepdim = bool(_arg(node, keep_i, "keepdim", False))
        reduced = self._reduced(dims, len(lx))
        if not exact:
            self.freeze_dims([lx[d] for d in reduced], node, "reduces over channels")
        out = tuple(None if d in reduced else lx[d] for d in range(len(lx)) if keepdim or d not in reduced)
        val = _val(node)
        self.lay[node] = out if isinstance(val, torch.Tensor) else [out for _ in val]

    def _along_dim(self, node) -> None:
        x = node.args[0]
        lx = self.dims(x)
        d = _arg(node, ALONG_DIM[_opname(node)], "dim", -1)
        self.freeze_dims([lx[d % len(lx)]], node, "mixes channels")
        val = _val(node)
        self.lay[node] = lx if isinstance(val, torch.Tensor) else [lx for _ in val]

    def _op_topk(self, node) -> None:
        lx = self.dims(node.args[0])
        d = _arg(node, 2, "dim", -1) % len(lx)
        self.freeze_dims([lx[d]], node, "mixes channels")
        out = lx[:d] + (self.fresh(int(_val(node)[0].shape[d]), node, "top-k"),) + lx[d + 1:]
        self.lay[node] = [out, out]

    def _op_flip(self, node) -> None:
        lx = self.dims(node.args[0])
        self.freeze_dims([lx[d % len(lx)] for d in node.args[1]], node, "reverses channels")
        self.lay[node] = lx

    def _op_roll(self, node) -> None:
        lx = self.dims(node.args[0])
        dims = _arg(node, 2, "dims", [])
        dims = [dims] if isinstance(dims, int) else list(dims)
        self.freeze_dims([lx[d % len(lx)] for d in dims] if dims else lx, node, "shifts channels")
        self.lay[node] = lx

    def _pooling(self, node) -> None:
        x = node.args[0]
        lx = self.dims(x)
        name = _opname(node)
        k = int(re.search(r"(\d)d", name).group(1))
        self.freeze_dims(lx[-k:], node, "pools over channels")
        val = _val(node)
        out_shape = tuple(val.shape) if isinstance(val, torch.Tensor) else tuple(val[0].shape)
        out = lx[:len(lx) - k] + self.fresh_dims(out_shape[len(lx) - k:], node, "spatial positions")
        self.lay[node] = out if isinstance(val, torch.Tensor) else [out for _ in val]

    def _op_pad(self, node) -> None:
        lx = self.dims(node.args[0])
        pad = list(node.args[1])
        out = list(lx)
        for i in range(len(pad) // 2):
            d = len(lx) - 1 - i
            if pad[2 * i] or pad[2 * i + 1]:
                self.freeze_dims([lx[d]], node, "pads channels")
                out[d] = self.fresh(_shape(node)[d], node, "padded positions")
        self.lay[node] = tuple(out)

    _op_constant_pad_nd = _op_pad

    # ---------------------------------------------------------------- shapes
    def _reshape(self, node, lx, sx, so) -> tuple:
        """Layouts of a reshape from shape ``sx`` to ``so`` (dims of size 1 carry nothing)."""
        ins = [d for d, s in enumerate(sx) if s != 1]
        outs = [d for d, s in enumerate(so) if s != 1]
        out = [None] * len(so)
        i = j = 0
        while i < len(ins) and j < len(outs):
            a, b = [ins[i]], [outs[j]]
            pa, pb = sx[ins[i]], so[outs[j]]
            while pa != pb:
                if pa < pb:
                    i += 1
                    a.append(ins[i])
                    pa *= sx[ins[i]]
                else:
                    j += 1
                    b.append(outs[j])
                    pb *= so[outs[j]]
            i += 1
            j += 1
            layouts = [lx[d] for d in a]
            live = [k for k, lay in enumerate(layouts) if lay is not None and not self.sp.is_frozen(lay)]
            if self.strict and live and _opname(node) in EXPLICIT_SHAPE:
                self.freeze_dims([layouts[k] for k in live], node, "a view with explicit sizes")
                live = []
            if len(a) == 1 and len(b) == 1:
                out[b[0]] = lx[a[0]]
            elif not live:
                for d in b:
                    out[d] = self.fresh(so[d], node, "a reshape kdlab cannot follow")
            elif len(b) == 1 and len(live) == 1:
                k = live[0]
                inner = math.prod(sx[d] for d in a[k + 1:])
                outer = math.prod(sx[d] for d in a[:k])
                out[b[0]] = self.sp.scaled(layouts[k], inner=inner, repeat=outer)
            elif len(a) == 1 and not self.strict:
                split = self._split(node, layouts[0], [so[d] for d in b])
                for d, lay in zip(b, split):
                    out[d] = lay
            else:
                self.freeze_dims([layouts[k] for k in live], node, "a reshape that mixes channels")
                for d in b:
                    out[d] = self.fresh(so[d], node, "a reshape kdlab cannot follow")
        return tuple(out)

    def _split(self, node, layout, sizes) -> list:
        """Layouts of dims ``sizes`` made by splitting one dim: one of them carries the
        channels, the dims before it repeat them, the dims after it are inside a channel."""
        total = self.sp.length(layout)
        order = sorted(range(len(sizes)), key=lambda k: -sizes[k])
        for k in order:
            outer, inner = math.prod(sizes[:k]), math.prod(sizes[k + 1:])
            pieces = [layout] if outer == 1 else self.sp.cut(layout, [total // outer * p for p in range(1, outer)])
            if pieces is None or any(s.inner % inner for piece in pieces for s in self.sp.resolve(piece)):
                continue
            for piece in pieces[1:]:
                self.unify(pieces[0], piece, node, "the groups of a reshape hold different channels")
            carrier = tuple(Seg(s.space, s.inner // inner, s.repeat) for s in self.sp.resolve(pieces[0]))
            return [carrier if i == k else self.fresh(s, node, "a reshape kdlab cannot follow") for i, s in enumerate(sizes)]
        self.freeze_dims([layout], node, "a reshape that splits channels")
        return [self.fresh(s, node, "a reshape kdlab cannot follow") for s in sizes]

    def _reshape_op(self, node) -> None:
        x = node.args[0]
        lx = self.dims(x)
        if lx is None:
            return self._unknown(node)
        self.lay[node] = self._reshape(node, lx, _shape(x), _shape(node))

    def _op_permute(self, node) -> None:
        lx = self.dims(node.args[0])
        self.lay[node] = tuple(lx[d % len(lx)] for d in node.args[1])

    def _op_transpose(self, node) -> None:
        lx = list(self.dims(node.args[0]))
        if len(lx) < 2:
            self.lay[node] = tuple(lx)
            return
        d0, d1 = (node.args[1], node.args[2]) if len(node.args) > 2 else (0, 1)
        d0, d1 = d0 % len(lx), d1 % len(lx)
        lx[d0], lx[d1] = lx[d1], lx[d0]
        self.lay[node] = tuple(lx)

    _op_swapaxes = _op_swapdims = _op_t = _op_transpose

    def _op_movedim(self, node) -> None:
        lx = list(self.dims(node.args[0]))
        src, dst = node.args[1], node.args[2]
        src = [src] if isinstance(src, int) else list(src)
        dst = [dst] if isinstance(dst, int) else list(dst)
        order = [None] * len(lx)
        for s, d in zip(src, dst):
            order[d % len(lx)] = s % len(lx)
        rest = iter(d for d in range(len(lx)) if d not in {s % len(lx) for s in src})
        self.lay[node] = tuple(lx[o if o is not None else next(rest)] for o in order)

    def _op_expand(self, node) -> None:
        lx, sx, so = self.dims(node.args[0]), _shape(node.args[0]), _shape(node)
        lead = len(so) - len(sx)
        out = [self.fresh(s, node, "broadcast") for s in so[:lead]]
        for d, (a, b) in enumerate(zip(sx, so[lead:])):
            out.append(lx[d] if a == b else self.fresh(b, node, "broadcast"))
        self.lay[node] = tuple(out)

    _op_expand_as = _op_expand

    def _op_repeat(self, node) -> None:
        lx, so = self.dims(node.args[0]), _shape(node)
        reps = list(node.args[1])
        lead = len(reps) - len(lx)
        out = [self.fresh(s, node, "repeated") for s in so[:lead]]
        for d, r in enumerate(reps[lead:]):
            out.append(lx[d] if r == 1 or lx[d] is None else self.sp.scaled(lx[d], repeat=r))
        self.lay[node] = tuple(out)

    def _op_select(self, node) -> None:
        lx = self.dims(node.args[0])
        d = node.args[1] % len(lx)
        self.freeze_dims([lx[d]], node, "selects one channel")
        self.lay[node] = lx[:d] + lx[d + 1:]

    def _op_slice(self, node) -> None:
        lx, sx = self.dims(node.args[0]), _shape(node.args[0])
        d = _arg(node, 1, "dim", 0) % len(lx)
        start, end, step = _arg(node, 2, "start"), _arg(node, 3, "end"), _arg(node, 4, "step", 1)
        start, end, _ = slice(start, end, step).indices(sx[d])
        out = list(lx)
        if (start, end, step) != (0, sx[d], 1):
            # the bounds are numbers in the code: they would not move with pruned channels
            self.freeze_dims([lx[d]], node, "takes channels at fixed positions")
            out[d] = self.fresh(_shape(node)[d], node, "sliced at fixed positions")
        self.lay[node] = tuple(out)

    def _op_narrow(self, node) -> None:
        lx = self.dims(node.args[0])
        d = node.args[1] % len(lx)
        out = list(lx)
        if _shape(node)[d] != _shape(node.args[0])[d]:
            self.freeze_dims([lx[d]], node, "takes channels at fixed positions")
            out[d] = self.fresh(_shape(node)[d], node, "sliced at fixed positions")
        self.lay[node] = tuple(out)

    def _op_split(self, node) -> None:
        x = node.args[0]
        lx = self.dims(x)
        d = _arg(node, 2, "dim", 0) % len(lx)
        sizes = [int(v.shape[d]) for v in _val(node)]
        if len(sizes) > 1:
            self.freeze_dims([lx[d]], node, "splits channels at fixed sizes")
        self.lay[node] = [lx[:d] + ((self.fresh(s, node, "split at fixed sizes") if len(sizes) > 1 else lx[d]),)
                          + lx[d + 1:] for s in sizes]

    _op_split_with_sizes = _op_split

    def _op_chunk(self, node) -> None:
        """``chunk(n)`` cuts into n equal parts at run time: after pruning the parts
        must still be equal, so they keep the same channels."""
        x = node.args[0]
        lx = self.dims(x)
        d = _arg(node, 2, "dim", 0) % len(lx)
        sizes = [int(v.shape[d]) for v in _val(node)]
        lay, pieces = lx[d], None
        if len(sizes) == 1:
            pieces = [lay]
        elif lay is not None and not self.sp.is_frozen(lay) and len(set(sizes)) == 1:
            pieces = self.sp.cut(lay, [sizes[0] * i for i in range(1, len(sizes))])
            if pieces is not None:
                for piece in pieces[1:]:
                    self.unify(pieces[0], piece, node, "its equal parts hold different channels")
        if pieces is None:
            self.freeze_dims([lay], node, "splits channels unevenly")
            pieces = [self.fresh(s, node, "its parts could not be followed") for s in sizes]
        self.lay[node] = [lx[:d] + (piece,) + lx[d + 1:] for piece in pieces]

    def _op_unbind(self, node) -> None:
        x = node.args[0]
        lx = self.dims(x)
        d = _arg(node, 1, "dim", 0) % len(lx)
        self.freeze_dims([lx[d]], node, "selects one channel")
        self.lay[node] = [lx[:d] + lx[d + 1:] for _ in _val(node)]

    def _op_cat(self, node) -> None:
        tensors = [t for t in node.args[0] if _shape(t) is not None and math.prod(_shape(t)) > 0]
        d = _arg(node, 1, "dim", 0) % len(_shape(node))
        parts = []
        for t in tensors:
            lay = self.dims(t)[d]
            parts.extend(lay if lay is not None else (Seg(self.sp.new(1, reason=self.reason(node, "one position"))),))
        out = list(self.dims(tensors[0]))
        for i in range(len(out)):
            if i != d:
                for t in tensors[1:]:
                    self.unify(out[i], self.dims(t)[i], node)
        out[d] = tuple(parts)
        self.lay[node] = tuple(out)

    _op_concat = _op_concatenate = _op_cat

    def _op_stack(self, node) -> None:
        tensors = list(node.args[0])
        d = _arg(node, 1, "dim", 0) % len(_shape(node))
        base = self.dims(tensors[0])
        for t in tensors[1:]:
            for a, b in zip(base, self.dims(t)):
                self.unify(a, b, node)
        self.lay[node] = base[:d] + (self.fresh(len(tensors), node, "stacked"),) + base[d:]

    def _op_index_select(self, node) -> None:
        lx = self.dims(node.args[0])
        d = node.args[1] % len(lx)
        self.freeze_dims([lx[d]], node, "picks channels by index")
        self.lay[node] = lx[:d] + (self.fresh(_shape(node)[d], node, "indexed"),) + lx[d + 1:]

    def _op_getitem(self, node) -> None:
        src, i = node.args
        lay = self.lay.get(src)
        if isinstance(lay, list) and i < len(lay):
            self.lay[node] = lay[i]
        elif isinstance(_val(node), torch.Tensor):
            self._unknown(node)

    # ---------------------------------------------------------------- whole modules
    def _unit_of(self, node):
        for name, _ in (node.meta.get("nn_module_stack") or {}).values():
            name = name.split("@")[0]
            module = self.modules.get(name)
            if module is not None and _unit_handler(module) is not None:
                return name
        return None

    def _unit_run(self, name: str, run: list) -> None:
        inside = set(run)
        inputs = list(dict.fromkeys(a for n in run for a in n.all_input_nodes
                                    if a not in inside and a.name not in self.owner_of))
        outputs = [n for n in run if any(u not in inside for u in n.users)]
        for n in run:
            for a in n.all_input_nodes:
                if a.name in self.owner_of:
                    self.used.add(self.owner_of[a.name])
        module = self.modules[name]
        _unit_handler(module)(self, name, module, run, inputs, outputs)

    def source(self, node, run: set):
        """The node outside ``run`` that ``node``'s first argument comes from, through
        single-input ops (transpose, view, ...) inside the run."""
        while node in run:
            tensors = [a for a in node.all_input_nodes if a.name not in self.owner_of]
            if not tensors:
                return None
            node = tensors[0]
        return node

    def weight_of(self, node, run: set) -> str | None:
        """The parameter behind a linear node's weight (through chunk/getitem inside the run)."""
        w = node.args[1] if len(node.args) > 1 else None
        while isinstance(w, torch.fx.Node) and w.name not in self.owner_of and w in run and w.args:
            w = w.args[0]
        return self.param(w)

    def unit_outputs(self, outputs, width: int, last, node_detail: str) -> None:
        for o in outputs:
            shape = _shape(o)
            if shape is None:
                continue
            lead = self.fresh_dims(shape[:-1], o, node_detail)
            if shape and shape[-1] == width and last is not None:
                self.lay[o] = lead + (last,)
            else:
                self.lay[o] = self.fresh_dims(shape, o, node_detail)


# ---------------------------------------------------------------- module handlers

def _attention_inputs(g: Graph, run, inputs, weights: dict, reason_node) -> None:
    """Tie the last dim of every input read by a linear layer on ``weights`` (param name ->
    columns layout) to those columns."""
    inside = set(run)
    for n in run:
        if _opname(n) not in ("linear", "matmul"):
            continue
        w = g.weight_of(n, inside)
        if w in weights:
            src = g.source(n.args[0], inside)
            if src is not None and g.dims(src) is not None:
                g.unify(g.dims(src)[-1], weights[w], reason_node)


def _tokens(g: Graph, inputs, width: int) -> int:
    for x in inputs:
        shape = _shape(x)
        if shape and shape[-1] == width:
            return math.prod(shape[:-1])
    return 0


def _handle_mha(g: Graph, name: str, m: nn.MultiheadAttention, run, inputs, outputs) -> None:
    node = run[0]
    p = f"{name}." if name else ""
    heads = g.sp.new(m.num_heads, kind="heads", owner=name)
    hd = m.head_dim
    if m.bias_k is not None:
        for lay in [g.member(f"{p}out_proj.weight", 0)]:
            g.freeze_dims([lay], node, "attention with bias_k/bias_v")
    if m._qkv_same_embed_dim:
        w = f"{p}in_proj_weight"
        g.unify(g.member(w, 0), (Seg(heads, hd, 3),), node)
        columns = {w: g.member(w, 1)}
        g.role(w, 0, "out")
        g.role(w, 1, "in")
        query = g.member(w, 1)
    else:
        columns = {}
        for x in "qkv":
            w = f"{p}{x}_proj_weight"
            g.unify(g.member(w, 0), (Seg(heads, hd),), node)
            g.role(w, 0, "out")
            g.role(w, 1, "in")
            columns[w] = g.member(w, 1)
        query = g.member(f"{p}q_proj_weight", 1)
    if m.in_proj_bias is not None:
        g.unify(g.member(f"{p}in_proj_bias", 0), (Seg(heads, hd, 3),), node)
        g.role(f"{p}in_proj_bias", 0, "out_bias")
    embed = _output_projection(g, f"{p}out_proj", m.out_proj.bias is not None, heads, hd, node)
    g.unify(query, embed, node)  # embed_dim is both the query width and heads * head_dim
    _attention_inputs(g, run, inputs, columns, node)
    g.unit_outputs(outputs, m.embed_dim, embed, "attention output positions")
    g.head_links.append(HeadLink(name, m.num_heads, hd, embed))
    tokens = _tokens(g, inputs, m.embed_dim)
    for w in columns:
        g.macs.append((tokens * m.get_parameter(w[len(p):]).numel(), [(w, 0), (w, 1)]))
    g.macs.append((tokens * m.embed_dim * m.embed_dim, [(f"{p}out_proj.weight", 0), (f"{p}out_proj.weight", 1)]))


def _handle_coupled_attention(g: Graph, name: str, m, run, inputs, outputs) -> None:
    """Attention whose inner width must equal its input width (``heads * head_dim = C``):
    torchvision's Swin window attention (qkv, proj, num_heads) and MaxViT's relative
    attention (to_qkv, merge, n_heads). Heads follow the embedding group."""
    node = run[0]
    p = f"{name}." if name else ""
    if hasattr(m, "to_qkv"):  # MaxViT
        qkv_layer, proj_layer, nh, hd = m.to_qkv, m.merge, m.n_heads, m.head_dim
        qkv, proj = f"{p}to_qkv", f"{p}merge"
    else:
        qkv_layer, proj_layer, nh = m.qkv, m.proj, m.num_heads
        hd = m.qkv.in_features // nh
        qkv, proj = f"{p}qkv", f"{p}proj"
    dim = qkv_layer.in_features
    heads = g.sp.new(nh, kind="heads", owner=name)
    g.unify(g.member(f"{qkv}.weight", 0), (Seg(heads, hd, 3),), node)
    g.role(f"{qkv}.weight", 0, "out")
    g.role(f"{qkv}.weight", 1, "in")
    if qkv_layer.bias is not None:
        g.unify(g.member(f"{qkv}.bias", 0), (Seg(heads, hd, 3),), node)
        g.role(f"{qkv}.bias", 0, "out_bias")
    g.unify(g.member(f"{proj}.weight", 1), (Seg(heads, hd),), node)
    g.role(f"{proj}.weight", 1, "in")
    g.role(f"{proj}.weight", 0, "out")
    embed = g.member(f"{proj}.weight", 0)
    if proj_layer.bias is not None:
        g.unify(g.member(f"{proj}.bias", 0), embed, node)
        g.role(f"{proj}.bias", 0, "out_bias")
    g.unify(g.member(f"{qkv}.weight", 1), embed, node)
    extra = [("relative_position_bias_table", 1), ("logit_scale", 0)]
    if hasattr(m, "cpb_mlp"):
        last = [i for i, layer in enumerate(m.cpb_mlp) if isinstance(layer, nn.Linear)][-1]
        extra.append((f"cpb_mlp.{last}.weight", 0))
    for attr, d in extra:
        if (f"{p}{attr}", d) in g.members:
            g.unify(g.member(f"{p}{attr}", d), (Seg(heads),), node)
            g.role(f"{p}{attr}", d, "param")
    for x in inputs:
        shape = _shape(x)
        if shape and shape[-1] == dim and g.dims(x) is not None and _val(x).is_floating_point():
            g.unify(g.dims(x)[-1], embed, node)
    g.unit_outputs(outputs, dim, embed, "attention output positions")
    g.head_links.append(HeadLink(name, nh, hd, embed))
    tokens = _tokens(g, inputs, dim)
    g.macs.append((tokens * 3 * dim * dim, [(f"{qkv}.weight", 0), (f"{qkv}.weight", 1)]))
    g.macs.append((tokens * dim * dim, [(f"{proj}.weight", 0), (f"{proj}.weight", 1)]))


def _output_projection(g: Graph, name: str, has_bias: bool, heads, hd: int, node):
    """The output projection ``name`` (a Linear's prefix) of an attention block: its input
    columns are the heads' values, head by head; returns the member of its output rows
    (the embedding), which its bias follows."""
    weight = f"{name}.weight"
    g.unify(g.member(weight, 1), (Seg(heads, hd),), node)
    g.role(weight, 1, "in")
    g.role(weight, 0, "out")
    embed = g.member(weight, 0)
    if has_bias:
        g.unify(g.member(f"{name}.bias", 0), embed, node)
        g.role(f"{name}.bias", 0, "out_bias")
    return embed


def _handle_kdlab_attention(g: Graph, name: str, m, run, inputs, outputs) -> None:
    node = run[0]
    p = f"{name}." if name else ""
    heads = g.sp.new(m.heads, kind="heads", owner=name)
    hd = m.head_dim
    columns = {}
    for x in ("q", "k", "v"):
        w = f"{p}{x}.weight"
        g.unify(g.member(w, 0), (Seg(heads, hd),), node)
        g.role(w, 0, "out")
        g.role(w, 1, "in")
        if getattr(m, x).bias is not None:
            g.unify(g.member(f"{p}{x}.bias", 0), (Seg(heads, hd),), node)
            g.role(f"{p}{x}.bias", 0, "out_bias")
        columns[w] = g.member(w, 1)
    for w in list(columns)[1:]:
        g.unify(columns[f"{p}q.weight"], columns[w], node)
    embed = _output_projection(g, f"{p}out", m.out.bias is not None, heads, hd, node)
    _attention_inputs(g, run, inputs, columns, node)
    g.unit_outputs(outputs, m.out.out_features, embed, "attention output positions")
    tokens = _tokens(g, inputs, m.q.in_features)
    for w in [*columns, f"{p}out.weight"]:
        g.macs.append((tokens * g.modules[name].get_parameter(w[len(p):]).numel(), [(w, 0), (w, 1)]))


RNN_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}


def _handle_rnn(g: Graph, name: str, m: nn.RNNBase, run, inputs, outputs) -> None:
    inside = set(run)
    op = next((n for n in run if _opname(n) in ("gru", "lstm", "rnn_tanh", "rnn_relu")), None)
    node = op or run[0]
    if op is None or getattr(m, "proj_size", 0) or _shape(op.args[0]) is None:
        for a in inputs:
            g.freeze_dims(g.dims(a), node, "a recurrent layer kdlab cannot slice (proj_size or packed input)")
        for o in outputs:
            g._outputs_fresh(o, "recurrent layer output")
        return
    gates, dirs = RNN_GATES[m.mode], 2 if m.bidirectional else 1
    p = f"{name}." if name else ""
    units = g.sp.new(m.hidden_size, kind="units", owner=name)
    rows = (Seg(units, 1, gates),)
    x = g.source(op.args[0], inside) if op.args[0] in inside else op.args[0]
    tokens = math.prod(_shape(op.args[0])[:-1])
    for layer in range(m.num_layers):
        for sfx in ("", "_reverse")[:dirs]:
            ih, hh = f"{p}weight_ih_l{layer}{sfx}", f"{p}weight_hh_l{layer}{sfx}"
            for w in (ih, hh):
                g.unify(g.member(w, 0), rows, node)
                g.role(w, 0, "out")
                g.role(w, 1, "in")
            g.unify(g.member(hh, 1), (Seg(units),), node)
            if layer:
                g.unify(g.member(ih, 1), (Seg(units, 1, dirs),), node)
            elif x is not None and g.dims(x) is not None:
                g.unify(g.dims(x)[-1], g.member(ih, 1), node)
            if m.bias:
                for b in (f"{p}bias_ih_l{layer}{sfx}", f"{p}bias_hh_l{layer}{sfx}"):
                    g.unify(g.member(b, 0), rows, node)
                    g.role(b, 0, "out_bias")
            for w in (ih, hh):
                g.macs.append((tokens * m.get_parameter(w[len(p):]).numel(), [(w, 0), (w, 1)]))
    hx = op.args[1]
    for h in (hx if isinstance(hx, (list, tuple)) else [hx]):
        if isinstance(h, torch.fx.Node) and h not in inside and g.dims(h) is not None:
            g.unify(g.dims(h)[-1], (Seg(units),), node)
    for o in outputs:
        shape = _shape(o)
        if shape is None:
            continue
        index = o.args[1] if o.target is operator.getitem and o.args[0] is op else None
        last = (Seg(units, 1, dirs),) if index == 0 else (Seg(units),) if index in (1, 2) else None
        g.lay[o] = g.fresh_dims(shape[:-1], o, "sequence positions") + (
            last if last is not None else g.fresh(shape[-1], o, "recurrent layer output"),)


def _unit_handler(module: nn.Module):
    from kdlab.models import MultiHeadSelfAttention

    if isinstance(module, nn.MultiheadAttention):
        return _handle_mha
    if isinstance(module, nn.RNNBase):
        return _handle_rnn
    if isinstance(module, MultiHeadSelfAttention):
        return _handle_kdlab_attention
    if isinstance(module, coupled_attention()):
        return _handle_coupled_attention
    return None


def coupled_attention() -> tuple:
    """torchvision's attention modules whose heads must fill their input width."""
    try:
        from torchvision.models.maxvit import RelativePositionalMultiHeadAttention
        from torchvision.models.swin_transformer import ShiftedWindowAttention
    except ImportError:  # torchvision is optional for the graph
        return ()
    return ShiftedWindowAttention, RelativePositionalMultiHeadAttention


# ---------------------------------------------------------------- public view

def groups_of(g: Graph, include_frozen: bool = True) -> list:
    """:class:`ChannelGroup` objects of a traced :class:`Graph`, in graph order."""
    from kdlab.prune.importance import Slice

    found: dict = {}
    slices: dict = {}
    for key, role in g.roles.items():
        name, dim = key
        segs = g.sp.resolve(g.members[key])
        for root in dict.fromkeys(s.space for s in segs):
            found.setdefault(root, []).append(Member(name, dim, role))
            whole = (segs[0].inner, segs[0].repeat) if len(segs) == 1 else None
            slices.setdefault(root, []).append(Slice(name, dim, role, channel_index(g.sp, segs, root), whole))
    stats = {leaf for r in g.stats for leaf in g.sp.roots((Seg(r),))}
    groups = []
    for root, members in found.items():
        info = g.sp.info(root)
        if not any(m.role == "out" for m in members) and info.kind == "channels":
            continue
        modules = {role: list(dict.fromkeys(m.module for m in members if m.role == role))
                   for role in ("out", "in", "norm")}
        group = ChannelGroup(producers=modules["out"], readers=modules["in"], norms=modules["norm"],
                             channels=info.size, frozen=bool(info.reasons), kind=info.kind, owner=info.owner,
                             members=members, reasons=list(info.reasons), space=root,
                             stats_over_channels=root in stats, slices=slices[root])
        groups.append(group)
    return [grp for grp in groups if include_frozen or not grp.frozen]


def channel_index(sp: Spaces, segs, root: int) -> torch.Tensor:
    """For each position of the resolved layout ``segs``: its channel of ``root``, or -1."""
    parts = []
    for s in segs:
        size = sp.size(s.space)
        if s.space == root:
            parts.append(torch.arange(size).repeat_interleave(s.inner).repeat(s.repeat))
        else:
            parts.append(torch.full((size * s.inner * s.repeat,), -1))
    return torch.cat(parts)


def channel_groups(model: nn.Module, example_input, *, include_frozen: bool = False) -> list:
    """Trace ``model`` on ``example_input`` (a tensor or tuple of tensors) and return
    its :class:`ChannelGroup` list, in graph order; frozen groups only with
    ``include_frozen=True`` (their ``reasons`` say what froze them)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return groups_of(Graph(model, example_args(example_input)), include_frozen)


@dataclass
class Explanation:
    """What :func:`explain` found: ``groups`` (every channel group, frozen ones with
    their reasons), ``unused`` (modules the traced forward never calls) and the share of
    the layers' MACs whose output channels can be pruned. Shown as a table."""

    model: str
    groups: list
    unused: list
    macs: int
    prunable_macs: int

    @property
    def prunable(self) -> list:
        return [g for g in self.groups if not g.frozen]

    @property
    def frozen(self) -> list:
        return [g for g in self.groups if g.frozen]

    def blocking_ops(self) -> list:
        """``(reason, channels frozen by it)`` for every operation that froze a group, most channels first."""
        count: dict = {}
        for g in self.frozen:
            for r in g.blocking[:1]:
                count[r] = count.get(r, 0) + g.channels
        return sorted(count.items(), key=lambda kv: -kv[1])

    def __str__(self) -> str:
        share = self.prunable_macs / self.macs if self.macs else 0.0
        lines = [f"{self.model}: {len(self.groups)} channel groups, {len(self.prunable)} prunable; "
                 f"{100 * share:.0f}% of the conv/linear MACs are in layers with prunable channels",
                 f"{'#':>3}  {'kind':<8} {'size':>6}  {'prunable':<8}  {'members':<40}  frozen by"]
        for i, g in enumerate(self.groups):
            why = ""
            if g.frozen:
                first = (g.blocking or g.reasons)[:1]
                why = str(first[0]) if first else ""
                more = len(set(g.reasons)) - 1
                why += f" (+{more} more)" if more > 0 else ""
            note = " (LayerNorm statistics change)" if g.stats_over_channels and not g.frozen else ""
            lines.append(f"{i:>3}  {g.kind:<8} {g.channels:>6}  {'no' if g.frozen else 'yes':<8}  "
                         f"{g.label[:40]:<40}  {why}{note}")
        if self.unused:
            lines.append(f"Modules the traced forward never calls (left as they are): {', '.join(self.unused)}")
        return "\n".join(lines)

    __repr__ = __str__


def unused_modules(g: Graph) -> list:
    """Outermost modules with parameters, none of which the traced forward uses."""
    out = []
    for name, module in g.model.named_modules():
        params = [f"{name}.{p}" if name else p for p, _ in module.named_parameters()]
        if name and params and not any(p in g.used for p in params) \
                and not any(name.startswith(o + ".") for o in out):
            out.append(name)
    return out


def explain(model: nn.Module, example_input) -> Explanation:
    """Every channel group of ``model``: its size, whether it can be pruned and, if
    not, which operation froze it, with its source line from the exported graph.

    >>> import torch
    >>> from torch import nn
    >>> from kdlab import prune
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    >>> report = prune.explain(net, torch.zeros(1, 3, 8, 8))
    >>> [(g.producers, g.frozen) for g in report.groups]
    [(['0'], False), (['2'], True)]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    g = Graph(model, example_args(example_input))
    groups = groups_of(g)
    total = sum(d for d, _ in g.macs)
    live = {grp.space for grp in groups if not grp.frozen}
    prunable = sum(d for d, dims in g.macs
                   if any(r in live for key in dims for r in g.sp.roots(g.members[key])))
    return Explanation(type(model).__name__, groups, unused_modules(g), total, prunable)
