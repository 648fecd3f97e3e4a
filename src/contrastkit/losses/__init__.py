"""Contrastive objectives. Each is a function ``loss(z, ..., *, hyperparameters)`` on
``z [N, V, D]`` with ``normalize=True`` and ``reduction="mean"|"none"``, a thin module, and a
registry entry (:func:`get`, :func:`available`). Definitions: ``docs/losses.md``.
"""

from torch import Tensor, nn

from contrastkit.losses.cacr import cacr
from contrastkit.losses.cwcl import cwcl
from contrastkit.losses.decoupled import dcl, dclw, dhel, mv_dhel
from contrastkit.losses.hypersphere import alignment, kcl, uniformity
from contrastkit.losses.infonce import hard_info_nce, info_nce, mv_infonce, supcon
from contrastkit.losses.multiview import avg_infonce, pvc
from contrastkit.losses.registry import (
    LearnableTemperature,
    LossModule,
    available,
    get,
    keyword_arguments,
    register,
)
from contrastkit.losses.sigmoid import siglip
from contrastkit.losses.soft import soft_contrastive, soft_supcon

InfoNCE = register("info_nce", info_nce, "InfoNCE")
MVInfoNCE = register("mv_infonce", mv_infonce, "MVInfoNCE")
MVDHEL = register("mv_dhel", mv_dhel, "MVDHEL")
DHEL = register("dhel", dhel, "DHEL")
DCL = register("dcl", dcl, "DCL")
DCLW = register("dclw", dclw, "DCLW")
SupCon = register("supcon", supcon, "SupCon")
PVC = register("pvc", pvc, "PVC")
AVGInfoNCE = register("avg_infonce", avg_infonce, "AVGInfoNCE")
KCL = register("kcl", kcl, "KCL")
HardInfoNCE = register("hard_info_nce", hard_info_nce, "HardInfoNCE")
CACR = register("cacr", cacr, "CACR")
CWCL = register("cwcl", cwcl, "CWCL")
SoftSupCon = register("soft_supcon", soft_supcon, "SoftSupCon")
SoftContrastive = register("soft_contrastive", soft_contrastive, "SoftContrastive")
Alignment = register("alignment", alignment, "Alignment")
Uniformity = register("uniformity", uniformity, "Uniformity")
_SigLIPFixed = register("siglip", siglip, "SigLIPFixed")


class SigLIP(nn.Module):
    """SigLIP with a learnable temperature and bias (paper init: scale 10, bias -10)."""

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        bias: float = -10.0,
        normalize: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.temperature = LearnableTemperature(temperature, max_scale=float("inf"))
        self.bias = nn.Parameter(Tensor([bias]).squeeze())
        self.normalize = normalize
        self.reduction = reduction

    def forward(self, z: Tensor) -> Tensor:
        return siglip(
            z,
            temperature=self.temperature(),
            bias=self.bias,
            normalize=self.normalize,
            reduction=self.reduction,
        )  # type: ignore[arg-type]


__all__ = [
    "CACR",
    "CWCL",
    "DCL",
    "DCLW",
    "DHEL",
    "KCL",
    "MVDHEL",
    "PVC",
    "AVGInfoNCE",
    "Alignment",
    "HardInfoNCE",
    "InfoNCE",
    "LearnableTemperature",
    "LossModule",
    "MVInfoNCE",
    "SigLIP",
    "SoftContrastive",
    "SoftSupCon",
    "SupCon",
    "Uniformity",
    "alignment",
    "available",
    "avg_infonce",
    "cacr",
    "cwcl",
    "dcl",
    "dclw",
    "dhel",
    "get",
    "hard_info_nce",
    "info_nce",
    "kcl",
    "keyword_arguments",
    "mv_dhel",
    "mv_infonce",
    "pvc",
    "register",
    "siglip",
    "soft_contrastive",
    "soft_supcon",
    "supcon",
    "uniformity",
]
