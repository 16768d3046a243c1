"""The SAM-family optimizer engine.

>>> import torch
>>> from samtune.optim import SAMConfig, build_optimizer, list_variants
>>> "obf" in list_variants()
True
>>> model = torch.nn.Linear(3, 2)
>>> opt = build_optimizer(model, SAMConfig(variant="sam", rho=0.05))
>>> out = opt.train_step(model, torch.randn(8, 3), torch.randint(0, 2, (8,)))
>>> out.perturbed_loss is not None
True
"""

from __future__ import annotations

from samtune.optim._build import build_optimizer
from samtune.optim._config import BASE_OPTIMIZERS, SAMConfig
from samtune.optim._perturb import obf_logit_grad
from samtune.optim._sam import SAMOptimizer, StepOutput
from samtune.optim._variants import VariantSpec, get_variant, list_variants, register_variant

__all__ = [
    "BASE_OPTIMIZERS",
    "SAMConfig",
    "SAMOptimizer",
    "StepOutput",
    "VariantSpec",
    "build_optimizer",
    "get_variant",
    "list_variants",
    "obf_logit_grad",
    "register_variant",
]
