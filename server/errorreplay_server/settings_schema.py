"""The one settings schema: how each field of the model (settings.py) is set from outside, and loading.

Each setting is one field of a frozen pydantic model declared with `setting()` (settings_types.py):
its type parses and checks the value, its Spec names the variable, meaning, older names, secrecy.
Order: defaults, the TOML file (`[section] key`: the variable without `ERRORREPLAY_` and without
the section name, lower case; unknown keys are errors), variables (older spellings warn once), then
flags (README: Configuration). Errors are `ConfigError`: pydantic's ValidationError made one line
naming the variable (or file key, or flag) and the accepted form.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from errorreplay_server.domain.durations import DURATION_FORMS
from errorreplay_server.settings import DEFAULT_METRICS_HOST, DEFAULT_METRICS_PORT, Settings
from errorreplay_server.settings_types import DURATIONS, FROM_OUTSIDE, Spec

logger = logging.getLogger("errorreplay.settings")

CONFIG_VARIABLE = "ERRORREPLAY_CONFIG"
MASK = "********"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and the accepted form."""


def _specs(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[Spec]:
    """The Spec of each field declared with `setting()`, depth first, in declaration order."""
    for name, info in model.model_fields.items():
        if spec := next((item for item in info.metadata if isinstance(item, Spec)), None):
            yield dataclasses.replace(spec, paths=((*prefix, name), *spec.paths), field=info)
        elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            yield from _specs(info.annotation, (*prefix, name))


def _metrics_port(raw: Any) -> str:
    if not str(raw).strip().isdigit() or int(raw) > 65535:
        raise ValueError(f'"{raw}" is not a port number 0-65535')
    return f"{DEFAULT_METRICS_HOST}:{int(raw)}" if int(raw) else ""


# The older ERRORREPLAY_METRICS_PORT is no field: it sets metrics_address (its row follows that one's).
_PORT = Spec(
    "ERRORREPLAY_METRICS_PORT",
    "older form: a port on 127.0.0.1 (0 = off); ERRORREPLAY_METRICS_ADDRESS wins",
    (("metrics_address",),),
    doc_default=str(DEFAULT_METRICS_PORT),
    convert=_metrics_port,
)
SPECS: tuple[Spec, ...] = tuple(
    spec for field in _specs(Settings) for spec in ((field, _PORT) if field.paths == _PORT.paths else (field,))
)

# Fields set by no variable, with the reason (a test checks every other field has a spec).
FIXED_FIELDS = {
    ("notify", "rules"): "the [[notifications.rules]] of the config file (notify/config.py)",
    ("notify", "targets"): "the [notifications.targets.NAME] tables; URL and secret also from "
    "ERRORREPLAY_NOTIFY_TARGET_<NAME>_URL / _SECRET",
}

SPECS_BY_VARIABLE = {spec.variable: spec for spec in SPECS}
_SPECS_BY_PATH = {path: spec for spec in SPECS if spec.convert is None for path in spec.paths}
SPECS_BY_KEY = {(spec.section, spec.key): spec for spec in SPECS}


def get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = obj[name] if isinstance(obj, Mapping) else getattr(obj, name)
    return obj


def default_text(spec: Spec) -> str:
    """The default as a user would write it: what `config` shows when nothing is set."""
    if spec.doc_default is not None:
        return spec.doc_default
    shown = _defaults_shown()[spec.section][spec.key]
    if isinstance(shown, bool):
        return "on" if shown else "off"
    return ",".join(str(item) for item in shown) if isinstance(shown, list) else str(shown)


@cache
def _defaults_shown() -> dict[str, dict[str, Any]]:
    return effective(load({}))


_warned: set[str] = set()


def _warn_deprecated(old: str, new: str) -> None:
    if old not in _warned:
        _warned.add(old)
        logger.warning("%s is deprecated; use %s (it still works for now)", old, new)


NOTIFICATIONS_SECTION = "notifications"


def read_config_file(path: Path) -> tuple[dict[tuple[str, str], Any], Any]:
    """(section, key) -> TOML value, and the [notifications] table; ConfigError on an unknown key."""
    try:
        with path.open("rb") as file:
            doc = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    values: dict[tuple[str, str], Any] = {}
    for section, table in doc.items():
        if section == NOTIFICATIONS_SECTION:
            continue  # rules and targets: notify/config.py reads and checks them
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: {section!r} must be a [section]; settings live in sections")
        for key, value in table.items():
            if (section, key) not in SPECS_BY_KEY:
                raise ConfigError(f"config file {path}: unknown key [{section}] {key}")
            values[(section, key)] = value
    return values, doc.get(NOTIFICATIONS_SECTION, {})


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    """The effective settings and, per variable set, where it was set (variable, `config file F:
    [section] key`, or flag) and the raw value."""

    settings: Settings
    given: Mapping[str, tuple[str, Any]]


def load(
    environ: Mapping[str, str],
    config_file: Path | None = None,
    flags: Mapping[str, tuple[str, Any]] | None = None,
) -> Loaded:
    """Settings from defaults, then the TOML file, then `environ`, then `flags` (variable ->
    (flag name, raw value)). ConfigError, one line naming what is wrong, otherwise."""
    if config_file is None and environ.get(CONFIG_VARIABLE, "").strip():
        config_file = Path(environ[CONFIG_VARIABLE].strip())
    from_file, notifications = read_config_file(config_file) if config_file is not None else ({}, {})
    given: dict[str, tuple[str, Any]] = {}
    for spec in SPECS:
        if (spec.section, spec.key) in from_file:
            where = f"config file {config_file}: [{spec.section}] {spec.key}"
            given[spec.variable] = (where, from_file[(spec.section, spec.key)])
        for name in (spec.variable, *spec.deprecated):
            raw = environ.get(name)
            if raw is not None and (raw.strip() or spec.empty_means_none):
                if name != spec.variable:
                    _warn_deprecated(name, spec.variable)
                given[spec.variable] = (name, raw)
                break
        if flags and spec.variable in flags:
            given[spec.variable] = flags[spec.variable]
    # The older metrics port only counts when the address is not set.
    if "ERRORREPLAY_METRICS_ADDRESS" in given:
        given.pop("ERRORREPLAY_METRICS_PORT", None)
    tree: dict[str, Any] = {}
    for spec in SPECS:
        if spec.variable in given:
            where, value = given[spec.variable]
            if spec.convert is not None:
                try:
                    value = spec.convert(value)
                except ValueError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
        elif spec.loaded is not None:
            value = spec.loaded
        else:
            continue
        for path in spec.paths:
            node = tree
            for name in path[:-1]:
                node = node.setdefault(name, {})
            node[path[-1]] = value
    try:
        settings = Settings.model_validate(tree, context=FROM_OUTSIDE)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, given)) from None
    return Loaded(_with_notifications(settings, notifications, config_file, environ), given)


def _with_notifications(
    settings: Settings, table: Any, config_file: Path | None, environ: Mapping[str, str]
) -> Settings:
    """Notification rules and targets from the file's [notifications] table (target URLs and
    secrets may come from ERRORREPLAY_NOTIFY_TARGET_<NAME>_URL / _SECRET instead)."""
    from errorreplay_server.notify import config as notify_config

    try:
        if not isinstance(table, dict):
            raise ValueError(f"config file {config_file}: [{NOTIFICATIONS_SECTION}] must be a table")
        targets = notify_config.parse_targets(table.get("targets", {}), environ)
        rules = notify_config.parse_rules(table.get("rules", []), targets)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    notify = settings.notify.model_copy(
        update={"rules": tuple(rules), "targets": targets, "console_url": settings.notify.console_url.rstrip("/")}
    )
    return settings.model_copy(update={"notify": notify})


def _one_line(exc: ValidationError, given: Mapping[str, tuple[str, Any]]) -> str:
    """The first of pydantic's errors as one line naming the variable (or key, or flag) and the form."""
    error = exc.errors()[0]
    loc = tuple(str(part) for part in error["loc"])
    spec = next((_SPECS_BY_PATH[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in _SPECS_BY_PATH), None)
    cause = error.get("ctx", {}).get("error")
    if spec is None or spec.variable not in given:  # a check across fields names the variables itself
        return str(cause or error["msg"])
    where, raw = given[spec.variable]
    if error["type"] == "value_error" and cause is not None:
        return f"{where}: {cause}"
    assert spec.field is not None
    shown = json.dumps(raw) if isinstance(raw, bool) else raw  # as the file wrote it: true, not True
    return f'{where}: "{shown}" is not {_form(spec.field)}'


def _form(field: FieldInfo) -> str:
    """What a field accepts, from its type and bounds: `an integer >= 1`, `a number between 0 and 1`."""
    if get_origin(field.annotation) is Literal:
        return f"one of {', '.join(get_args(field.annotation))}"
    validators = [getattr(item, "func", None) for item in field.metadata]
    names: dict[Any, str] = {int: "an integer", float: "a number", bool: "on or off", str: "text", Path: "a path"}
    kind = "a duration" if set(validators) & set(DURATIONS) else names.get(field.annotation, "valid")
    ge, le, gt = (
        sorted(getattr(m, bound) for m in field.metadata if hasattr(m, bound)) for bound in ("ge", "le", "gt")
    )
    if ge and le:
        return f"{kind} between {ge[-1]} and {le[0]}"
    return f"{kind} > {gt[-1]}" if gt else f"{kind} >= {ge[-1]}" if ge else kind


def effective(loaded: Loaded) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} in the file's form, secrets masked; for `errorreplay config`."""
    shown = loaded.settings.model_dump()
    out: dict[str, dict[str, Any]] = {}
    for spec in SPECS:
        if spec.convert is not None:
            continue  # the metrics port: folded into metrics_address
        raw = loaded.given.get(spec.variable, ("", None))[1]
        if spec.secret:
            value: Any = MASK if raw is not None and str(raw).strip() else ""
        elif spec.show_raw:
            value = "" if raw is None else str(raw).strip()
        else:
            value = get_path(shown, spec.paths[0])
            value = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        out.setdefault(spec.section, {})[spec.key] = value
    return out


def to_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """A config file; a masked secret is a comment, so the file loads and keeps the other settings.
    JSON's scalars, strings and arrays are TOML's too."""
    lines: list[str] = []
    for section, table in sections.items():
        lines.append(f"[{section}]")
        for key, value in table.items():
            lines.append(f"{'# ' if value == MASK else ''}{key} = {json.dumps(value, ensure_ascii=False)}")
        lines.append("")
    return "\n".join(lines)


__all__ = ["DURATION_FORMS", "SPECS", "ConfigError", "Loaded", "Spec", "effective", "load", "to_toml"]
