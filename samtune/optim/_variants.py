"""SAM-family variants as small specs, registered by name.

A variant is a perturbation *direction* (``none`` for the baseline, ``loss`` for the loss-ascent
direction of SAM, ``obf`` for output-bias forgetting, ``random`` for the control) plus modifiers:
``adaptive`` (ASAM's elementwise scaling T = |w| + eta) and ``gsam`` (GSAM's surrogate-gap term).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from samtune.errors import ConfigError

# Hyperparameters a variant may take: default, accepted range and what it means.
# (low, high, low_inclusive); None bounds are open.
_PARAMS: dict[str, dict[str, Any]] = {
    # ASAM: T = |w| + eta keeps the scale of near-zero weights from vanishing (Kwon et al. 2021).
    "eta": {"default": 0.01, "range": (0.0, 1.0, False), "type": float},
    # GSAM: weight of the ascent along g_perp (Zhuang et al. 2022; 0.005-1 in the literature).
    "alpha": {"default": 0.1, "range": (0.0, 1.0, True), "type": float},
    # OBF: weight of the confident-example term (paper: ~0 for ResNets, 1 for ViTs).
    "gamma": {"default": 1e-12, "range": (0.0, 10.0, True), "type": float},
    # OBF: C sets lambda = 1/C; None means the number of classes (the paper's default).
    "C": {"default": None, "range": (1.0, None, False), "type": float},
    # OBF: how logits become probabilities in the surrogate (paper default: sigmoid).
    "prob": {"default": "sigmoid", "choices": ("sigmoid", "softmax"), "type": str},
}

RHO_RANGE = (0.0, 10.0)


@dataclass(frozen=True)
class VariantSpec:
    """One registered SAM-family variant."""

    name: str
    direction: str  # "none" | "loss" | "obf" | "random"
    adaptive: bool = False  # ASAM scaling of the perturbation
    gsam: bool = False  # GSAM gradient decomposition
    description: str = ""

    @property
    def perturbs(self) -> bool:
        return self.direction != "none"

    @property
    def param_names(self) -> tuple[str, ...]:
        names: list[str] = []
        if self.adaptive:
            names.append("eta")
        if self.gsam:
            names.append("alpha")
        if self.direction == "obf":
            names += ["gamma", "C", "prob"]
        return tuple(names)

    def resolve_kwargs(self, kwargs: dict[str, Any] | None) -> dict[str, Any]:
        """Validate ``kwargs`` for this variant and fill in defaults."""
        kwargs = dict(kwargs or {})
        unknown = set(kwargs) - set(self.param_names)
        if unknown:
            accepted = ", ".join(self.param_names) or "none"
            raise ConfigError(
                f"variant {self.name!r} takes no parameter(s) {sorted(unknown)}; accepted: {accepted}."
            )
        out = {}
        for name in self.param_names:
            out[name] = check_param(name, kwargs.get(name, _PARAMS[name]["default"]))
        return out


def check_param(name: str, value: Any) -> Any:
    """Check one variant hyperparameter against its accepted range."""
    rule = _PARAMS[name]
    if "choices" in rule:
        if value not in rule["choices"]:
            raise ConfigError(
                f"{name} must be one of {', '.join(rule['choices'])}, but got {name}={value!r}."
            )
        return value
    if value is None and rule["default"] is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, but got {name}={value!r}.")
    low, high, low_inclusive = rule["range"]
    ok = (value >= low if low_inclusive else value > low) and (high is None or value <= high)
    if not ok or value != value:
        bracket = "[" if low_inclusive else "("
        upper = f"{high}]" if high is not None else "inf)"
        raise ConfigError(f"{name} must be in {bracket}{low}, {upper}, but got {name}={value!r}.")
    return float(value)


def check_rho(rho: Any) -> float:
    low, high = RHO_RANGE
    if isinstance(rho, bool) or not isinstance(rho, int | float) or not (low <= rho <= high):
        raise ConfigError(
            f"rho must be a number in [{low}, {high}], but got rho={rho!r}; typical values: "
            "sam 0.01-0.5, asam 0.5-5."
        )
    return float(rho)


_REGISTRY: dict[str, VariantSpec] = {}


def register_variant(spec: VariantSpec) -> VariantSpec:
    """Add a variant to the registry (its name must be new)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"variant {spec.name!r} is already registered.")
    if spec.direction not in ("none", "loss", "obf", "random"):
        raise ValueError(f"unknown direction {spec.direction!r} for variant {spec.name!r}.")
    _REGISTRY[spec.name] = spec
    return spec


def get_variant(name: str) -> VariantSpec:
    """The registered variant called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown variant {name!r}; choose one of {', '.join(list_variants())}."
        ) from None


def list_variants() -> list[str]:
    """Names of the registered variants, the ``sgd`` baseline first.

    >>> list_variants()[:3]
    ['sgd', 'sam', 'asam']
    """
    return list(_REGISTRY)


for _spec in (
    VariantSpec("sgd", "none", description="the base optimizer alone: the baseline"),
    VariantSpec("sam", "loss", description="SAM (Foret et al. 2021)"),
    VariantSpec("asam", "loss", adaptive=True, description="adaptive SAM (Kwon et al. 2021)"),
    VariantSpec("gsam", "loss", gsam=True, description="surrogate-gap SAM (Zhuang et al. 2022)"),
    VariantSpec("obf", "obf", description="output-bias forgetting (Vani et al. 2024)"),
    VariantSpec("randsam", "random", description="random-direction control"),
    VariantSpec("gsam-obf", "obf", gsam=True, description="GSAM with the OBF perturbation"),
    VariantSpec("asam-obf", "obf", adaptive=True, description="ASAM with the OBF perturbation"),
):
    register_variant(_spec)
