"""Click options generated from the settings table (auditsink/settings.py), and ``--config``.

A command declares ``@settings_options("worker")`` and receives every setting the table says
``worker`` uses, under the setting's own name; :func:`settings_from` turns them into a
:class:`~auditsink.settings.Settings`. Nothing about a setting is written here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from auditsink.settings import (
    SETTINGS_BY_NAME, Setting, Settings, SettingsError, for_command, read_config,
)

F = Callable[..., Any]
T = TypeVar("T")
CONFIG_VALUES = "auditsink.config"  # ctx.meta key: what --config read


class SettingOption(click.Option):
    """An option that is a setting: its config-file key and environment variable are the
    setting's, never click's automatic ``AUDITSINK_<COMMAND>_<PARAM>``."""

    def __init__(self, *args: Any, setting: Setting, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting = setting
        self.allow_from_autoenv = False


def setting_option(name: str, param: str | None = None) -> Callable[[F], F]:
    """The click option of one setting; ``param`` renames the Python argument."""
    setting = SETTINGS_BY_NAME[name]
    spec, flag = setting.spec, setting.flag
    if flag is None:
        raise ValueError(f"setting {name!r} is only in the config file: it has no flag")
    kwargs: dict[str, Any] = {"help": spec.help, "envvar": setting.env, "cls": SettingOption,
                              "setting": setting, "metavar": spec.metavar}
    kind = setting.kind
    decls = [flag]
    if kind == "bool":
        if setting.default:
            decls = [f"{flag}/--no-{flag[2:]}"]
            kwargs["show_default"] = True
        else:
            kwargs["is_flag"] = True
        kwargs["default"] = setting.default
    else:
        kwargs["default"] = setting.default
        kwargs["multiple"] = kind == "list"
        kwargs["show_default"] = setting.default not in (None, ())
        kwargs["type"] = _click_type(setting)
    return click.option(*decls, param or name, **kwargs)


def _click_type(setting: Setting) -> Any:
    spec = setting.spec
    if spec.choices:
        return click.Choice(spec.choices)
    if spec.file:
        return click.Path(exists=True, dir_okay=False)
    if setting.kind == "int" and (spec.minimum is not None or spec.maximum is not None):
        return click.IntRange(spec.minimum, spec.maximum)
    return {"int": int, "float": float}.get(setting.kind, str)


def settings_options(command: str) -> Callable[[F], F]:
    """``--config`` and every setting ``command`` uses, in the table's order."""

    def decorate(f: F) -> F:
        for setting in reversed(for_command(command)):
            if setting.flag is not None:
                f = setting_option(setting.name)(f)
        return config_option(f)

    return decorate


def settings_from(kwargs: dict[str, Any], command: str) -> Settings:
    """The settings among a command's arguments (removed from ``kwargs``) as a Settings."""
    values = {s.name: kwargs.pop(s.name) for s in for_command(command) if s.name in kwargs}
    # Settings without a flag (a list of mappings, like `outputs`) come from the file alone.
    ctx = click.get_current_context(silent=True)
    from_file = ctx.meta.get(CONFIG_VALUES, {}) if ctx is not None else {}
    values.update({s.name: from_file[s.name] for s in for_command(command)
                   if s.flag is None and s.name in from_file})
    try:
        return Settings(**values)
    except SettingsError as exc:
        raise usage_error(exc) from None


def usage_error(exc: SettingsError) -> click.UsageError:
    """A settings error as click shows it: naming the flag when there is one (exit code 2)."""
    setting = SETTINGS_BY_NAME.get(exc.setting or "")
    if setting is not None and setting.flag:
        return click.BadParameter(str(exc), param_hint=f"'{setting.flag}'")
    return click.UsageError(str(exc))


def call_service(run: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call the service layer, turning its errors into click's: exit code 2 for settings that
    cannot work, 1 for a part that cannot start."""
    from auditsink.service import ServiceError

    try:
        return run(*args, **kwargs)
    except SettingsError as exc:
        raise usage_error(exc) from None
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None


def _load_config(ctx: click.Context, param: click.Parameter, path: str | None) -> str | None:
    """Read the config file into the command's defaults (environment and flags still win)."""
    if not path:
        return path
    try:
        values = read_config(path)
    except SettingsError as exc:
        raise click.BadParameter(str(exc)) from None
    ctx.meta[CONFIG_VALUES] = values
    defaults: dict[str, Any] = {}
    for option in ctx.command.params:
        if isinstance(option, SettingOption) and option.setting.name in values and option.name:
            defaults[option.name] = values[option.setting.name]
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return path


def config_option(f: F) -> F:
    """``--config FILE``: the YAML file of settings every command shares."""
    return click.option(
        "--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
        callback=_load_config, envvar="AUDITSINK_CONFIG",
        help="YAML file of settings shared by every command (docs/configuration.md).",
    )(f)


def store_option(f: F) -> F:
    """``--store URL`` as the argument ``store_url`` (the read commands)."""
    return setting_option("store", param="store_url")(f)
