"""What every settings model shares: `setting()`, which declares a field once with its variable and
meaning, and the forms of values. A form's validator parses text (a variable, a flag, a file value)
and keeps a typed value from code as it is; its serializer writes the value as a user would (`10m`,
`off`) for the README and `errorreplay config`. Integers, numbers and text are pydantic's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from errorreplay_server.domain.addresses import split_host_port
from errorreplay_server.domain.durations import format_duration, parse_duration
from errorreplay_server.domain.model import MICROS_PER_SECOND

PREFIX = "ERRORREPLAY_"
SERVER_SECTION = "server"
# Numbers in the config file are seconds, as in variables; in code a micros field takes micros.
FROM_OUTSIDE = {"outside": True}


class SettingsModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_switch_for_a_number(cls, raw: Any, info: ValidationInfo) -> Any:
        # pydantic reads `true` as 1: a switch in a number's place (`max_tags = true`) is a mistake.
        if isinstance(raw, bool) and info.field_name and cls.model_fields[info.field_name].annotation in (int, float):
            raise PydanticCustomError("number_type", "not a number")
        return raw


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting: its variable, the attribute paths on Settings it sets, and how it is shown."""

    variable: str
    meaning: str
    # The field's own path (filled in by settings_schema), then any other the value sets.
    paths: tuple[tuple[str, ...], ...] = ()
    deprecated: tuple[str, ...] = ()
    secret: bool = False
    # `config` shows what was given (a file name, an inline list), not the result.
    show_raw: bool = False
    # The default once loaded, when it is not the one in code (as a user writes it).
    loaded: str | None = None
    # A set but empty variable means "none" rather than "the default".
    empty_means_none: bool = False
    # The default as documented, when it is not the value's own rendering.
    doc_default: str | None = None
    # Turns the raw value into the field's form; only the older ERRORREPLAY_METRICS_PORT needs one.
    convert: Callable[[Any], Any] | None = None
    field: FieldInfo | None = None

    @property
    def section(self) -> str:
        return self.paths[0][0] if len(self.paths[0]) > 1 else SERVER_SECTION

    @property
    def key(self) -> str:
        name = self.variable.removeprefix(PREFIX).lower()
        return name.removeprefix(f"{self.section}_") if self.section != SERVER_SECTION else name


def setting(
    default: Any, variable: str, meaning: str, *, old: bool | str = False, also: str = "", **options: Any
) -> Any:
    """A field set by ERRORREPLAY_`variable`. `old`: the unprefixed name (or this older name) still
    works, with a warning; `also`: other attribute paths (`analysis.change_window_us`) the value sets.
    `options`: the Spec's (secret, show_raw, loaded, empty_means_none), then pydantic's (ge, le, gt)."""
    spec = {name: options.pop(name) for name in ("secret", "show_raw", "loaded", "empty_means_none") if name in options}
    paths = tuple(tuple(path.split(".")) for path in also.split(",") if path)
    deprecated = (variable,) if old is True else (old,) if old else ()
    info = Field(default, description=meaning, repr=not spec.get("secret"), **options)
    info.metadata.append(Spec(PREFIX + variable, meaning, paths, deprecated, **spec))
    return info


@dataclass(frozen=True, slots=True)
class Parsed:
    """A domain value (token grants, templates, rules) that `parse` makes from text or keeps as
    given; pydantic builds no schema for its type."""

    parse: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self.parse)


def text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"{raw!r} is not text")
    return raw.strip()


def optional_path(raw: Any) -> Path | None:
    return raw if raw is None or isinstance(raw, Path) else Path(text(raw)) if text(raw) else None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def listed(parse: Callable[[str, str], list[Any]], what: str, *, in_file: bool = False) -> Parsed:
    """Items (token grants, Sentry keys) parsed from text, or from the file it names (`in_file`);
    a tuple from code is kept. Text that yields no item is an error, not an open server."""

    def items(raw: Any) -> tuple[Any, ...]:
        if not isinstance(raw, str | Path):
            return tuple(raw)
        if (path := optional_path(raw)) is None:
            return ()
        if found := tuple(parse(read_text(path), str(path)) if in_file else parse(text(raw), f"{what} list")):
            return found
        raise ValueError(f"{path} holds no {what}" if in_file else f"holds no {what}")

    return Parsed(items)


def from_file(load: Callable[[Path], Any], default: Callable[[], Any]) -> Parsed:
    """A value loaded from the file the text names (`default()` when unset); one from code is kept."""

    def value(raw: Any) -> Any:
        if not isinstance(raw, str | Path):
            return raw
        try:
            return load(path) if (path := optional_path(raw)) else default()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None

    return Parsed(value)


def _address(raw: Any, *, optional: bool = False, unix: bool = False) -> str:
    """host:port; or `off` (stored as "") when optional; or unix:PATH when unix."""
    if optional and text(raw).lower() in ("off", "none", "disabled", ""):
        return ""
    if unix and text(raw).startswith(("unix:", "unix-abstract:")):
        return text(raw)
    try:
        split_host_port(text(raw), "address")
    except ValueError:
        raise ValueError(f'"{raw}" is not host:port such as 127.0.0.1:9464 or 0.0.0.0:9464') from None
    return text(raw)


def _micros(raw: Any, info: core_schema.ValidationInfo) -> Any:
    if isinstance(raw, str) or (info.context == FROM_OUTSIDE and isinstance(raw, int | float)):
        return round(parse_duration(raw) * MICROS_PER_SECOND)
    return raw


def _switch(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if raw.strip().lower() in ("on", "true", "1", "yes", "off", "false", "0", "no"):
        return raw.strip().lower() in ("on", "true", "1", "yes")
    raise ValueError(f'"{raw}" is not on or off')


def _names(raw: Any, required: bool = False) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else raw if isinstance(raw, list | tuple) else [text(raw)]
    if not (names := tuple(text(item) for item in items if text(item))) and required:
        raise ValueError("needs at least one name, comma-separated")
    return names


# Bounds of a type and of its field are not merged (the type's wins): a field narrows with its own type.
Count = Annotated[int, Ge(0)]
Positive = Annotated[int, Ge(1)]
Share = Annotated[float, Ge(0), Le(1)]
Seconds = Annotated[float, BeforeValidator(parse_duration), Ge(0), PlainSerializer(format_duration)]
Micros = Annotated[
    int, BeforeValidator(_micros), Ge(0), PlainSerializer(lambda us: format_duration(us / MICROS_PER_SECOND))
]
Switch = Annotated[bool, BeforeValidator(_switch)]
Names = Annotated[tuple[str, ...], BeforeValidator(_names)]
RequiredNames = Annotated[tuple[str, ...], BeforeValidator(lambda raw: _names(raw, required=True))]
OptionalPath = Annotated[Path | None, BeforeValidator(optional_path), PlainSerializer(lambda p: str(p or ""))]
Address = Annotated[str, BeforeValidator(lambda raw: _address(raw, unix=True))]
OptionalAddress = Annotated[
    str, BeforeValidator(lambda raw: _address(raw, optional=True)), PlainSerializer(lambda a: a or "off")
]
Store = Annotated[Literal["sqlite", "neo4j"], BeforeValidator(lambda raw: text(raw).lower())]
EventLoop = Annotated[Literal["auto", "uvloop", "asyncio"], BeforeValidator(lambda raw: text(raw).lower())]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(lambda raw: text(raw).upper())
]
DURATIONS = (parse_duration, _micros)
"""The validators of durations: an error calls their values `a duration` (`"0" is not a duration > 0`)."""
