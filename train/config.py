"""Run options: packaged defaults ← ``--config FILE.toml`` ← CLI flags; the resolved dict is saved with the run.

Layout of a config file (see ``hkdsme/configs/default.toml``): a ``[train]`` table shared by every command plus
one table per command (``[teacher]``, ``[distill]``). Resolution for command ``cmd``::

    cfg = defaults[train] | defaults[cmd] | file[train] | file[cmd] | {flags given on the command line}

Unknown keys and values of the wrong type are errors naming the file, so a typo never silently trains
with a default.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:    # older Pythons (not claimed: python_requires >= 3.11) with tomli installed
    import tomli as tomllib

import hkdsme
from hkdsme.pipeline.atomic import write_text
from hkdsme.pipeline.errors import InputError

DEFAULT_FILE = Path(hkdsme.__file__).resolve().parent / "configs" / "default.toml"
COMMANDS = ("teacher", "distill")


def _read(path) -> dict:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        return tomllib.loads(text[1:] if text.startswith("\ufeff") else text)    # a UTF-8 byte-order mark is fine
    except FileNotFoundError:
        raise InputError(path, "config file not found") from None
    except UnicodeDecodeError as e:      # TOML is UTF-8 (tomllib decodes it strictly)
        raise InputError(path, f"config is not UTF-8 text ({_encoding_hint(path, e)}); TOML files must be UTF-8: "
                               "save it as UTF-8") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InputError(path, f"unreadable config: {e}") from None


def _encoding_hint(path: Path, e: UnicodeDecodeError) -> str:
    """What the bytes look like: UTF-16 (a byte-order mark, e.g. Windows Notepad's "Unicode"), else the first
    byte that is not UTF-8 and its line."""
    try:
        head = path.read_bytes()
    except OSError:
        head = b""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "it is UTF-16"
    line = head[:e.start].count(b"\n") + 1 if head else "?"
    return f"byte 0x{e.object[e.start]:02x} on line {line}, e.g. Latin-1 or Windows-1252"


def defaults(command: str) -> dict:
    """Packaged defaults of ``command`` (``[train]`` merged with ``[command]``)."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; expected one of {COMMANDS}")
    d = _read(DEFAULT_FILE)
    return {**d["train"], **d[command]}


def _coerce(key, value, like, where):
    """``value`` converted to the type of the default ``like`` (int → float allowed); InputError otherwise."""
    if isinstance(like, bool):
        ok = isinstance(value, bool)
    elif isinstance(like, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(like, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(like, str):
        ok = isinstance(value, (str, os.PathLike))
        value = str(value) if ok else value
    elif isinstance(like, list):
        ok = isinstance(value, (list, tuple))
        value = [str(v) for v in value] if ok else value
    else:
        ok = True
    if not ok:
        raise InputError(where, f"option {key!r} must be {type(like).__name__}, got {value!r}")
    return value


def resolve(command: str, config_file=None, overrides: dict | None = None, base: dict | None = None) -> dict:
    """The options of one run (see module docstring). ``base`` replaces the packaged defaults (resume)."""
    cfg = dict(base) if base is not None else defaults(command)
    ref = defaults(command)
    layers = []
    if config_file:
        user = _read(config_file)
        unknown = set(user) - {"train", *COMMANDS}
        if unknown:
            raise InputError(config_file, f"unknown tables {sorted(unknown)}; use [train] and [{command}]")
        others = sorted(set(user) & set(COMMANDS) - {command})
        if others and command not in user:
            # a recipe of the other command would otherwise run with only the packaged defaults
            raise InputError(config_file, f"has no [{command}] table, only [{', '.join(others)}]: it is a recipe "
                                          f"for another command")
        layers += [(user.get("train", {}), config_file), (user.get(command, {}), config_file)]
    layers.append(({k: v for k, v in (overrides or {}).items() if v is not None}, "command line"))
    for layer, where in layers:
        for k, v in layer.items():
            if k not in ref:
                raise InputError(where, f"unknown option {k!r} for `{command}` (known: {', '.join(sorted(ref))})")
            cfg[k] = _coerce(k, v, ref[k], where)
    validate(cfg, command)
    return cfg


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("cpu", "cuda")
LR_SCHEDULES = ("constant", "cosine")
# option: smallest allowed value (ints), checked when the command has the option
_INT_MIN = {"epochs": 1, "batch": 1, "val_batch": 1, "val_every": 1, "patience": 0, "teacher_batch": 1,
            "hcr_batch": 1, "seed": 0, "workers": 0,
            "max_steps_per_epoch": 0, "unlabeled_max": 0, "hcr_tolerance": 0, "hcr_start_epoch": 0}
_CHOICES = {"precision": PRECISIONS, "device": DEVICES, "lr_schedule": LR_SCHEDULES}


def problems(cfg: dict) -> list[str]:
    """One message per bad value of a resolved config (empty when every value is usable)."""
    out = []
    for k, lo in _INT_MIN.items():
        if k in cfg and not cfg[k] >= lo:
            out.append(f"{k} must be >= {lo}, got {cfg[k]!r}")
    if "lr" in cfg and not (math.isfinite(cfg["lr"]) and cfg["lr"] >= 0):
        out.append(f"lr must be a finite number >= 0, got {cfg['lr']!r}")
    if "hcr_threshold" in cfg and not 0.0 <= cfg["hcr_threshold"] <= 1.0:      # NaN fails too
        out.append(f"hcr_threshold must be in [0, 1], got {cfg['hcr_threshold']!r}")
    for k, allowed in _CHOICES.items():
        if k in cfg and cfg[k] not in allowed:
            out.append(f"{k} must be one of {'|'.join(allowed)}, got {cfg[k]!r}")
    if cfg.get("precision") == "fp16" and cfg.get("device") == "cpu":
        out.append("precision fp16 needs --device cuda (use bf16 or fp32 on CPU)")
    return out


def validate(cfg: dict, command: str) -> dict:
    """Refuse a resolved config of ``command`` with an unusable value: one :class:`InputError` (one line) listing
    one message per bad option, raised before any data is read. Returns ``cfg``."""
    bad = problems(cfg)
    if bad:
        raise InputError(None, f"bad option{'s' if len(bad) > 1 else ''} for `{command}`: " + "; ".join(bad))
    return cfg


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)            # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def save(cfg: dict, run_dir, command: str) -> None:
    """Write ``RUN/config.toml`` (loadable again with ``--config``) and ``RUN/config.json``, atomically."""
    run_dir = Path(run_dir)
    toml = f"[{command}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in sorted(cfg.items()))
    for name, text in (("config.toml", toml), ("config.json", json.dumps(cfg, indent=1, sort_keys=True))):
        write_text(run_dir / name, text)


def load_saved(run_dir) -> dict | None:
    """The resolved config a run saved, or None."""
    p = Path(run_dir) / "config.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(p, f"unreadable saved config: {e}") from None
