"""Special tokens of a tokenizer: the named ones (``bos_token`` ... ``mask_token`` and model-specific ``*_token``),
their ``*_id`` twins (readable and settable), ``extra_special_tokens``, and adding tokens to the vocabulary."""

from __future__ import annotations

from typing import Any, Sequence, Union

from tokenizers import AddedToken, processors


class SpecialTokensMixin:
    """Mixed into PreTrainedTokenizer, which sets ``_special_tokens_map``, ``_extra_special_tokens``,
    ``_tokenizer``, ``_add_bos_token`` and ``_add_eos_token`` in its ``__init__``."""

    SPECIAL_TOKENS_ATTRIBUTES = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]

    def __getattr__(self, key: str):
        if key.startswith("__") or key in ("_special_tokens_map", "_extra_special_tokens"):
            raise AttributeError(key)
        base = key[:-4] if key.endswith("_ids") else key[:-3] if key.endswith("_id") else key
        stm = self.__dict__.get("_special_tokens_map", {})
        if base in stm or base in self.SPECIAL_TOKENS_ATTRIBUTES:
            value = stm.get(base)
            if value is None:
                return None
            return self.convert_tokens_to_ids(str(value)) if key != base else str(value)
        if base == "extra_special_tokens" or base == "additional_special_tokens":
            tokens = [str(t) for t in self.__dict__.get("_extra_special_tokens", [])]
            return self.convert_tokens_to_ids(tokens) if key != base else tokens
        raise AttributeError(f"{type(self).__name__} has no attribute {key!r}")

    def __setattr__(self, key: str, value: Any):
        base = key[:-4] if key.endswith("_ids") else key[:-3] if key.endswith("_id") else key
        stm = self.__dict__.get("_special_tokens_map")
        if stm is not None and (base in stm or base in self.SPECIAL_TOKENS_ATTRIBUTES):
            if key != base and value is not None:
                value = self.convert_ids_to_tokens(int(value))
                if value is None:
                    raise ValueError(f"Cannot set {key}: id {value} is not in the vocabulary.")
            if value is not None and not isinstance(value, (str, AddedToken)):
                raise TypeError(f"{base} must be a str or a tokenizers.AddedToken, got {type(value).__name__}.")
            stm[base] = value
            return
        if base in ("extra_special_tokens", "additional_special_tokens") and stm is not None:
            if key != base and value is not None:
                value = [self.convert_ids_to_tokens(int(v)) for v in value]
            if value is not None and not isinstance(value, (list, tuple)):
                raise TypeError(f"{base} must be a list of tokens, got {type(value).__name__}.")
            self.__dict__["_extra_special_tokens"] = list(value or [])
            return
        object.__setattr__(self, key, value)

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set, as strings: {'cls_token': '[CLS]', ...}."""
        return {k: str(v) for k, v in self._special_tokens_map.items() if v is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        """Every special token string (named ones, then extra ones), without duplicates."""
        seen: dict[str, None] = {}
        for value in list(self._special_tokens_map.values()) + list(self._extra_special_tokens):
            if value is not None:
                seen.setdefault(str(value), None)
        return list(seen)

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def pad_token_type_id(self) -> int:
        return self._pad_token_type_id

    @property
    def add_bos_token(self) -> bool:
        return self._add_bos_token

    @add_bos_token.setter
    def add_bos_token(self, value: bool):
        object.__setattr__(self, "_add_bos_token", bool(value))
        self.update_post_processor()

    @property
    def add_eos_token(self) -> bool:
        return self._add_eos_token

    @add_eos_token.setter
    def add_eos_token(self, value: bool):
        object.__setattr__(self, "_add_eos_token", bool(value))
        self.update_post_processor()

    def update_post_processor(self) -> None:
        """Rebuild the backend's post-processor from ``add_bos_token`` / ``add_eos_token`` (as Transformers does)."""
        bos, eos = self.bos_token, self.eos_token
        add_bos = self._add_bos_token and bos is not None
        add_eos = self._add_eos_token and eos is not None
        single = f"{(bos + ':0 ') if add_bos else ''}$A:0{(' ' + eos + ':0') if add_eos else ''}"
        pair = f"{single}{(' ' + bos + ':1') if add_bos else ''} $B:1{(' ' + eos + ':1') if add_eos else ''}"
        special = []
        if add_bos:
            special.append((bos, self.bos_token_id))
        if add_eos:
            special.append((eos, self.eos_token_id))
        self._tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)

    def add_special_tokens(self, special_tokens_dict: dict, replace_extra_special_tokens: bool = True) -> int:
        """Set named special tokens (``{'pad_token': '[PAD]'}``) and/or ``extra_special_tokens``; tokens not yet in
        the vocabulary are appended. Returns how many tokens were added to the vocabulary."""
        if not special_tokens_dict:
            return 0
        special_tokens_dict = dict(special_tokens_dict)
        if "additional_special_tokens" in special_tokens_dict and not special_tokens_dict.get("extra_special_tokens"):
            special_tokens_dict["extra_special_tokens"] = special_tokens_dict.pop("additional_special_tokens")
        allowed = set(self.SPECIAL_TOKENS_ATTRIBUTES) | {"extra_special_tokens"}
        to_add = []
        for key, value in special_tokens_dict.items():
            if key not in allowed:
                raise ValueError(f"{key!r} is not a special-token name; use one of {sorted(allowed)}.")
            if key == "extra_special_tokens":
                if not isinstance(value, (list, tuple)) or not all(isinstance(t, (str, AddedToken)) for t in value):
                    raise ValueError(f"extra_special_tokens must be a list of str or AddedToken, got {value!r}.")
                existing = [str(t) for t in self._extra_special_tokens]
                new = [
                    AddedToken(t, rstrip=False, lstrip=False, normalized=False, special=True) if isinstance(t, str) else t
                    for t in value
                    if replace_extra_special_tokens or str(t) not in existing
                ]
                if replace_extra_special_tokens and new:
                    self.__dict__["_extra_special_tokens"] = list(new)
                else:
                    self._extra_special_tokens.extend(new)
                to_add.extend(new)
            else:
                if not isinstance(value, (str, AddedToken)):
                    raise ValueError(f"{key} must be a str or AddedToken, got {value!r}.")
                if isinstance(value, str):
                    value = AddedToken(value, rstrip=False, lstrip=False, normalized=False, special=True)
                self._special_tokens_map[key] = value
                to_add.append(value)
        return self.add_tokens(to_add, special_tokens=True)

    def add_tokens(self, new_tokens: Union[str, AddedToken, Sequence[Union[str, AddedToken]]], special_tokens: bool = False) -> int:
        """Append tokens that are not in the vocabulary yet; returns how many were added."""
        if not new_tokens:
            return 0
        if not isinstance(new_tokens, (list, tuple)):
            new_tokens = [new_tokens]
        for t in new_tokens:
            if not isinstance(t, (str, AddedToken)):
                raise TypeError(f"add_tokens takes str or tokenizers.AddedToken, got {type(t).__name__}: {t!r}.")
        if special_tokens:
            return self._tokenizer.add_special_tokens(list(new_tokens))
        return self._tokenizer.add_tokens(list(new_tokens))
