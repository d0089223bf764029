"""Load and validate one section of `params.yaml` into a typed dataclass.

Each section is a (frozen) dataclass in facedet.params.sections; `load_section` checks types,
choices (`Literal`), numeric ranges (`field_range`), unknown keys (with a "did you mean" hint) and
renamed knobs (`field_renamed`: the old name is refused with the new one), and raises `ParamsError` with one line
naming the key, before any work. A knob that reads `auto` takes the value of the recipe the data calls
for (facedet.params.recipes), and the stage prints one line saying which recipe and why.
A stage wraps its loading in `exit_on_bad_params(stage)`, which turns that error into the
process's exit: one line on stderr, status 1, no traceback.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from facedet.params.recipes import AUTO, DECIDED_BY, resolve_auto

T = TypeVar("T")

PARAMS_FILE = Path("params.yaml")
# what this process read: (params file, section or dotted key) -> its value as read (see check_params_unchanged)
_sections_read: dict[tuple[Path, str], Any] = {}
_sections_stage: str | None = None  # the stage whose exit_on_bad_params blocks they were read in


class ParamsError(ValueError):
    """A params.yaml value is missing, mistyped or out of range; the message names the key."""


class _Yaml12FloatLoader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where `1e-5` (no dot) is a string; DVC reads and writes YAML 1.2, where
    it is a float: `dvc exp run -S train.weight_decay=1e-5` writes `1e-05`. Read floats as DVC does."""


_Yaml12FloatLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def read_params_file(path: str | os.PathLike = PARAMS_FILE) -> dict[str, Any]:
    """Parse params.yaml, with a clear error for a missing file or bad YAML."""
    path = Path(path)
    for other in [key for key in _sections_read if key[0] != path]:  # a stage reads one params file
        del _sections_read[other]
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the repository root)")
    return parse_params(path.read_text(encoding="utf-8"), str(path))


def parse_params(text: str, path: str = str(PARAMS_FILE)) -> dict[str, Any]:
    """Parse the text of a params file (named `path` in errors) as read_params_file does."""
    try:
        data = yaml.load(text, Loader=_Yaml12FloatLoader) or {}
    except yaml.YAMLError as err:
        # The construct at fault starts at the context mark (an unclosed quote, a key without ':');
        # the problem mark is where the parser gave up, often the next line.
        mark = getattr(err, "context_mark", None) or getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        context = f" ({err.context})" if getattr(err, "context_mark", None) and getattr(err, "context", None) else ""
        raise ParamsError(f"{where}: invalid YAML: {getattr(err, 'problem', err)}{context}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections")
    return data


@contextlib.contextmanager
def exit_on_bad_params(stage: str, *errors: type[Exception]) -> Iterator[None]:
    """Around a stage's params loading (and, with `errors`, its work): a `ParamsError` or one of
    `errors` ends the process with the one line '<stage>: error: <message>' on stderr and exit
    status 1, no traceback. The library's messages name the file (and line) at fault. When the
    block ends, every section loaded so far must still read as it did (`check_params_unchanged`).

        with exit_on_bad_params("filter"):
            params = load_section("filter", FilterParams)
        with exit_on_bad_params("filter", FileNotFoundError, WiderFormatError):
            filter_data(params)
    """
    global _sections_stage
    if stage != _sections_stage:  # another stage's main in this process (tests): its reads are not ours
        _sections_read.clear()
        _sections_stage = stage
    try:
        yield
        check_params_unchanged()
    except (ParamsError, *errors) as err:
        raise SystemExit(f"{stage}: error: {err}") from None


def field_range(minimum: float | None = None, maximum: float | None = None, **kwargs: Any) -> Any:
    """A dataclass field whose numeric value must lie in [minimum, maximum]."""
    return dataclasses.field(metadata={"min": minimum, "max": maximum}, **kwargs)


def field_renamed(old_name: str | None = None, values: dict[Any, Any] | None = None, **kwargs: Any) -> Any:
    """A dataclass field for a renamed knob: its key spelt `old_name`, or its value one of the keys of
    `values` (old -> new), is refused with one line giving the new name."""
    return dataclasses.field(metadata={"old_name": old_name, "values": values or {}}, **kwargs)


def check_ranges(instance: Any, key: str) -> None:
    """ParamsError unless every `field_range` field of the dataclass `instance` lies in its range: for a
    params dataclass made in code rather than by `build` (`key` names it in the message)."""
    for fld in dataclasses.fields(instance):
        if fld.metadata.get("min") is not None or fld.metadata.get("max") is not None:
            _check_range(getattr(instance, fld.name), f"{key}.{fld.name}", fld.metadata, where="")


def load_section(section: str, spec: type[T], path: str | os.PathLike = PARAMS_FILE) -> T:
    """Return `params.yaml[section]` as an instance of the dataclass `spec`, validated, its `auto` knobs
    set by the recipe the data calls for (printed: 'recipe: real photos (data.source=local): ...').
    What was read, the params that chose the recipe included, is remembered for `check_params_unchanged`."""
    data = read_params_file(path)
    if section not in data:
        raise ParamsError(f"{path}: section '{section}' is missing")
    _sections_read[(Path(path), section)] = copy.deepcopy(data[section])
    resolution = resolve_auto(data)
    knobs = {key: value for key, value in resolution.knobs.items() if key.startswith(f"{section}.")}
    if knobs:
        for key in DECIDED_BY:
            _sections_read[(Path(path), key)] = copy.deepcopy(_value_at(data, key))
        print(f"recipe: {resolution.describe()}: {', '.join(f'{key}={value}' for key, value in knobs.items())}")
    return build(spec, resolution.params[section], f"{section}")


def _value_at(params: Any, key: str) -> Any:
    """The value at a dotted key of parsed YAML, '<absent>' where there is none."""
    for part in key.split("."):
        if not isinstance(params, dict) or part not in params:
            return "<absent>"
        params = params[part]
    return params


def _first_difference(old: Any, new: Any, key: str) -> str | None:
    """The dotted key where two parsed YAML values first differ, with both values; None if equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for name in [*old, *(k for k in new if k not in old)]:
            if (found := _first_difference(old.get(name, "<absent>"), new.get(name, "<absent>"), f"{key}.{name}")):
                return found
        return None
    return None if old == new else f"{key}: {old!r} when the stage started, {new!r} now"


def check_params_unchanged() -> None:
    """ParamsError if a params section this process loaded now reads differently from its file: the
    stage ran with the old values, but DVC would record the new ones in dvc.lock as what made its
    outputs. Two `dvc exp run` started at once do this (the second rewrites params.yaml before DVC's
    repository lock stops it); `dvc exp run --queue` runs experiments one after another, each in its
    own copy of the workspace."""
    for (path, section), old in _sections_read.items():
        try:
            new = _value_at(read_params_file(path), section)
        except ParamsError as err:
            raise ParamsError(f"{err} (it changed while the stage ran)") from None
        if (found := _first_difference(old, new, section)):
            raise ParamsError(f"{path} changed while the stage ran ({found}): its outputs would be recorded "
                              "with params they were not made with; for experiments side by side use "
                              "`dvc exp run --queue` then `dvc queue start`")


def build(spec: type[T], value: Any, key: str) -> T:
    """Validate the mapping `value` against dataclass `spec`; `key` is its dotted name."""
    if not isinstance(value, dict):
        raise ParamsError(f"params.yaml: '{key}' must be a mapping, got {value!r}")
    hints = typing.get_type_hints(spec)
    fields = {f.name: f for f in dataclasses.fields(spec)}  # type: ignore[arg-type]
    _refuse_old_names(value, fields, key)
    for name in value:
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            hint = f" (did you mean '{key}.{close[0]}'?)" if close else ""
            raise ParamsError(f"params.yaml: unknown key '{key}.{name}'{hint}")
    kwargs = {}
    for name, fld in fields.items():
        dotted = f"{key}.{name}"
        if name not in value:
            if fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
                raise ParamsError(f"params.yaml: missing key '{dotted}'")
            continue
        given = value[name]
        if isinstance(given, (str, int)) and given in fld.metadata.get("values", {}):
            raise ParamsError(f"params.yaml: '{dotted}: {given}' was renamed: write "
                              f"'{dotted}: {fld.metadata['values'][given]}'")
        try:
            kwargs[name] = _check(hints[name], given, dotted, fld.metadata)
        except ParamsError:
            if given == AUTO:  # not a knob of facedet.params.recipes
                raise ParamsError(f"params.yaml: '{dotted}' cannot be auto: no recipe sets it (the knobs that "
                                  "can: facedet/params/recipes.py)") from None
            raise
    return spec(**kwargs)


def _refuse_old_names(value: dict, fields: dict[str, dataclasses.Field], key: str) -> None:
    """ParamsError naming the new key where `value` spells a `field_renamed` field by its old name."""
    for name, fld in fields.items():
        old = fld.metadata.get("old_name")
        if old and old in value:
            raise ParamsError(f"params.yaml: '{key}.{old}' was renamed: write '{key}.{name}'")


def _check(hint: Any, value: Any, key: str, metadata: Any = None) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ParamsError(f"params.yaml: '{key}' must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check(option, value, key, metadata)
            except ParamsError as err:
                errors.append(str(err))
        raise ParamsError(errors[0] if errors else f"params.yaml: bad value for '{key}'")
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"params.yaml: '{key}' must be a mapping, got {value!r}")
        key_hint, item_hint = get_args(hint) or (Any, Any)
        return {_check(key_hint, k, key): _check(item_hint, v, f"{key}.{k}", metadata) for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"params.yaml: '{key}' must be a list, got {value!r}")
        (item,) = get_args(hint)[:1] or (Any,)
        checked = [_check(item, v, f"{key}[{i}]", metadata) for i, v in enumerate(value)]
        return tuple(checked) if origin is tuple else checked
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"params.yaml: '{key}' must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ParamsError(f"params.yaml: '{key}' must be a finite number, got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"params.yaml: '{key}' must be an integer, got {value!r}")
    elif hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"params.yaml: '{key}' must be true or false, got {value!r}")
    elif hint is str:
        if not isinstance(value, str):
            raise ParamsError(f"params.yaml: '{key}' must be a string, got {value!r}")
    if metadata:
        _check_range(value, key, metadata)
    return value


def _check_range(value: Any, key: str, metadata: Any, where: str = "params.yaml: ") -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = metadata.get("min"), metadata.get("max")
        if low is not None and value < low:
            raise ParamsError(f"{where}'{key}' must be >= {low}, got {value!r}")
        if high is not None and value > high:
            raise ParamsError(f"{where}'{key}' must be <= {high}, got {value!r}")
