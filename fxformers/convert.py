"""The converter engine: rule tables mapping PyTorch state-dict keys to Flax parameter paths, in both directions.

A rule pairs a PyTorch key template with a Flax path template and an invertible transform::

    Rule("encoder.layer.{i}.attention.self.query.weight", "encoder/layer_{i}/attention/self/query/kernel", TRANSPOSE)

``{name}`` placeholders match digits and carry over between the two sides, so one rule serves every layer and both
directions. The engine fills a target tree built with ``jax.eval_shape`` and reports *every* missing, unexpected
and mis-shaped weight at once, by name.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from .checkpoints.lazy import LazyTensor, materialize

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Transform:
    """An invertible array transform: ``to_flax`` on load, ``to_pt`` on save.

    ``pt_shape`` maps a flax shape to the saved PyTorch shape without touching data, so a save can write its
    header before gathering any tensor; a transform without it has its tensors gathered early instead.
    """

    name: str
    to_flax: Callable[[np.ndarray], np.ndarray]
    to_pt: Callable[[np.ndarray], np.ndarray]
    pt_shape: Optional[Callable[[tuple], tuple]] = None


IDENTITY = Transform("identity", lambda a: a, lambda a: a, lambda shape: tuple(shape))
TRANSPOSE = Transform(
    "transpose", lambda a: np.ascontiguousarray(a.T), lambda a: np.ascontiguousarray(a.T), lambda shape: tuple(shape)[::-1]
)


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _template_regex(template: str, sep: str) -> re.Pattern:
    parts, last = [], 0
    for m in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[last : m.start()]))
        parts.append(f"(?P<{m.group(1)}>\\d+)")
        last = m.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts))


@dataclasses.dataclass(frozen=True)
class Rule:
    pt: str
    flax: str
    transform: Transform = IDENTITY

    def __post_init__(self):
        object.__setattr__(self, "_pt_re", _template_regex(self.pt, "."))
        object.__setattr__(self, "_flax_re", _template_regex(self.flax, "/"))

    def match_pt(self, key: str) -> Optional[str]:
        m = self._pt_re.fullmatch(key)
        return self.flax.format(**m.groupdict()) if m else None

    def match_flax(self, path: str) -> Optional[str]:
        m = self._flax_re.fullmatch(path)
        return self.pt.format(**m.groupdict()) if m else None

    def prefixed(self, pt_prefix: str, flax_prefix: str) -> "Rule":
        return Rule(pt_prefix + self.pt, flax_prefix + self.flax, self.transform)


@dataclasses.dataclass(frozen=True)
class GroupRule:
    """Several PyTorch keys <-> several Flax paths through one invertible transform over the whole group.

    For layouts that differ in how weights are grouped: Phi-3's fused ``qkv_proj`` (one key) against separate
    q/k/v kernels, or Mixtral's per-expert ``experts.{e}.w1`` keys against one stacked ``[E, in, out]`` kernel.
    Templates share placeholders (``{i}``); a group converts once every member of one binding is present.
    ``to_flax`` maps the list of PyTorch arrays (in ``pt`` order) to the list of Flax arrays (in ``flax`` order),
    ``to_pt`` the other way.
    """

    pt: tuple[str, ...]
    flax: tuple[str, ...]
    to_flax: Callable[[list[np.ndarray]], list[np.ndarray]]
    to_pt: Callable[[list[np.ndarray]], list[np.ndarray]]
    name: str = "group"

    def __post_init__(self):
        object.__setattr__(self, "_pt_re", [_template_regex(t, ".") for t in self.pt])
        object.__setattr__(self, "_flax_re", [_template_regex(t, "/") for t in self.flax])
        # one alternation over every member, without named groups: a single test rejects the keys of other rules
        any_of = lambda templates: re.compile("|".join(  # noqa: E731
            "(?:" + re.sub(r"\(\?P<\w+>", "(", _template_regex(t, ".").pattern) + ")" for t in templates))
        object.__setattr__(self, "_pt_any", any_of(self.pt))
        object.__setattr__(self, "_flax_any", any_of(self.flax))

    @staticmethod
    def _match(regexes, key: str, any_member: re.Pattern) -> Optional[tuple[tuple, int]]:
        if not any_member.fullmatch(key):
            return None
        for member, regex in enumerate(regexes):
            m = regex.fullmatch(key)
            if m:
                return tuple(sorted(m.groupdict().items())), member
        return None

    def match_pt(self, key: str) -> Optional[tuple[tuple, int]]:
        """(placeholder binding, member index) of a PyTorch key, or None."""
        return self._match(self._pt_re, key, self._pt_any)

    def match_flax(self, path: str) -> Optional[tuple[tuple, int]]:
        return self._match(self._flax_re, path, self._flax_any)

    def pt_keys(self, binding: tuple) -> list[str]:
        return [t.format(**dict(binding)) for t in self.pt]

    def flax_paths(self, binding: tuple) -> list[str]:
        return [t.format(**dict(binding)) for t in self.flax]

    def prefixed(self, pt_prefix: str, flax_prefix: str) -> "GroupRule":
        return dataclasses.replace(
            self, pt=tuple(pt_prefix + t for t in self.pt), flax=tuple(flax_prefix + t for t in self.flax)
        )


# -- rule builders for the common layer kinds --------------------------------------------------------------------
def linear(pt: str, flax: str, bias: bool = True) -> list[Rule]:
    """torch.nn.Linear (weight [out, in]) <-> flax Dense (kernel [in, out])."""
    rules = [Rule(f"{pt}.weight", f"{flax}/kernel", TRANSPOSE)]
    return rules + [Rule(f"{pt}.bias", f"{flax}/bias")] if bias else rules


def conv1d(pt: str, flax: str) -> list[Rule]:
    """GPT-2's Conv1D stores weight as [in, out] already: identity onto a Dense kernel."""
    return [Rule(f"{pt}.weight", f"{flax}/kernel"), Rule(f"{pt}.bias", f"{flax}/bias")]


def layer_norm(pt: str, flax: str, bias: bool = True) -> list[Rule]:
    rules = [Rule(f"{pt}.weight", f"{flax}/scale")]
    return rules + [Rule(f"{pt}.bias", f"{flax}/bias")] if bias else rules


def embedding(pt: str, flax: str) -> list[Rule]:
    return [Rule(f"{pt}.weight", f"{flax}/embedding")]


def fused_linear(pt: str, flax: Sequence[str], sizes: Sequence[int], bias: bool = False) -> list[GroupRule]:
    """One torch.nn.Linear whose output concatenates several projections (Phi-3's ``qkv_proj``, ``gate_up_proj``)
    <-> one flax Dense per part: weight [sum(sizes), in] <-> kernels [in, sizes[j]]."""
    cuts = list(np.cumsum(sizes)[:-1])

    def split(arrays, transpose):
        parts = np.split(arrays[0], cuts, axis=0)
        return [np.ascontiguousarray(p.T) if transpose else p for p in parts]

    def fuse(arrays, transpose):
        return [np.concatenate([a.T if transpose else a for a in arrays], axis=0)]

    rules = [GroupRule((f"{pt}.weight",), tuple(f"{f}/kernel" for f in flax),
                       lambda a: split(a, True), lambda a: fuse(a, True), "split-linear")]
    if bias:
        rules.append(GroupRule((f"{pt}.bias",), tuple(f"{f}/bias" for f in flax),
                               lambda a: split(a, False), lambda a: fuse(a, False), "split-bias"))
    return rules


def stacked_linears(pt_template: str, num: int, flax: str) -> list[GroupRule]:
    """``num`` torch Linears named by ``pt_template.format(e=...)`` (weight [out, in] each) <-> one stacked
    kernel [num, in, out] (MoE experts)."""
    keys = tuple(pt_template.replace("{e}", str(e)) + ".weight" for e in range(num))
    return [GroupRule(
        keys, (flax,),
        lambda arrays: [np.ascontiguousarray(np.stack([a.T for a in arrays]))],  # [E, in, out]
        lambda arrays: [np.ascontiguousarray(w.T) for w in arrays[0]],
        "stack-linears",
    )]


@dataclasses.dataclass
class ConversionTable:
    """Rules plus the PyTorch keys that are legitimately absent (tied copies) or ignorable (buffers)."""

    rules: list  # Rule (one key <-> one path) and GroupRule (several <-> several)
    ignore_pt: Sequence[str] = ()  # regexes of checkpoint keys to skip on load (buffers, tied duplicates)

    def __post_init__(self):
        self._ignore = [re.compile(p) for p in self.ignore_pt]

    def prefixed(self, pt_prefix: str, flax_prefix: str) -> "ConversionTable":
        return ConversionTable([r.prefixed(pt_prefix, flax_prefix) for r in self.rules], self.ignore_pt)

    def __add__(self, other: "ConversionTable") -> "ConversionTable":
        return ConversionTable(self.rules + other.rules, tuple(self.ignore_pt) + tuple(other.ignore_pt))

    def is_ignored(self, key: str) -> bool:
        return any(p.search(key) for p in self._ignore)

    def flax_path(self, pt_key: str) -> Optional[tuple[str, Rule]]:
        for rule in self.rules:
            if isinstance(rule, GroupRule):
                continue
            path = rule.match_pt(pt_key)
            if path is not None:
                return path, rule
        return None

    def pt_key(self, flax_path: str) -> Optional[tuple[str, Rule]]:
        for rule in self.rules:
            if isinstance(rule, GroupRule):
                continue
            key = rule.match_flax(flax_path)
            if key is not None:
                return key, rule
        return None

    def group_of_pt(self, pt_key: str) -> Optional[tuple[int, tuple, int]]:
        """(index of the GroupRule, placeholder binding, member index) for a key a group rule covers, else None."""
        for index, rule in enumerate(self.rules):
            if isinstance(rule, GroupRule):
                found = rule.match_pt(pt_key)
                if found is not None:
                    return (index, *found)
        return None

    def group_of_flax(self, flax_path: str) -> Optional[tuple[int, tuple, int]]:
        for index, rule in enumerate(self.rules):
            if isinstance(rule, GroupRule):
                found = rule.match_flax(flax_path)
                if found is not None:
                    return (index, *found)
        return None


@dataclasses.dataclass
class ConversionReport:
    missing: list[str] = dataclasses.field(default_factory=list)  # flax paths no checkpoint key filled
    unexpected: list[str] = dataclasses.field(default_factory=list)  # checkpoint keys nothing used
    mismatched: list[tuple[str, tuple, tuple]] = dataclasses.field(default_factory=list)  # (pt key, checkpoint, model)

    def describe(self, source: str) -> str:
        lines = []
        if self.missing:
            lines.append(f"missing from {source} ({len(self.missing)}): {', '.join(self.missing)}")
        if self.mismatched:
            shown = ", ".join(f"{k} (checkpoint {c}, model {m})" for k, c, m in self.mismatched)
            lines.append(f"shape mismatch ({len(self.mismatched)}): {shown}")
        if self.unexpected:
            lines.append(f"unused weights in {source} ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        return "\n".join(lines)


def flatten(tree: dict, sep: str = "/") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            for sub, leaf in flatten(value, sep).items():
                out[f"{key}{sep}{sub}"] = leaf
        else:
            out[key] = value
    return out


def unflatten(flat: dict, sep: str = "/") -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(sep)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def align_prefix(keys: Iterable[str], prefix: str, model_has_prefix: bool) -> Callable[[str], str]:
    """How to rename checkpoint keys so a base-model checkpoint loads into a head model and vice versa.

    Transformers saves ``BertModel`` without the ``bert.`` prefix and heads with it; either loads into either.
    """
    if not prefix:
        return lambda k: k
    dotted = prefix + "."
    has_prefix = any(k.startswith(dotted) for k in keys)
    if model_has_prefix and not has_prefix:
        return lambda k: dotted + k
    if not model_has_prefix and has_prefix:
        return lambda k: k[len(dotted) :] if k.startswith(dotted) else k
    return lambda k: k


def pytorch_to_flax(
    table: ConversionTable,
    state_dict: Mapping,
    target: dict,
    rename: Callable[[str], str] = lambda k: k,
    place: Callable[[str, np.ndarray], Any] = lambda path, value: value,
) -> tuple[dict, ConversionReport]:
    """Fill the flat ``target`` ({flax path: ShapeDtypeStruct}) from ``state_dict`` ({pt key: array or LazyTensor}).

    Tensors are taken one at a time: each is read, transformed, cast to the target dtype and handed to
    ``place(path, value)`` (e.g. ``jax.device_put`` onto its sharding) before the next is read.
    Returns the flat dict of the placed values of the paths that were filled, and the report.
    """
    filled, report, mismatched_paths = {}, ConversionReport(), set()
    groups: dict = {}  # (rule index, binding) -> {member: (raw key, array)}
    for raw_key, array in state_dict.items():
        key = rename(raw_key)
        found = table.flax_path(key)
        if found is None:
            grouped = table.group_of_pt(key)
            if grouped is not None:
                index, binding, member = grouped
                groups.setdefault((index, binding), {})[member] = (raw_key, array)
                continue
        if found is None or found[0] not in target:
            if not table.is_ignored(key):
                report.unexpected.append(raw_key)
            continue
        path, rule = found
        want = target[path]
        # cast while reading (elementwise, so it commutes with the transform): a narrowing load never holds a
        # wide copy of the tensor
        value = rule.transform.to_flax(materialize(array, want.dtype))
        if tuple(value.shape) != tuple(want.shape):
            report.mismatched.append((raw_key, tuple(value.shape), tuple(want.shape)))
            mismatched_paths.add(path)
            continue
        filled[path] = place(path, value)
        del value
    for (index, binding), members in groups.items():  # several checkpoint keys <-> several params
        rule = table.rules[index]
        paths = rule.flax_paths(binding)
        raw_keys = [members[m][0] for m in sorted(members)]
        if len(members) < len(rule.pt) or any(p not in target for p in paths):
            # an incomplete group leaves its flax paths missing; keys for parameters this model lacks are unused
            if any(p not in target for p in paths):
                report.unexpected.extend(k for k in raw_keys if not table.is_ignored(rename(k)))
            continue
        dtype = target[paths[0]].dtype
        values = rule.to_flax([materialize(members[m][1], dtype) for m in range(len(rule.pt))])
        for path, value in zip(paths, values):
            want = target[path]
            if tuple(value.shape) != tuple(want.shape):
                report.mismatched.append((" + ".join(raw_keys) + f" -> {path}", tuple(value.shape), tuple(want.shape)))
                mismatched_paths.add(path)
                continue
            filled[path] = place(path, value.astype(want.dtype) if value.dtype != want.dtype else value)
        del values
    report.missing = [p for p in target if p not in filled and p not in mismatched_paths]
    return filled, report


def flax_to_pytorch(table: ConversionTable, flat_params: dict, to_host: Optional[Callable[[Any], np.ndarray]] = None) -> dict:
    """{flax path: array} -> {pt key: array}; a path no rule covers is an error naming it.

    Without ``to_host`` the values are converted now (numpy). With it, each value is a ``LazyTensor`` that calls
    ``to_host(param)`` (e.g. gathers a sharded array) and converts only when written, so a save holds one tensor
    at a time.
    """
    out, uncovered, groups = {}, [], {}
    for path, value in flat_params.items():
        found = table.pt_key(path)
        if found is None:
            grouped = table.group_of_flax(path)
            if grouped is None:
                uncovered.append(path)
            else:
                index, binding, member = grouped
                groups.setdefault((index, binding), {})[member] = value
            continue
        key, rule = found
        if to_host is None:
            out[key] = rule.transform.to_pt(np.asarray(value))
        elif rule.transform.pt_shape is None:  # shape unknown without the data: convert this one now
            out[key] = rule.transform.to_pt(to_host(value))
        else:
            load = lambda value=value, rule=rule: rule.transform.to_pt(to_host(value))
            out[key] = LazyTensor(rule.transform.pt_shape(value.shape), np.dtype(value.dtype), load)
    for (index, binding), members in groups.items():  # converted together (no lazy shape for a group)
        rule = table.rules[index]
        if len(members) < len(rule.flax):
            uncovered.extend(p for m, p in enumerate(rule.flax_paths(binding)) if m in members)
            continue
        host = (lambda a: np.asarray(a)) if to_host is None else to_host
        values = rule.to_pt([host(members[m]) for m in range(len(rule.flax))])
        out.update(zip(rule.pt_keys(binding), values))
    if uncovered:
        raise ValueError(f"No conversion rule covers these parameters: {', '.join(uncovered)}")
    return out
