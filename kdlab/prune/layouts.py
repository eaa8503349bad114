"""Channel spaces and layouts: the bookkeeping under :mod:`kdlab.prune.graph`.

A *space* is a set of channels that are removed together: the output channels of a
convolution and everything tied to them by residual additions, the heads of one
attention layer, the hidden units of a recurrent layer. Spaces are merged with a
union-find as the graph ties them together.

A *layout* says how one tensor dimension is made of spaces: a tuple of
:class:`Seg` (segments), each covering ``repeat * size * inner`` consecutive
positions, where position ``p`` of the segment holds channel
``(p // inner) % size`` of its space. Examples, for a space ``s`` of 64 channels:

- the output of a conv:                       ``(Seg(s),)``
- ``torch.cat([a, b], 1)``:                   ``(Seg(a), Seg(b))``
- a flatten of ``(N, 64, 7, 7)``:             ``(Seg(s, inner=49),)``
- the input of a conv with 4 groups that
  prunes the same 16 channels in each group:  ``(Seg(t, repeat=4),)`` with ``t`` of 16
- q, k and v rows of 12 heads of width 64:    ``(Seg(h, inner=64, repeat=3),)``

A space can be *refined* (defined as a layout of other spaces) when the graph shows
more structure than first assumed, e.g. when a ``chunk`` splits a conv's output in
two. A refined space is never a group of its own; its members are read through its
definition. A space is *frozen* when anything about it cannot be sliced; the reasons
say what froze it.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Seg:
    """``repeat`` copies of a space's ``size`` channels, each channel ``inner`` positions wide."""

    space: int
    inner: int = 1
    repeat: int = 1


@dataclass(frozen=True)
class Reason:
    """Why a space is frozen: ``kind`` is ``"input"``, ``"output"``, ``"ignored"`` or
    ``"op"``; ``op`` names the operation, ``where`` its source line, ``detail`` the rule."""

    kind: str
    op: str = ""
    where: str = ""
    detail: str = ""

    def __str__(self) -> str:
        text = {"input": "model input", "output": "model output", "ignored": "ignored_layers"}.get(self.kind, self.op)
        if self.detail:
            text += f" ({self.detail})"
        if self.where:
            text += f" at {self.where}"
        return text


INHERENT = ("input", "output", "ignored")


@dataclass
class _Space:
    size: int
    parent: int
    definition: tuple | None = None
    reasons: list = field(default_factory=list)
    kind: str = "channels"
    owner: str | None = None


class Spaces:
    """Union-find over spaces, with refinement, freezing and layout algebra."""

    def __init__(self):
        self._s: list[_Space] = []

    # ---------------------------------------------------------------- spaces
    def new(self, size: int, *, reason: Reason | None = None, kind: str = "channels",
            owner: str | None = None) -> int:
        i = len(self._s)
        self._s.append(_Space(size, i, reasons=[reason] if reason else [], kind=kind, owner=owner))
        return i

    def fresh(self, size: int, reason: Reason | None = None) -> tuple | None:
        """A layout of one new space, frozen if ``reason`` is given (None for size 1 activations)."""
        if size == 1 and reason is not None:
            return None
        return (Seg(self.new(size, reason=reason)),)

    def find(self, i: int) -> int:
        s = self._s
        while s[i].parent != i:
            s[i].parent = s[s[i].parent].parent
            i = s[i].parent
        return i

    def size(self, i: int) -> int:
        return self._s[self.find(i)].size

    def info(self, i: int) -> _Space:
        return self._s[self.find(i)]

    def frozen(self, i: int) -> bool:
        return bool(self._s[self.find(i)].reasons)

    def _union(self, i: int, j: int) -> None:
        i, j = self.find(i), self.find(j)
        if i == j:
            return
        a, b = self._s[i], self._s[j]
        if a.size != b.size:
            raise AssertionError(f"union of spaces of sizes {a.size} and {b.size}")
        a.reasons.extend(r for r in b.reasons if r not in a.reasons)
        if a.kind == "channels":
            a.kind, a.owner = b.kind, b.owner or a.owner
        b.parent = i

    def _define(self, i: int, layout: tuple) -> None:
        """Refine root ``i`` as ``layout`` (same length, made of other spaces)."""
        r = self._s[i]
        for seg in layout:
            leaf = self._s[seg.space]
            leaf.reasons.extend(x for x in r.reasons if x not in leaf.reasons)
            if leaf.kind == "channels" and r.kind != "channels":
                leaf.kind, leaf.owner = r.kind, r.owner
        r.definition = layout

    # ---------------------------------------------------------------- layouts
    def length(self, layout) -> int:
        if layout is None:
            return 1
        return sum(s.repeat * s.inner * self.size(s.space) for s in layout)

    def resolve(self, layout) -> tuple:
        """``layout`` in terms of unrefined root spaces, adjacent equal segments merged."""
        if layout is None:
            return ()
        out: list[Seg] = []
        for seg in layout:
            root = self.find(seg.space)
            definition = self._s[root].definition
            if definition is None:
                out.append(Seg(root, seg.inner, seg.repeat))
                continue
            sub = [Seg(s.space, s.inner * seg.inner, s.repeat) for s in self.resolve(definition)]
            if len(sub) == 1:
                out.append(Seg(sub[0].space, sub[0].inner, sub[0].repeat * seg.repeat))
            else:
                out.extend(sub * seg.repeat)
        merged: list[Seg] = []
        for s in out:
            if merged and merged[-1].space == s.space and merged[-1].inner == s.inner:
                merged[-1] = Seg(s.space, s.inner, merged[-1].repeat + s.repeat)
            else:
                merged.append(s)
        return tuple(merged)

    def roots(self, layout) -> list:
        return list(dict.fromkeys(s.space for s in self.resolve(layout)))

    def is_frozen(self, layout) -> bool:
        """True when every space of ``layout`` is frozen (or it is a size-1 dim)."""
        return all(self.frozen(r) for r in self.roots(layout))

    def freeze(self, layout, reason: Reason) -> None:
        for r in self.roots(layout):
            reasons = self._s[r].reasons
            if reason not in reasons:
                reasons.append(reason)

    def scaled(self, layout, inner: int = 1, repeat: int = 1) -> tuple:
        """Each position of ``layout`` widened to ``inner`` positions, the whole repeated ``repeat`` times."""
        segs = [Seg(s.space, s.inner * inner, s.repeat) for s in self.resolve(layout)]
        if len(segs) == 1:
            return (Seg(segs[0].space, segs[0].inner, segs[0].repeat * repeat),)
        return tuple(segs * repeat)

    def cut(self, layout, points) -> list | None:
        """Split ``layout`` at the positions ``points`` (sorted, strictly inside), refining
        spaces where a cut falls inside one; None when a cut falls inside a channel."""
        for _ in range(64):
            segs, offset, refined = self.resolve(layout), 0, False
            for seg in segs:
                size = self._s[seg.space].size
                cycle = size * seg.inner
                end = offset + cycle * seg.repeat
                for p in points:
                    if offset < p < end and (p - offset) % cycle:
                        within = (p - offset) % cycle
                        if within % seg.inner:
                            return None
                        c = within // seg.inner
                        r = self._s[seg.space]
                        self._define(seg.space, (Seg(self.new(c, kind=r.kind, owner=r.owner)),
                                                 Seg(self.new(size - c, kind=r.kind, owner=r.owner))))
                        refined = True
                        break
                if refined:
                    break
                offset = end
            if not refined:
                break
        else:
            return None
        pieces, current, offset = [], [], 0
        bounds = list(points) + [self.length(layout)]
        for seg in self.resolve(layout):
            cycle = self._s[seg.space].size * seg.inner
            left = seg.repeat
            while left:
                take = left
                if bounds[0] < offset + cycle * left:  # a bound falls inside: take whole cycles up to it
                    take = (bounds[0] - offset) // cycle
                if take:
                    current.append(Seg(seg.space, seg.inner, take))
                    offset += cycle * take
                    left -= take
                if offset == bounds[0]:
                    pieces.append(tuple(current))
                    current = []
                    bounds.pop(0)
        return pieces

    def unify(self, a, b, reason: Reason) -> bool:
        """Tie two layouts of the same length position by position; freeze both (with
        ``reason``) when their structures cannot be matched. Returns False then."""
        if a is None or b is None:
            return True
        ra, rb = self.resolve(a), self.resolve(b)
        if ra == rb:
            return True
        if self.length(ra) != self.length(rb):
            raise AssertionError(f"unify of layouts of lengths {self.length(ra)} and {self.length(rb)}")
        if self._same_shape(ra, rb):
            for x, y in zip(ra, rb):
                self._union(x.space, y.space)
            return True
        for plain, other in ((ra, rb), (rb, ra)):
            if len(plain) == 1 and plain[0].inner == 1 and plain[0].repeat == 1 \
                    and plain[0].space not in {s.space for s in other}:
                self._define(plain[0].space, other)
                return True
        bounds = sorted(self._bounds(ra) | self._bounds(rb))
        pa, pb = self.cut(ra, bounds), self.cut(rb, bounds)
        if pa is not None and pb is not None and len(pa) == len(pb) > 1:
            return all([self.unify(x, y, reason) for x, y in zip(pa, pb)])
        self.freeze(ra, reason)
        self.freeze(rb, reason)
        return False

    def _same_shape(self, ra, rb) -> bool:
        return len(ra) == len(rb) and all(
            x.inner == y.inner and x.repeat == y.repeat and self._s[x.space].size == self._s[y.space].size
            for x, y in zip(ra, rb))

    def _bounds(self, segs) -> set:
        out, offset = set(), 0
        for s in segs[:-1]:
            offset += s.repeat * s.inner * self._s[s.space].size
            out.add(offset)
        return out

    # ---------------------------------------------------------------- selections
    def positions(self, layout, keep: dict) -> list:
        """Positions of ``layout`` kept when each root space ``r`` keeps ``keep[r]``
        (ascending channel indices; every channel of a root not in ``keep``)."""
        out, offset = [], 0
        for seg in self.resolve(layout):
            size = self._s[seg.space].size
            kept = keep.get(seg.space)
            channels = range(size) if kept is None else kept
            for rep in range(seg.repeat):
                base = offset + rep * size * seg.inner
                for c in channels:
                    start = base + int(c) * seg.inner
                    out.extend(range(start, start + seg.inner))
            offset += seg.repeat * size * seg.inner
        return out

    def kept_fraction(self, layout, kept_count: dict) -> float:
        """Fraction of ``layout``'s positions kept when root ``r`` keeps ``kept_count[r]`` channels."""
        total = self.length(layout)
        if layout is None or not total:
            return 1.0
        kept = 0
        for seg in self.resolve(layout):
            size = self._s[seg.space].size
            kept += seg.repeat * seg.inner * kept_count.get(seg.space, size)
        return kept / total
