"""Structured pruning: remove whole channels, attention heads and recurrent units and
return a smaller model.

Three steps, each usable on its own (as in Torch-Pruning, the dependency analysis is
separate from the pruner):

1. :func:`kdlab.prune.channel_groups` finds the groups of channels that must go
   together (tied by residual additions, concatenations, depthwise convolutions...);
2. :func:`select_channels` scores every channel with an importance criterion
   (:mod:`kdlab.prune.importance`) and picks the ones to keep;
3. :func:`remove_channels` slices them out of a deep copy of the model.

:func:`structured_prune` does all three. ``amount`` means what Torch-Pruning's
``pruning_ratio`` means: every prunable group loses ``round(amount * C)`` of its
``C`` channels (heads, units), those with the lowest score; with ``scope="global"``
the ``round(amount * total)`` lowest-scoring channels over all groups go (each
group's scores divided by their mean first, so layers of different scales compare),
every group keeping at least one. Tie rule: channels are ranked by a stable
descending sort, so among equal scores the lower index is kept. For a group with one
producer and ``"l1"``/``"l2"``, the kept channels are the ones
``torch.nn.utils.prune.ln_structured(dim=0)`` keeps (whose ``topk`` leaves ties
unspecified).

Removing channel j slices every parameter of its group along the right dimension:
the producers' weight rows and biases, the readers' weight columns (``H*W`` columns
each after a flatten), the norm statistics, ``layer_scale``-like parameters,
``class_token``/``pos_embedding``, the q/k/v rows of a head. In eval mode the
result equals the original model with those channels zeroed, except where a
LayerNorm normalises over the channels (its mean and variance then run over fewer
channels). Attention modules whose ``embed_dim`` must equal ``num_heads *
head_dim`` (``nn.MultiheadAttention``, torchvision's Swin) lose whole heads together
with their embedding channels: that group keeps a multiple of ``head_dim``.
"""
from __future__ import annotations

import copy
import math
import os
import warnings

import torch
from torch import nn

from kdlab import _validate
from kdlab.prune.graph import Graph, HeadLink, example_args, groups_of
from kdlab.prune.importance import CRITERIA, Importance, _tensor, as_importance
from kdlab.prune.layouts import INHERENT, Reason, Seg

SCOPES = ("layer", "global")
KINDS = ("channels", "heads", "units")
#: warn when the MACs removed are below this share of what ``amount`` would remove
#: if every channel group could be pruned
SHORTFALL = 0.75


def user_stacklevel() -> int:
    """The stack level of the first frame outside kdlab.prune, for warnings."""
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == here:
        frame, level = frame.f_back, level + 1
    return level


def channel_scores(model: nn.Module, groups: list, *, criterion="l1", data=None,
                   loss_fn=None, batches: int = 1, batch_size: int = 128) -> list:
    """One score tensor of length ``group.channels`` per group (higher = more important);
    ``criterion`` a name in ``CRITERIA`` or an :class:`~kdlab.prune.Importance`."""
    importance = as_importance(criterion, data=data, loss_fn=loss_fn, batches=batches, batch_size=batch_size)
    return importance.channel_scores(model, groups)


def _kept(channels: int, amount: float, round_to: int) -> int:
    """Channels kept of ``channels``: what ``amount`` leaves, rounded to the nearest
    multiple of ``round_to`` (at least ``round_to``, at most ``channels``)."""
    keep = channels - round(amount * channels)
    return min(channels, max(round_to, round_to * round(keep / round_to)))


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:keep].sort().values


def _names(model: nn.Module, arg: str, layers) -> list:
    """Module names from names or module objects, each checked against ``model``."""
    if layers is None:
        return []
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    modules = dict(model.named_modules())
    by_id = {id(m): n for n, m in modules.items()}
    out = []
    for layer in _validate.sequence(arg, layers, "['fc'] or [model.fc]"):
        name = by_id.get(id(layer)) if isinstance(layer, nn.Module) else layer
        if not isinstance(name, str) or name not in modules:
            raise ValueError(f"{arg} contains {layer!r}, which is not a module of the model; "
                             f"module names look like {[n for n in modules if n][:4]}")
        out.append(name)
    return out


def _within(module: str, names) -> bool:
    return any(module == n or module.startswith(n + ".") or n == "" for n in names)


class Selection(list):
    """``[(group, kept channel indices ascending), ...]`` from :func:`select_channels`,
    with what :func:`remove_channels` needs: the traced graph, the kept channels of
    every space and the MACs of the conv/linear layers before and after."""

    def __init__(self, items, graph: Graph, keep: dict, options: dict | None = None, strict: bool = True):
        super().__init__(items)
        self.graph, self.keep, self.options, self.strict = graph, keep, options, strict
        counts = {root: len(k) for root, k in keep.items()}
        self.macs_before, self.macs_after = _macs(graph, counts)

    @property
    def removed_macs(self) -> float:
        """Fraction of the conv/linear MACs removed."""
        return 1.0 - self.macs_after / self.macs_before if self.macs_before else 0.0


def _macs(g: Graph, counts: dict) -> tuple:
    before = after = 0.0
    for dense, dims in g.macs:
        f = 1.0
        for key in dims:
            f *= g.sp.kept_fraction(g.members[key], counts)
        before += dense
        after += dense * f
    return before, after


def select_channels(model: nn.Module, amount, example_input, *, criterion="l1", data=None,
                    loss_fn=None, batches: int = 1, batch_size: int = 128, round_to: int = 1, layer_amounts=None,
                    ignored_layers=None, scope: str = "layer", kinds=KINDS) -> Selection:
    """``[(group, kept channel indices ascending), ...]`` for every prunable group.

    - ``amount`` in [0, 1]: the fraction of each group's channels removed;
    - ``criterion``: ``"l1"``, ``"l2"``, ``"taylor"`` (needs ``data``; ``loss_fn``,
      ``batches`` and ``batch_size`` say how its gradients are taken), ``"random"``,
      ``"bn_scale"`` or an :class:`~kdlab.prune.Importance`;
    - ``round_to``: every group keeps a multiple of this many channels (heads excepted);
    - ``layer_amounts``: ``{module name: fraction}`` for the groups those modules (or
      modules inside them) produce; the longest matching name wins, a group tied to
      several takes the smallest; ``scope="layer"`` only;
    - ``ignored_layers``: modules (or names) whose output channels, heads and units
      stay; a layer reading a pruned group still loses those input columns;
    - ``scope``: ``"layer"`` (every group loses ``amount``) or ``"global"`` (one
      ranking over all groups);
    - ``kinds``: which groups to prune: ``"channels"``, ``"heads"``, ``"units"``.

    Raises ``ValueError`` if ``amount`` would remove every channel of a group, or if
    nothing can be pruned (naming the operations that froze the groups). Warns when the
    MACs removed fall far short of what ``amount`` would remove if every group could
    be pruned (:func:`kdlab.prune.explain` says why).
    """
    options = _check(model, amount, example_input, criterion, data, loss_fn, batches, batch_size,
                     round_to, layer_amounts, ignored_layers, scope, kinds)
    return _select(model, options, strict=False)


def _check(model, amount, example_input, criterion, data, loss_fn, batches, batch_size, round_to,
           layer_amounts, ignored_layers, scope, kinds) -> dict:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    amount = _validate.fraction("amount", amount)
    round_to = _validate.positive_int("round_to", round_to)
    _validate.choice("scope", scope, SCOPES)
    if not isinstance(criterion, Importance):
        _validate.choice("criterion", criterion, CRITERIA)
    if criterion == "taylor" and data is None:
        raise ValueError("data is required for criterion='taylor': it needs batches (x, y) for gradients")
    kinds = tuple(_validate.sequence("kinds", kinds, "('channels', 'heads')"))
    for k in kinds:
        _validate.choice("kinds", k, KINDS)
    if not kinds:
        raise ValueError(f"kinds must name at least one of {KINDS}, got ()")
    amounts = {}
    if layer_amounts is not None:
        if not isinstance(layer_amounts, dict):
            raise TypeError(f"layer_amounts must be a dict {{module name: fraction}}, got {type(layer_amounts).__name__}")
        if scope != "layer":
            raise ValueError("layer_amounts needs scope='layer'; with scope='global' one ranking decides every layer")
        for name, value in layer_amounts.items():
            _names(model, "layer_amounts", [name])
            amounts[name] = _validate.fraction(f"layer_amounts[{name!r}]", value)
    ignored = _names(model, "ignored_layers", ignored_layers)
    args = example_args(example_input)
    importance = as_importance(criterion, data=data, loss_fn=loss_fn, batches=batches,
                               batch_size=_validate.positive_int("batch_size", batch_size))
    return {"amount": amount, "args": args, "importance": importance, "round_to": round_to,
            "amounts": amounts, "ignored": ignored, "scope": scope, "kinds": kinds}


def _amount_of(group, options) -> float:
    names = group.producers if group.kind == "channels" else [group.owner]
    found = []
    for module in names:
        matches = [k for k in options["amounts"] if _within(module, [k])]
        if matches:
            found.append(options["amounts"][max(matches, key=len)])
    return min(found) if found else options["amount"]


def _select(model: nn.Module, options: dict, *, strict: bool) -> Selection:
    g = Graph(model, options["args"], strict=strict)
    groups = groups_of(g)
    by_space = {grp.space: grp for grp in groups}
    heads_of = {grp.owner: grp for grp in groups if grp.kind == "heads"}
    kinds, ignored = options["kinds"], options["ignored"]

    def freeze(grp, reason):
        grp.frozen = True
        grp.reasons.append(reason)
        g.sp.freeze((Seg(grp.space),), reason)

    skipped = set()
    for grp in groups:
        owners = [m.module for m in grp.members if m.role != "in"] + ([grp.owner] if grp.owner else [])
        if not grp.frozen and ignored and any(_within(o, ignored) for o in owners):
            freeze(grp, Reason("ignored"))
        if grp.kind not in kinds:
            skipped.add(grp.space)

    # heads that must follow their module's embedding width
    followers: dict = {}
    steps: dict = {}
    for link in g.head_links:
        heads = heads_of.get(link.module)
        roots = g.sp.roots(link.embed)
        embed = by_space.get(roots[0]) if len(roots) == 1 else None
        if heads is None:
            continue
        if embed is None or embed.frozen or embed.space in skipped or heads.frozen or "heads" not in kinds:
            if not heads.frozen:
                why = "its embedding channels are not pruned" if embed is None or embed.frozen or \
                    embed.space in skipped else "heads are not pruned here"
                freeze(heads, Reason("op", type(model.get_submodule(link.module)).__name__, "",
                                     f"embed_dim must stay num_heads * head_dim; {why}"))
            continue
        followers[heads.space] = (embed.space, link)
        steps[embed.space] = math.lcm(steps.get(embed.space, 1), link.head_dim)

    prunable = [grp for grp in groups if not grp.frozen and grp.space not in skipped
                and grp.space not in followers]
    if not prunable:
        raise ValueError(_nothing_message(model, groups))
    amount = options["amount"]
    rounding = {grp.space: (1 if grp.kind == "heads" else math.lcm(options["round_to"], steps.get(grp.space, 1)))
                for grp in groups}
    if options["scope"] == "layer":
        for grp in prunable:
            a = _amount_of(grp, options)
            if round(a * grp.channels) >= grp.channels:
                what = grp.producers[0] if grp.kind == "channels" and grp.producers else grp.label
                raise ValueError(f"amount={a!r} would remove every channel of {what!r} ({grp.channels} "
                                 f"channels); use amount < {(grp.channels - 0.5) / grp.channels:.4f}")

    scored = prunable + [grp for grp in groups if grp.space in followers]
    scores = options["importance"].channel_scores(model, scored)
    if len(scores) != len(scored):
        raise ValueError(f"{options['importance']!r}.channel_scores returned {len(scores)} score tensors "
                         f"for {len(scored)} groups")
    score_of = {}
    unscored = []
    for grp, s in zip(scored, scores):
        if s is None:
            unscored.append(grp)
            continue
        s = torch.as_tensor(s)
        if s.shape != (grp.channels,):
            raise ValueError(f"{options['importance']!r} gave scores of shape {tuple(s.shape)} for "
                             f"{grp.label!r}, which has {grp.channels} channels")
        score_of[grp.space] = s.detach().cpu()
    if unscored:
        warnings.warn(f"{options['importance']!r} cannot score {len(unscored)} group(s) "
                      f"({', '.join(g_.label for g_ in unscored[:3])}); they keep all their channels",
                      stacklevel=user_stacklevel())
    active = [grp for grp in prunable if grp.space in score_of]

    keep: dict = {}
    if options["scope"] == "layer":
        for grp in active:
            n = _kept(grp.channels, _amount_of(grp, options), rounding[grp.space])
            keep[grp.space] = _top(score_of[grp.space], n)
    else:
        keep.update(_global(active, score_of, amount, rounding, options["importance"]))
    for heads_space, (embed_space, link) in followers.items():
        if embed_space in keep and heads_space not in score_of:  # heads cannot follow: the width stays
            del keep[embed_space]
    for heads_space, (embed_space, link) in followers.items():
        if embed_space in keep:
            keep[heads_space] = _top(score_of[heads_space], len(keep[embed_space]) // link.head_dim)

    chosen = [(grp, keep[grp.space]) for grp in groups if grp.space in keep]
    selection = Selection(chosen, g, keep, options, strict)
    _warn_shortfall(model, g, groups, selection, options, rounding, followers,
                    skipped | {grp.space for grp in unscored})
    return selection


def _global(active, score_of, amount, rounding, importance) -> dict:
    normed = []
    for grp in active:
        s = score_of[grp.space].double()
        mean = s.mean()
        if importance.normalize_globally and mean > 0:
            s = s / mean
        s = s.clone()
        s[_top(score_of[grp.space], min(grp.channels, max(1, rounding[grp.space])))] = float("inf")
        normed.append(s)
    flat = torch.cat(normed)
    n_remove = min(round(amount * len(flat)), int(torch.isfinite(flat).sum()))
    removed = torch.zeros(len(flat), dtype=torch.bool)
    removed[torch.sort(flat, stable=True).indices[:n_remove]] = True
    keep, offset = {}, 0
    for grp in active:
        left = grp.channels - int(removed[offset:offset + grp.channels].sum())
        offset += grp.channels
        step = rounding[grp.space]
        n = min(grp.channels, max(step, step * round(left / step)))
        keep[grp.space] = _top(score_of[grp.space], n)
    return keep


def _nothing_message(model, groups) -> str:
    blocking: dict = {}
    for grp in groups:
        for r in grp.blocking[:1]:
            blocking[str(r)] = blocking.get(str(r), 0) + 1
    text = f"model has no prunable channels: {type(model).__name__}"
    if blocking:
        ops = sorted(blocking.items(), key=lambda kv: -kv[1])[:3]
        text += "; blocked by " + "; ".join(f"{op} ({n} group{'s' * (n > 1)})" for op, n in ops)
    else:
        text += (" (no Conv/Linear layer whose outputs feed only sliceable layers: every layer "
                 "output is the model's output or was excluded)")
    return text + ". prune.explain(model, example_input) lists every group."


def _warn_shortfall(model, g, groups, selection, options, rounding, followers, skipped) -> None:
    """Compare the MACs removed with those removed if every group could be pruned."""
    ideal: dict = {}
    for grp in groups:
        if grp.space in skipped or grp.space in followers:
            continue
        inherent = all(r.kind in INHERENT for r in grp.reasons)
        if grp.frozen and inherent:
            continue
        ideal[grp.space] = _kept(grp.channels, _amount_of(grp, options), rounding[grp.space])
    for heads_space, (embed_space, link) in followers.items():
        if embed_space in ideal:
            ideal[heads_space] = ideal[embed_space] // link.head_dim
    before, after = _macs(g, ideal)
    wanted = 1.0 - after / before if before else 0.0
    got = selection.removed_macs
    if wanted > 0 and got < SHORTFALL * wanted:
        frozen = [grp for grp in groups if grp.frozen and grp.blocking]
        ops: dict = {}
        for grp in frozen:
            r = str(grp.blocking[0])
            ops[r] = ops.get(r, 0) + grp.channels
        top = "; ".join(op for op, _ in sorted(ops.items(), key=lambda kv: -kv[1])[:2])
        warnings.warn(f"structured pruning of {type(model).__name__} removes {100 * got:.0f}% of its conv/linear "
                      f"MACs; amount={options['amount']} would remove about {100 * wanted:.0f}% if every channel "
                      f"group could be pruned. {len(frozen)} of {len(groups)} groups are frozen"
                      + (f", most channels by {top}" if top else "")
                      + ". prune.explain(model, example_input) lists them.", stacklevel=user_stacklevel())


# ---------------------------------------------------------------- surgery

class PrunedModelError(RuntimeError):
    """The pruned copy does not run on the example input."""


def _slice_plan(selection: Selection) -> dict:
    """``{parameter or buffer name: {dim: kept positions}}`` for every dim that shrinks."""
    g, keep = selection.graph, selection.keep
    plan: dict = {}
    for (name, dim), layout in g.members.items():
        if not any(r in keep for r in g.sp.roots(layout)):
            continue
        positions = g.sp.positions(layout, keep)
        if len(positions) < g.sp.length(layout):
            plan.setdefault(name, {})[dim] = torch.tensor(positions, dtype=torch.long)
    return plan


def remove_channels(model: nn.Module, selection: Selection) -> nn.Module:
    """A new, physically smaller copy of ``model`` without the channels ``selection``
    (from :func:`select_channels` on this model) does not keep; the original is untouched.

    The copy is run on the example input to check its outputs keep their shapes. If it
    fails (a forward that hard-codes a width), the channels that pass through views
    with explicit sizes are frozen and the selection is made again, with a warning; if
    that fails too, ``RuntimeError`` says what broke.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(selection, Selection):
        raise TypeError(f"selection must come from prune.select_channels, got {type(selection).__name__}")
    for (name, dim), layout in selection.graph.members.items():
        try:
            tensor = _tensor(model, name)
        except AttributeError:
            raise ValueError(f"selection was made for another model: {type(model).__name__} has no "
                             f"parameter {name!r}") from None
        if tensor.shape[dim] != selection.graph.sp.length(layout):
            raise ValueError(f"selection was made for another model: {name!r} has shape {tuple(tensor.shape)}")
    try:
        return _apply(model, selection)
    except PrunedModelError as first:
        if selection.strict or selection.options is None:
            raise
        retry = _select(model, selection.options, strict=True)
        try:
            pruned = _apply(model, retry)
        except PrunedModelError as second:
            raise second from first
        warnings.warn(f"the first pruned copy of {type(model).__name__} did not run ({first}); kdlab froze the "
                      "channels that pass through views with explicit sizes and pruned again",
                      stacklevel=user_stacklevel())
        selection[:] = retry
        selection.graph, selection.keep = retry.graph, retry.keep
        selection.macs_before, selection.macs_after = retry.macs_before, retry.macs_after
        return pruned


def _apply(model: nn.Module, selection: Selection) -> nn.Module:
    g = selection.graph
    pruned = copy.deepcopy(model)
    owners: dict = {}
    for mod_name, module in pruned.named_modules(remove_duplicate=False):
        for attr, t in list(module._parameters.items()) + list(module._buffers.items()):
            if t is not None:
                owners.setdefault(id(t), []).append((module, attr))
    with torch.no_grad():
        for name, dims in _slice_plan(selection).items():
            old = _tensor(pruned, name)
            new = old.detach()
            for dim, index in dims.items():
                new = new.index_select(dim, index.to(new.device))
            new = new.clone()
            value = nn.Parameter(new, requires_grad=old.requires_grad) if isinstance(old, nn.Parameter) else new
            for module, attr in owners[id(old)]:
                setattr(module, attr, value)
    _fix_attributes(pruned, model, g, selection.keep)
    _check_runs(pruned, g)
    return pruned


def _fix_attributes(pruned: nn.Module, original: nn.Module, g: Graph, keep: dict) -> None:
    """Set the size attributes each known module reads in forward from its new weights."""
    from kdlab.models import MultiHeadSelfAttention
    from kdlab.prune.graph import coupled_attention

    before = dict(original.named_modules())
    coupled = coupled_attention()
    try:
        from torchvision.models.swin_transformer import PatchMerging, PatchMergingV2
        from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer
    except ImportError:
        PatchMerging = PatchMergingV2 = EncoderBlock = VisionTransformer = ()
    for name, m in pruned.named_modules():
        old = before[name]
        if isinstance(m, nn.modules.conv._ConvNd):
            w = m.weight
            if m.transposed:
                m.in_channels, m.out_channels = w.shape[0], w.shape[1] * m.groups
            elif old.groups > 1 and old.in_channels // old.groups == 1:
                m.groups = w.shape[0] // (old.out_channels // old.groups)
                m.in_channels, m.out_channels = m.groups, w.shape[0]
            else:
                m.in_channels, m.out_channels = w.shape[1] * m.groups, w.shape[0]
        elif isinstance(m, nn.Linear):
            m.out_features, m.in_features = m.weight.shape
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            ref = m.weight if m.weight is not None else m.running_mean
            if ref is not None:
                m.num_features = ref.shape[0]
        elif isinstance(m, nn.Embedding):
            m.embedding_dim = m.weight.shape[1]
        elif isinstance(m, nn.RNNBase):
            m.hidden_size, m.input_size = m.weight_hh_l0.shape[1], m.weight_ih_l0.shape[1]
            m._init_flat_weights()
        elif isinstance(m, nn.MultiheadAttention):
            q = m.in_proj_weight if m._qkv_same_embed_dim else m.q_proj_weight
            rows = q.shape[0] // (3 if m._qkv_same_embed_dim else 1)
            m.num_heads = rows // old.head_dim
            m.embed_dim = m.out_proj.weight.shape[0]
            m.kdim = m.embed_dim if m._qkv_same_embed_dim else m.k_proj_weight.shape[1]
            m.vdim = m.embed_dim if m._qkv_same_embed_dim else m.v_proj_weight.shape[1]
        elif isinstance(m, MultiHeadSelfAttention):
            m.heads = m.q.weight.shape[0] // m.head_dim
        elif coupled and isinstance(m, coupled):
            if hasattr(m, "merge"):  # MaxViT
                m.n_heads = m.merge.weight.shape[1] // m.head_dim
            else:
                m.num_heads = m.proj.weight.shape[1] // (old.qkv.in_features // old.num_heads)
        elif VisionTransformer and isinstance(m, VisionTransformer):
            m.hidden_dim = m.conv_proj.weight.shape[0]
        elif EncoderBlock and isinstance(m, EncoderBlock):
            m.num_heads = m.self_attention.num_heads
        elif PatchMerging and isinstance(m, (PatchMerging, PatchMergingV2)):
            m.dim = m.reduction.weight.shape[1] // 4
        elif hasattr(m, "embedding_dim") and hasattr(m, "remap"):  # kdlab.prune.PrunedEmbedding
            m.embedding_dim = m.weight.shape[1]
    for name, attr, layout in g.sizes:
        count = len(g.sp.positions(layout, keep))
        module = pruned.get_submodule(name)
        setattr(module, attr, (count,) if attr == "normalized_shape" else count)


def _check_runs(pruned: nn.Module, g: Graph) -> None:
    out_node = next(n for n in g.exported.graph.nodes if n.op == "output")
    expected = [tuple(n.meta["val"].shape) for n in torch.utils._pytree.tree_leaves(out_node.args)
                if isinstance(n, torch.fx.Node) and isinstance(n.meta.get("val"), torch.Tensor)]
    was_training = pruned.training
    pruned.eval()
    try:
        with torch.no_grad():
            out = pruned(*g.args)
    except Exception as e:  # noqa: BLE001 - any failure of the user's forward is reported the same way
        raise PrunedModelError(f"the pruned model fails on example_input: {type(e).__name__}: "
                               f"{str(e).splitlines()[0][:300]}") from e
    finally:
        pruned.train(was_training)
    got = [tuple(t.shape) for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
    if got != expected:
        raise PrunedModelError(f"the pruned model's outputs have shapes {got}, the original's {expected}")


def zero_channels(model: nn.Module, selection: Selection) -> nn.Module:
    """A copy of ``model`` with every parameter slice of the channels ``selection``
    removes set to zero: in eval mode it computes what the pruned model computes
    (except through LayerNorm-like statistics over the channels)."""
    g, keep = selection.graph, selection.keep
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for (name, dim), layout in g.members.items():
            if not any(r in keep for r in g.sp.roots(layout)):
                continue
            t = _tensor(zeroed, name)
            kept = torch.zeros(t.shape[dim], dtype=torch.bool)
            kept[g.sp.positions(layout, keep)] = True
            if not kept.all():
                t.index_fill_(dim, (~kept).nonzero().flatten().to(t.device), 0)
    return zeroed


def structured_prune(model: nn.Module, amount: float, example_input, *, criterion="l1",
                     data=None, loss_fn=None, batches: int = 1, batch_size: int = 128,
                     round_to: int = 1) -> nn.Module:
    """A new, physically smaller copy of ``model`` with ``round(amount * C)`` channels
    of every prunable group removed (``amount`` in [0, 1); ``criterion`` ``"l1"``,
    ``"l2"``, ``"taylor"``, ``"random"``, ``"bn_scale"`` or an
    :class:`~kdlab.prune.Importance`; ``data``/``loss_fn``/``batches``/``batch_size``
    feed ``"taylor"``).

    ``example_input`` is a batch the model accepts (only its shapes matter).
    ``round_to``: keep a multiple of this many channels in every group (vectorised
    CPU kernels and GPU tensor cores prefer multiples of 8 or 16): the multiple
    nearest to what ``amount`` leaves, at least ``round_to`` and at most all of them.
    Per-layer amounts, ignored layers, a global ranking or pruning only heads or units:
    ``remove_channels(model, select_channels(model, amount, x, ...))``.

    >>> import torch
    >>> from kdlab import evaluate, models, prune
    >>> cnn = models.create("cnn-teacher", input_shape=(1, 8, 8))
    >>> small = prune.structured_prune(cnn, 0.5, torch.zeros(1, 1, 8, 8))
    >>> small.classifier.in_features, evaluate.count_parameters(small) < evaluate.count_parameters(cnn) / 3
    (32, True)
    """
    selection = select_channels(model, amount, example_input, criterion=criterion, data=data,
                                loss_fn=loss_fn, batches=batches, batch_size=batch_size, round_to=round_to)
    return remove_channels(model, selection)


__all__ = ["channel_scores", "select_channels", "remove_channels", "structured_prune", "zero_channels",
           "Selection", "HeadLink", "PrunedModelError"]
