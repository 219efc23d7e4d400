"""
The daemon's configuration: a TOML file, overridden by command-line options.

Every key is declared once, as a field of a frozen attrs class per TOML
section; the loader derives its schema from those fields, so an unknown key
or a value of the wrong type is refused with a message that names it
(C{"hid.write_timeout must be a number, not 'fast'"}).
"""

import math
import tomllib
from typing import Any, Mapping

import attrs


class ConfigError(ValueError):
    """
    The configuration cannot be used; C{str(exc)} names the offending key.
    """


@attrs.frozen
class DaemonSection:
    listen: tuple[str, ...] = ("ssl:443",)
    state_dir: str = "/var/lib/tinypilot"


@attrs.frozen
class AuthSection:
    password_required: bool = False
    max_tokens: int = 10_000


@attrs.frozen
class LicenseSection:
    required: bool = True
    public_keys: tuple[str, ...] = ()
    device_id_file: str = "/etc/machine-id"


@attrs.frozen
class HIDSection:
    keyboard: str = "/dev/hidg0"
    mouse: str = "/dev/hidg1"
    write_timeout: float = 0.5
    keyboard_leds: str = ""


@attrs.frozen
class PasteSection:
    report_interval_ms: float = 0.0


@attrs.frozen
class VideoSection:
    command: str = ""
    stale_after: float = 2.0
    min_restart_delay: float = 1.0
    max_restart_delay: float = 30.0


@attrs.frozen
class Config:
    daemon: DaemonSection = DaemonSection()
    auth: AuthSection = AuthSection()
    license: LicenseSection = LicenseSection()
    hid: HIDSection = HIDSection()
    paste: PasteSection = PasteSection()
    video: VideoSection = VideoSection()


_TYPE_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    tuple: "a list of strings",
}


def _coerce(key: str, kind: type, value: object) -> object:
    """
    Check one TOML value against the declared type of C{key}.
    """
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value  # type: ignore[arg-type]
    elif kind is str:
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value  # type: ignore[arg-type]
    if not ok:
        raise ConfigError(f"{key} must be {_TYPE_NAMES[kind]}, not {value!r}")
    return value


def _field_kind(field: "attrs.Attribute[Any]") -> type:
    kind = field.type
    return kind if isinstance(kind, type) else tuple  # tuple[str, ...]


def _checkNonNegative(config: Config) -> None:
    for key, value in [
        ("auth.max_tokens", config.auth.max_tokens),
        ("hid.write_timeout", config.hid.write_timeout),
        ("paste.report_interval_ms", config.paste.report_interval_ms),
        ("video.stale_after", config.video.stale_after),
        ("video.min_restart_delay", config.video.min_restart_delay),
        ("video.max_restart_delay", config.video.max_restart_delay),
    ]:
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{key} must be a finite number of at least 0, not {value!r}")
    if config.auth.max_tokens < 1:
        raise ConfigError("auth.max_tokens must be at least 1")
    if config.video.max_restart_delay < config.video.min_restart_delay:
        raise ConfigError(
            "video.max_restart_delay must not be below video.min_restart_delay"
        )


def fromMapping(data: Mapping[str, object]) -> Config:
    """
    Build a L{Config} from parsed TOML, refusing unknown sections and keys and
    values of the wrong type.
    """
    sections: dict[str, object] = {}
    for section in attrs.fields(Config):
        raw = data.get(section.name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"[{section.name}] must be a table")
        cls: Any = type(section.default)
        known = {f.name: f for f in attrs.fields(cls)}
        values = {}
        for key, value in raw.items():
            name = f"{section.name}.{key}"
            if key not in known:
                raise ConfigError(f"unknown configuration key {name}")
            values[key] = _coerce(name, _field_kind(known[key]), value)
        sections[section.name] = cls(**values)
    for name in data:
        if name not in sections:
            raise ConfigError(f"unknown configuration section [{name}]")
    config = Config(**sections)  # type: ignore[arg-type]
    _checkNonNegative(config)
    _checkPublicKeys(config.license.public_keys)
    return config


def _checkPublicKeys(keys: tuple[str, ...]) -> None:
    """
    A mistyped licence key would otherwise show only as "no valid licence"
    on every request; refuse it at start, naming it.
    """
    from tinypilotd.security.license import LicenseError, parsePublicKey

    for i, key in enumerate(keys):
        try:
            parsePublicKey(key)
        except LicenseError as e:
            raise ConfigError(f"license.public_keys[{i}]: {e}") from None


def load(path: str | None) -> Config:
    """
    Read the TOML file at C{path}, or return the built-in defaults for
    C{None}.
    """
    if path is None:
        return Config()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    try:
        return fromMapping(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def override(config: Config, **changes: Mapping[str, object]) -> Config:
    """
    Return C{config} with some keys replaced, e.g.
    C{override(config, hid={"keyboard": "/tmp/kbd"})}; used for command-line
    options, which win over the file.
    """
    replaced = {
        section: attrs.evolve(getattr(config, section), **values)
        for section, values in changes.items()
        if values
    }
    return attrs.evolve(config, **replaced)
