"""Contrastive objectives. Each is a function ``loss(z, ..., *, hyperparameters)`` on
``z [N, V, D]`` with ``normalize=True`` and ``reduction="mean"|"none"``, a thin module, and a
registry entry (:func:`get`, :func:`available`). Definitions: ``docs/losses.md``.
"""

import torch
from torch import Tensor, nn

from contrastkit.losses.cacr import cacr
from contrastkit.losses.cwcl import cwcl, cwcl_multimodal
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
from contrastkit.losses.simcse import simcse
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
SimCSE = register("simcse", simcse, "SimCSE")


class _LearnableSigLIP(LossModule):
    """SigLIP's temperature and bias are learnt by default (``learnable=True``): the module
    holds ``log_scale`` (temperature = exp(-log_scale)) and ``bias`` as parameters, initialised
    from ``temperature`` and ``bias`` (paper: 0.1 and -10)."""

    def __init__(self, *, learnable: bool = True, **hyperparameters: object) -> None:
        super().__init__(**hyperparameters)
        self.learnable = learnable
        if learnable:
            temperature = float(self.current_hyperparameters()["temperature"])
            bias = float(self.current_hyperparameters()["bias"])
            self.temperature_module = LearnableTemperature(temperature, max_scale=float("inf"))
            self.bias_parameter = nn.Parameter(torch.tensor(bias))

    def forward(self, z: Tensor, *inputs: Tensor) -> Tensor:
        hyperparameters = self.current_hyperparameters()
        if self.learnable:
            hyperparameters["temperature"] = self.temperature_module()
            hyperparameters["bias"] = self.bias_parameter
        return type(self).fn(z, *inputs, **hyperparameters)


SigLIP = register("siglip", siglip, "SigLIP", base=_LearnableSigLIP)

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
    "SimCSE",
    "SoftContrastive",
    "SoftSupCon",
    "SupCon",
    "Uniformity",
    "alignment",
    "available",
    "avg_infonce",
    "cacr",
    "cwcl",
    "cwcl_multimodal",
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
    "simcse",
    "soft_contrastive",
    "soft_supcon",
    "supcon",
    "uniformity",
]
