"""Pair structures: which (anchor row, candidate row) pairs belong to a set.

A batch ``z`` of shape ``[N, V, D]`` is seen as ``N * V`` rows; row ``(i, a)`` is view ``a`` of
instance ``i``. Every pair of rows falls into exactly one of six :class:`Relation` classes,
decided only by the two rows' instance ids, view ids and (optional) labels. A :class:`PairMask`
is a set of relation classes, so positive and denominator sets of every softmax-type loss are
written as a few words (``PairMask.where(instance="other")``) instead of a dense ``[R, R]``
tensor. The dense block for any tile of rows is built on demand by :meth:`PairMask.block`,
which is what lets a tiled or distributed path evaluate the same mask piece by piece.

Without labels each instance is its own class, so pairs of different instances are always
"other label".
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Choice = Literal["same", "other", "any"]


class Relation(enum.IntEnum):
    """The six ways two rows can be related (instance, view, label)."""

    SELF = 0  # same instance, same view: the row itself
    POSITIVE = 1  # same instance, other view
    SAME_LABEL_SAME_VIEW = 2  # other instance with the same label, same view
    SAME_LABEL_OTHER_VIEW = 3  # other instance with the same label, other view
    OTHER_LABEL_SAME_VIEW = 4  # other instance, other label, same view
    OTHER_LABEL_OTHER_VIEW = 5  # other instance, other label, other view


# (same_instance, same_view, same_label) of each relation; same instance implies same label.
_FACTS: dict[Relation, tuple[bool, bool, bool]] = {
    Relation.SELF: (True, True, True),
    Relation.POSITIVE: (True, False, True),
    Relation.SAME_LABEL_SAME_VIEW: (False, True, True),
    Relation.SAME_LABEL_OTHER_VIEW: (False, False, True),
    Relation.OTHER_LABEL_SAME_VIEW: (False, True, False),
    Relation.OTHER_LABEL_OTHER_VIEW: (False, False, False),
}


def _matches(fact: bool, choice: Choice, argument: str) -> bool:
    if choice == "any":
        return True
    if choice == "same":
        return fact
    if choice == "other":
        return not fact
    raise ValueError(f"{argument} must be 'same', 'other' or 'any'; got {choice!r}")


@dataclass(frozen=True)
class RowIds:
    """Instance id, view id and optional label of each row, all ``int64`` of shape ``[R]``."""

    instance: Tensor
    view: Tensor
    label: Tensor | None = None

    @staticmethod
    def for_batch(
        num_instances: int,
        num_views: int,
        *,
        labels: Tensor | None = None,
        device: torch.device | str | None = None,
        instance_offset: int = 0,
    ) -> RowIds:
        """Ids of the rows of ``z.reshape(N * V, D)`` (instance-major: row ``i * V + v``).

        ``instance_offset`` shifts instance ids, so that rows gathered from several processes
        keep distinct ids.
        """
        instance = torch.arange(num_instances, device=device).repeat_interleave(num_views)
        view = torch.arange(num_views, device=device).repeat(num_instances)
        label = None
        if labels is not None:
            label = labels.to(device=device, dtype=torch.long).repeat_interleave(num_views)
        return RowIds(instance + instance_offset, view, label)

    def select(self, index: Tensor) -> RowIds:
        """The ids of a subset of rows (``index`` is a row index or a boolean row mask)."""
        label = None if self.label is None else self.label[index]
        return RowIds(self.instance[index], self.view[index], label)

    def __len__(self) -> int:
        return int(self.instance.shape[0])


@dataclass(frozen=True)
class PairMask:
    """A set of (anchor row, candidate row) pairs, described by :class:`Relation` classes.

    Build one with :meth:`where` and combine with ``|``, ``&``, ``-`` and ``~``::

        PairMask.where(instance="other")                 # every other instance, any view
        PairMask.where(view="other")                     # CLIP: the other modality's rows
        PairMask.where(label="same") - PairMask.SELF     # SupCon positives

    Class attributes (``PairMask.SELF``, ``NOT_SELF``, ``POSITIVES``, ``NEGATIVES``,
    ``SAME_VIEW_NEGATIVES``, ``OTHER_VIEW``) name the sets the losses use most.
    """

    relations: frozenset[Relation]

    @staticmethod
    def of(relations: Iterable[Relation]) -> PairMask:
        return PairMask(frozenset(Relation(r) for r in relations))

    @staticmethod
    def where(*, instance: Choice = "any", view: Choice = "any", label: Choice = "any") -> PairMask:
        """All relations whose instance, view and label agree with the choices given."""
        chosen = [
            rel
            for rel, (si, sv, sl) in _FACTS.items()
            if _matches(si, instance, "instance")
            and _matches(sv, view, "view")
            and _matches(sl, label, "label")
        ]
        return PairMask.of(chosen)

    def __or__(self, other: PairMask) -> PairMask:
        return PairMask(self.relations | other.relations)

    def __and__(self, other: PairMask) -> PairMask:
        return PairMask(self.relations & other.relations)

    def __sub__(self, other: PairMask) -> PairMask:
        return PairMask(self.relations - other.relations)

    def __invert__(self) -> PairMask:
        return PairMask(frozenset(Relation) - self.relations)

    def __contains__(self, relation: Relation) -> bool:
        return relation in self.relations

    def is_empty(self) -> bool:
        return not self.relations

    def constant_block(self, *, same_view: bool, labelled: bool) -> bool | None:
        """Whether every pair (True) or no pair (False) of a block of one anchor view against
        one candidate view is in the set, decided from the relations alone; ``None`` when it
        depends on the pair. ``labelled``: both sides carry labels (as :meth:`block` decides;
        without labels another instance never shares the label, so those relations cannot
        occur). ``labelled=True`` is always safe, only less often constant.

        ``OTHER_VIEW`` on an other-view block is True, on a same-view block False; ``NOT_SELF``
        on a same-view block is ``None`` (the diagonal).
        """
        possible = {
            relation
            for relation, (si, sv, sl) in _FACTS.items()
            if sv == same_view and (labelled or si or not sl)
        }
        inside = possible & self.relations
        if inside == possible:
            return True
        return False if not inside else None

    def block(
        self, anchors: RowIds, candidates: RowIds, *, same_view: bool | None = None
    ) -> Tensor:
        """Dense ``[Ra, Rc]`` boolean mask of this set for the given rows (one tile).

        Built from boolean comparisons only (no integer code matrix). ``same_view`` tells that
        every pair of the tile is same-view (True) or other-view (False), when the caller knows
        it (a block of one anchor view against one candidate view), which skips that comparison.
        """
        if same_view is not None:
            labelled = anchors.label is not None and candidates.label is not None
            constant = self.constant_block(same_view=same_view, labelled=labelled)
            if constant is not None:  # e.g. CLIP's other-view set on an other-view block
                shape = (len(anchors), len(candidates))
                return torch.full(shape, constant, dtype=torch.bool, device=anchors.view.device)
        if len(self.relations) > len(Relation) // 2:
            # every pair has exactly one relation: the complement is the cheaper set to build
            # (NT-Xent's "all but self" is one comparison instead of five)
            complement = PairMask(frozenset(Relation) - self.relations)
            return ~complement.block(anchors, candidates, same_view=same_view)
        same_instance = anchors.instance[:, None] == candidates.instance[None, :]
        if anchors.label is not None and candidates.label is not None:
            same_label = anchors.label[:, None] == candidates.label[None, :]
        else:
            same_label = same_instance
        view_match = (
            None if same_view is not None else (anchors.view[:, None] == candidates.view[None, :])
        )
        mask = torch.zeros_like(same_instance)
        for relation in self.relations:
            si, sv, sl = _FACTS[relation]
            if same_view is not None and same_view != sv:
                continue
            labelled = same_label is not same_instance
            if not si and sl and not labelled:
                continue  # without labels another instance never shares the label
            term = same_instance if si else ~same_instance
            if view_match is not None:
                term = term & (view_match if sv else ~view_match)
            if not si and labelled:
                term = term & (same_label if sl else ~same_label)
            mask = mask | term
        return mask

    def __repr__(self) -> str:
        names = ", ".join(rel.name for rel in sorted(self.relations))
        return f"PairMask({names})"


PairMask.SELF = PairMask.of([Relation.SELF])  # type: ignore[attr-defined]
PairMask.NOT_SELF = ~PairMask.SELF  # type: ignore[attr-defined]
PairMask.POSITIVES = PairMask.where(instance="same", view="other")  # type: ignore[attr-defined]
PairMask.NEGATIVES = PairMask.where(instance="other")  # type: ignore[attr-defined]
PairMask.SAME_VIEW_NEGATIVES = PairMask.where(  # type: ignore[attr-defined]
    instance="other", view="same"
)
PairMask.OTHER_VIEW = PairMask.where(view="other")  # type: ignore[attr-defined]
