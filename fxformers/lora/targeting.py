"""Which parameters an adapter touches, decided on PyTorch module names derived from the conversion tables.

PEFT matches ``target_modules`` and ``modules_to_save`` against PyTorch module names
(``model.layers.0.self_attn.q_proj``). Each architecture's conversion table already maps every Flax parameter path
to its PyTorch key, so the module name of a Dense kernel is its PyTorch key without ``.weight``: one mechanism
serves every architecture, with no per-family LoRA code.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from ..convert import IDENTITY
from .config import CLASSIFIER_MODULE_NAMES, DEFAULT_TARGET_MODULES, LoraConfig


@dataclasses.dataclass(frozen=True)
class Target:
    """A Dense layer an adapter wraps: its Flax scope (``model/layers_0/self_attn/q_proj``), PyTorch module name,
    kernel shape [in, out], and whether PyTorch stores the weight [in, out] already (GPT-2's Conv1D)."""

    scope: str
    module: str
    shape: tuple[int, int]
    fan_in_fan_out: bool


@dataclasses.dataclass(frozen=True)
class Targets:
    layers: tuple[Target, ...]
    saved: tuple[str, ...]  # Flax leaf paths of the modules_to_save (trained in full, saved with the adapter)


def pt_names(model_class: type, config: Any, shapes: dict) -> dict[str, tuple[str, Any]]:
    """{flax leaf path: (PyTorch key, rule)} for every parameter path in ``shapes``."""
    table = model_class.conversion_table(config)
    out = {}
    for path in shapes:
        found = table.pt_key(path)
        if found is not None:
            out[path] = found
    return out


def _matches_target(config_targets: Any, module: str) -> bool:
    """PEFT's ``check_target_module_exists``: a regex is matched against the whole name, a list by suffix."""
    if isinstance(config_targets, str):
        return re.fullmatch(config_targets, module) is not None
    return module in config_targets or any(module.endswith(f".{t}") for t in config_targets)


def output_kernels(model_class: type, model_config: Any, shapes: dict) -> set[str]:
    """Flax kernel paths of the output embedding (a Dense with a vocabulary axis, listed in ``vocab_params``)."""
    vocab = [pattern for pattern, _ in getattr(model_class, "vocab_params", ())]
    return {p for p in shapes if p.endswith("/kernel") and any(re.search(v, p) for v in vocab)}


def resolve(model_class: type, model_config: Any, shapes: dict, config: LoraConfig) -> Targets:
    """The Dense layers ``config.target_modules`` selects and the leaves of ``modules_to_save`` for a model of
    ``model_class`` whose params have ``shapes`` ({flax path: shape}); a ValueError names what could be meant."""
    names = pt_names(model_class, model_config, shapes)
    dense = {path[: -len("/kernel")]: (key[: -len(".weight")], rule) for path, (key, rule) in names.items()
             if path.endswith("/kernel") and key.endswith(".weight") and len(shapes[path]) == 2}
    save_names = config.effective_modules_to_save()

    # modules_to_save: every PyTorch module (any dotted prefix of a key) whose name ends with a listed name
    saved, saved_modules = [], set()
    for path, (key, _) in names.items():
        parts = key.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            module = ".".join(parts[:i])
            if any(module.endswith(n) for n in save_names):
                saved.append(path)
                saved_modules.add(module)
                break
    # (PEFT itself adds "classifier" and "score" for classification tasks, whichever exists)
    requested = [n for n in (config.modules_to_save or []) if n not in CLASSIFIER_MODULE_NAMES
                 and not any(m.endswith(n) for m in saved_modules)]
    if requested:
        raise ValueError(f"modules_to_save names {requested}, which match no module of {model_class.__name__}.")

    targets = config.target_modules
    if targets is None:
        targets = DEFAULT_TARGET_MODULES.get(model_config.model_type)
        if targets is None:
            raise ValueError(f"No default target_modules for model_type {model_config.model_type!r}; set target_modules.")
    if isinstance(targets, str) and targets.lower() == "all-linear":
        # PEFT leaves out the output embedding, else (SEQ_CLS) the score/classifier head
        excluded = {names[p][0][: -len(".weight")] for p in output_kernels(model_class, model_config, shapes) if p in names}
        if not excluded and config.task_type == "SEQ_CLS":
            excluded = {m for m, _ in dense.values() if m in ("score", "classifier")}
        targets = sorted(m for m, _ in dense.values() if m not in excluded)

    in_saved = lambda m: any(re.match(rf"(^|.*\.){re.escape(n)}($|\..*)", m) for n in save_names)
    layers = []
    for scope, (module, rule) in dense.items():
        if _matches_target(targets, module) and not in_saved(module):
            layers.append(Target(scope, module, tuple(shapes[scope + "/kernel"]), rule.transform is IDENTITY))
    if not layers:
        sample = sorted({m.split(".")[-1] for m, _ in dense.values()})
        raise ValueError(
            f"target_modules={config.target_modules!r} matches no Linear layer of {model_class.__name__}; "
            f"its Linear layer names are {sample} (or pass a regex over full names like {next(iter(dense.values()))[0]!r})."
        )
    return Targets(tuple(sorted(layers, key=lambda t: t.scope)), tuple(sorted(saved)))
