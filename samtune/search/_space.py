"""The search space as data: YAML presets in ``studies/`` or the user's own file.

Optuna parameter names are ``SAMConfig`` field names (``variant``, ``rho``, ``schedule``, ``m``,
``lr``, and the variant's own ``eta``, ``alpha``, ``gamma``), so a trial reads the same in the
dashboard, in the recommendation and in the user's code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml

from samtune.errors import ConfigError
from samtune.optim import SAMConfig, get_variant, list_variants
from samtune.optim._micro import effective_m
from samtune.optim._variants import RHO_RANGE, check_param
from samtune.schedules import list_schedules
from samtune.schedules._perturb import PerturbSchedule
from samtune.search._options import PRESETS_DIR, list_presets

_KEYS = {"name", "base", "base_kwargs", "lr", "variants", "rho", "schedule", "m",
         "variant_kwargs", "warm_start", "perturb"}
ALWAYS = "always"
_KWARG_NAMES = {n for v in list_variants() for n in get_variant(v).param_names}  # eta, alpha, ...


def parse_perturb(label: str, where: str = "perturb") -> tuple[str, dict[str, Any]]:
    """``"stochastic:p=0.5"`` -> ``("stochastic", {"p": 0.5})``; ``"always"`` -> ``("always", {})``.

    >>> parse_perturb("late:start=0.5"), parse_perturb("periodic:every=2")
    (('late', {'start': 0.5}), ('periodic', {'every': 2}))
    """
    if not isinstance(label, str) or not label.strip():
        raise ConfigError(f"{where}: each choice must be a string such as 'always' or "
                          f"'stochastic:p=0.5', but got {label!r}.")
    kind, _, rest = label.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, eq, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not eq or number is None:
            raise ConfigError(f"{where}: {label!r}: write key=number pairs after the colon, "
                              f"e.g. 'stochastic:p=0.5'.")
        kwargs[key.strip()] = int(number) if number.is_integer() and "." not in value else number
    try:
        PerturbSchedule(kind.strip(), kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {label!r}: {exc}") from None
    return kind.strip(), kwargs


def _range(where: str, spec: Any, low_bound: float | None = None,
           high_bound: float | None = None) -> dict[str, Any]:
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec):
        raise ConfigError(f"{where} must be a mapping with low and high (and optional log), but got {spec!r}.")
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"{where}.{name} must be a number, but got {v!r}.")
    if low_bound is not None and low < low_bound:
        raise ConfigError(f"{where}.low must be >= {low_bound}, but got {low!r}.")
    if high_bound is not None and high > high_bound:
        raise ConfigError(f"{where}.high must be <= {high_bound}, but got {high!r}.")
    if low > high:
        raise ConfigError(f"{where}: low ({low}) must not exceed high ({high}).")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, but got low={low!r}.")
    return {"low": float(low), "high": float(high), "log": log}


@dataclass
class SearchSpace:
    """A validated search space; ``sample(trial)`` turns an Optuna trial into a ``SAMConfig``."""

    name: str
    base: str = "sgd"
    base_kwargs: dict[str, Any] = field(default_factory=dict)
    lr: dict[str, Any] | float = 0.05
    variants: list[str] = field(default_factory=list_variants)
    rho: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedule: list[str] = field(default_factory=lambda: ["constant"])
    m: list[int | None] = field(default_factory=lambda: [None])
    variant_kwargs: dict[str, Any] = field(default_factory=dict)
    warm_start: list[dict[str, Any]] = field(default_factory=list)
    #: which steps perturb, searched for SAM-family trials when there are several choices
    #: (``parse_perturb`` labels: "always", "late:start=0.5", "stochastic:p=0.5", ...)
    perturb: list[str] = field(default_factory=lambda: [ALWAYS])

    @classmethod
    def from_dict(cls, data: Any, where: str = "space") -> SearchSpace:
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a YAML mapping, but got {type(data).__name__}.")
        unknown = set(data) - _KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; accepted: {', '.join(sorted(_KEYS))}.")
        variants = data.get("variants", list_variants())
        if not isinstance(variants, list) or not variants:
            raise ConfigError(f"{where}: variants must be a non-empty list of {', '.join(list_variants())}.")
        for v in variants:
            try:
                get_variant(v)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        lr = data.get("lr", 0.05)
        if isinstance(lr, dict):
            lr = _range(f"{where}: lr", lr, 0.0, 10.0)
        elif isinstance(lr, bool) or not isinstance(lr, int | float) or not 0.0 < lr <= 10.0:
            raise ConfigError(f"{where}: lr must be a number in (0, 10] or a range "
                              f"{{low, high, log}}, but got lr={lr!r}.")
        else:
            lr = float(lr)
        rho_spec = data.get("rho", {"default": {"low": 0.01, "high": 0.5, "log": True}})
        if not isinstance(rho_spec, dict) or "default" not in rho_spec:
            raise ConfigError(f"{where}: rho needs a 'default' range (and optional per-variant ranges).")
        rho = {}
        for key, spec in rho_spec.items():
            if key != "default" and key not in variants:
                raise ConfigError(f"{where}: rho range for {key!r}, which is not among the variants {variants}.")
            rho[key] = _range(f"{where}: rho.{key}", spec, *RHO_RANGE)
        schedules = data.get("schedule", ["constant"])
        schedules = schedules if isinstance(schedules, list) else [schedules]
        for s in schedules:
            if s not in list_schedules():
                raise ConfigError(f"{where}: unknown schedule {s!r}; choose among {', '.join(list_schedules())}.")
        ms = data.get("m", [None])
        ms = ms if isinstance(ms, list) else [ms]
        for m in ms:
            if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
                raise ConfigError(f"{where}: m values must be null or whole numbers >= 1, but got m={m!r}.")
        vk = {}
        for key, spec in (data.get("variant_kwargs") or {}).items():
            if key not in ("eta", "alpha", "gamma"):
                raise ConfigError(f"{where}: variant_kwargs.{key} is not searchable; use eta, alpha or gamma.")
            if isinstance(spec, dict):
                vk[key] = _range(f"{where}: variant_kwargs.{key}", spec)
                check_param(key, vk[key]["low"])
                check_param(key, vk[key]["high"])
            else:
                try:
                    vk[key] = check_param(key, spec)
                except ConfigError as exc:
                    raise ConfigError(f"{where}: variant_kwargs: {exc}") from None
        perturb = data.get("perturb", [ALWAYS])
        perturb = perturb if isinstance(perturb, list) else [perturb]
        if not perturb:
            raise ConfigError(f"{where}: perturb must list at least one choice (e.g. [always]).")
        for label in perturb:
            parse_perturb(label, f"{where}: perturb")
        space = cls(
            name=str(data.get("name", where)), base=data.get("base", "sgd"),
            base_kwargs=dict(data.get("base_kwargs") or {}), lr=lr, variants=list(variants),
            rho=rho, schedule=schedules, m=ms, variant_kwargs=vk,
            warm_start=list(data.get("warm_start") or []), perturb=list(perturb),
        )
        try:  # the fixed parts must make a valid SAMConfig
            SAMConfig(variant="sgd", base=space.base, base_kwargs={**space.base_kwargs, "lr": 0.05})
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for i, ws in enumerate(space.warm_start):
            if not isinstance(ws, dict) or ws.get("variant") not in variants:
                raise ConfigError(f"{where}: warm_start[{i}] must name one of the variants {variants}.")
            spec = get_variant(ws["variant"])
            try:  # the variant's own hyperparameters, where the entry gives them
                spec.resolve_kwargs({k: v for k, v in ws.items() if k in _KWARG_NAMES})
            except ConfigError as exc:
                raise ConfigError(f"{where}: warm_start[{i}]: {exc}") from None
        return space

    @classmethod
    def load(cls, name_or_path: str | Path) -> SearchSpace:
        """A preset name (``default``, ``quick``, ``paper``) or a YAML file."""
        path = Path(name_or_path)
        if not path.exists():
            preset = PRESETS_DIR / f"{name_or_path}.yaml"
            if not preset.exists():
                raise ConfigError(
                    f"search space {str(name_or_path)!r} is neither a file nor a preset; "
                    f"presets: {', '.join(list_presets())}."
                )
            path = preset
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read search space {str(path)!r}: {str(exc).splitlines()[0]}.") from None
        return cls.from_dict(data, where=str(path))

    # -- use -------------------------------------------------------------------------------

    def with_batch_size(self, batch_size: int) -> SearchSpace:
        """Fit m to the batch: m >= the batch means the whole batch (None); others must divide it."""
        bad = [m for m in self.m if m is not None and m < batch_size and batch_size % m]
        if bad:
            raise ConfigError(
                f"m={bad[0]} does not divide the batch size {batch_size}; choose m among the "
                f"divisors of the batch size or change --batch-size."
            )
        ms: list[int | None] = []
        for m in self.m:
            m = effective_m(m, batch_size)
            if m not in ms:
                ms.append(m)
        return SearchSpace(**{**self.__dict__, "m": ms})

    def fix_lr(self, lr: float) -> SearchSpace:
        return SearchSpace(**{**self.__dict__, "lr": float(lr)})

    def to_dict(self) -> dict[str, Any]:
        d = json.loads(json.dumps(self.__dict__))
        if d["perturb"] == [ALWAYS]:
            del d["perturb"]  # the default: digests of spaces made before it stay the same
        return d

    def digest(self) -> str:
        """Hash of everything that shapes the trials (the mismatch check on resume)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def rho_range(self, variant: str) -> dict[str, Any]:
        return self.rho.get(variant, self.rho["default"])

    def sample(self, trial: optuna.Trial, fixed: dict[str, Any] | None = None) -> SAMConfig:
        """Suggest one configuration; conditional parameters exist only where they apply.

        ``fixed``: the trial's enqueued params. Where the space does not search ``perturb``
        (one choice), an enqueued ``perturb`` label (the search's cheaper schedules) is applied
        as given: it is the trial's configuration, not a parameter TPE models."""
        variant = trial.suggest_categorical("variant", self.variants)
        lr = self.lr if not isinstance(self.lr, dict) else trial.suggest_float(
            "lr", self.lr["low"], self.lr["high"], log=self.lr["log"])
        spec = get_variant(variant)
        kwargs: dict[str, Any] = {"variant": variant, "base": self.base,
                                  "base_kwargs": {**self.base_kwargs, "lr": lr}}
        if spec.perturbs:
            r = self.rho_range(variant)
            kwargs["rho"] = trial.suggest_float("rho", r["low"], r["high"], log=r["log"])
            kwargs["schedule"] = trial.suggest_categorical("schedule", self.schedule)
            kwargs["m"] = trial.suggest_categorical("m", self.m)
            vk = {}
            for name in spec.param_names:
                value = self.variant_kwargs.get(name)
                if isinstance(value, dict):
                    vk[name] = trial.suggest_float(name, value["low"], value["high"], log=value["log"])
                elif value is not None:
                    vk[name] = value
            kwargs["variant_kwargs"] = vk
            if len(self.perturb) > 1:
                label = trial.suggest_categorical("perturb", self.perturb)
            else:
                label = (fixed or {}).get("perturb", self.perturb[0])
            kwargs["perturb"], kwargs["perturb_kwargs"] = parse_perturb(label)
        else:
            kwargs["rho"] = 0.0
        return SAMConfig(**kwargs)

    def warm_start_params(self) -> list[dict[str, Any]]:
        """The warm-start entries as trial params, restricted to what this space searches.

        A variant hyperparameter the space searches (eta, alpha, gamma) takes the entry's value,
        else the variant's default, moved into the searched range (OBF's gamma of 1e-12 becomes
        the range's floor): a warm start is the literature's configuration, not a random draw."""
        out = []
        for ws in self.warm_start:
            params = {"variant": ws["variant"]}
            if isinstance(self.lr, dict) and "lr" in ws and self.lr["low"] <= ws["lr"] <= self.lr["high"]:
                params["lr"] = ws["lr"]
            if get_variant(ws["variant"]).perturbs:
                r = self.rho_range(ws["variant"])
                if "rho" in ws and r["low"] <= ws["rho"] <= r["high"]:
                    params["rho"] = ws["rho"]
                if ws.get("schedule", self.schedule[0]) in self.schedule:
                    params["schedule"] = ws.get("schedule", self.schedule[0])
                if ws.get("m") in self.m:
                    params["m"] = ws.get("m")
                defaults = get_variant(ws["variant"]).resolve_kwargs({})
                for name in get_variant(ws["variant"]).param_names:  # searched: as written, else
                    rng = self.variant_kwargs.get(name)                # the variant's default
                    if isinstance(rng, dict):
                        params[name] = min(rng["high"], max(rng["low"], ws.get(name, defaults[name])))
                if len(self.perturb) > 1:  # a warm start perturbs as written, every step by default
                    label = ws.get("perturb", ALWAYS)
                    if label in self.perturb:
                        params["perturb"] = label
            out.append(params)
        return out
