"""Command lines of the examples: a config file, typed overrides, a workdir and a device mesh.

Every example is a thin script around the same four calls, in the shape of the flax examples and
big_vision (configs are plain Python files returning an ``ml_collections.ConfigDict``)::

    from mamjax import cli

    def main(argv=None):
        args, config = cli.parse(argv, example="marginal_mnist", description=__doc__)
        import jax                                          # after parsing: --help answers at once
        mesh = cli.make_mesh(args.num_devices)              # data-parallel over all devices by default
        cli.check_batch_size(config.batch_size, mesh, "config.batch_size")
        cli.save_config(args.workdir, config, may_change=("eval.*",))
        ...

    if __name__ == "__main__":
        cli.run(main)

The command line it parses::

    --config PATH[:VARIANT]   configs/<example>.py by default; VARIANT is passed to get_config()
    --config.a.b=VALUE        override a field (also ``--config.a.b VALUE``); the value is parsed as the
                              field's type (bool: true/false/1/0, tuples/lists as Python literals)
    --workdir DIR             default runs/<example>; checkpoints, logs, plots, config.json
    --num_devices N           devices of the data mesh (default: all devices of all processes)

An unknown field, a value of the wrong type or an unknown variant ends in an argparse-style usage
error (exit status 2) that names the field, never a traceback. Overrides always win over the
variant: a variant (``:quick``, ``:cpu``) only changes defaults, never a value given on the command
line. This module imports neither jax nor flax at import time.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fnmatch
import importlib.util
import json
import os
import sys
from typing import Any, Callable, Iterable, Sequence

from ml_collections import config_dict

__all__ = ["ConfigError", "ConfigMismatchError", "CONFIG_DIR", "load_config", "override", "parse",
           "make_mesh", "check_batch_size", "save_config", "run"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs")
CONFIG_FILE = "config.json"


class ConfigError(ValueError):
    """A config (or a command line) that cannot be used; the message names the field."""


class ConfigMismatchError(ConfigError):
    """The workdir holds a run made with a different config."""


# ---------------------------------------------------------------------------------------------
# Loading and overriding


def _resolve_path(path: str) -> str:
    for candidate in (path, os.path.join(CONFIG_DIR, path), os.path.join(CONFIG_DIR, path + ".py")):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise ConfigError(f"config file {path!r} not found (looked in the current directory and in {CONFIG_DIR}).")


def load_config(spec: str) -> config_dict.ConfigDict:
    """Loads ``PATH[:VARIANT]``: runs ``get_config(VARIANT or None)`` of the Python file ``PATH``.

    ``PATH`` may also be a name under ``configs/`` (``"marginal_mnist"``). Raises :class:`ConfigError`
    for a missing file, a file without ``get_config``, an unknown variant (a ``ValueError`` from
    ``get_config``) or a result that is not a ``ConfigDict``.
    """
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"`--config` must be PATH[:VARIANT]; got {spec!r}.")
    path, variant = spec.rsplit(":", 1) if ":" in spec else (spec, "")
    path = _resolve_path(path)
    name = "mamjax_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"config file {path} defines no get_config(arg=None).")
    try:
        config = module.get_config(variant or None)
    except ValueError as e:
        raise ConfigError(f"config {spec!r}: {e}") from None
    if not isinstance(config, config_dict.ConfigDict):
        raise ConfigError(f"get_config() of {path} returned {type(config).__name__}, not a ConfigDict.")
    return config


def _leaf_keys(config: config_dict.ConfigDict, prefix: str = "") -> list[str]:
    out = []
    for k in config.keys():
        v = config[k]
        if isinstance(v, config_dict.ConfigDict):
            out += _leaf_keys(v, f"{prefix}{k}.")
        else:
            out.append(prefix + k)
    return out


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _coerce(key: str, text: str, kind: type | None) -> Any:
    """Parses the command-line ``text`` of field ``key`` as its type ``kind``."""
    if kind is bool:
        low = text.strip().lower()
        if low in _TRUE | _FALSE:
            return low in _TRUE
        raise ConfigError(f"`--config.{key}` expects a bool (true/false); got {text!r}.")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"`--config.{key}` expects an int; got {text!r}.") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"`--config.{key}` expects a float; got {text!r}.") from None
    if kind is str:
        return text
    if kind in (tuple, list):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ConfigError(f"`--config.{key}` expects a {kind.__name__} literal such as (1, 2); "
                              f"got {text!r}.") from None
        if not isinstance(value, (tuple, list)):
            value = (value,)
        return kind(value)
    # A field of type None (or an unusual type): a Python literal, else the string itself.
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    return value


def override(config: config_dict.ConfigDict, key: str, text: str) -> None:
    """Sets the dotted field ``key`` of ``config`` from the string ``text``, typed by the field.

    Raises :class:`ConfigError` naming the field for an unknown key (with the nearest names), a
    group (a ConfigDict) given a value, or a value of the wrong type.
    """
    parts = key.split(".")
    node = config
    for i, part in enumerate(parts):
        if not isinstance(node, config_dict.ConfigDict) or part not in node:
            known = _leaf_keys(config)
            near = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join('--config.' + n for n in near)}?" if near else ""
            raise ConfigError(f"`--config.{key}`: no such field.{hint} Fields: {', '.join(known)}.")
        if i < len(parts) - 1:
            node = node[part]
    leaf = parts[-1]
    if isinstance(node[leaf], config_dict.ConfigDict):
        raise ConfigError(f"`--config.{key}` is a group of fields; set one of them, e.g. "
                          f"--config.{key}.{next(iter(node[leaf].keys()), 'x')}=...")
    kind = node.get_type(leaf)
    value = _coerce(key, text, kind if kind is not type(None) else None)
    try:
        node[leaf] = value
    except TypeError as e:
        raise ConfigError(f"`--config.{key}`: {e}") from None


# ---------------------------------------------------------------------------------------------
# The command line


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {n}")
    return n


def _config_spec_in(argv: Sequence[str], default: str) -> str:
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a[len("--config="):]
    return default


def _describe(config: config_dict.ConfigDict) -> str:
    lines = []
    for k in _leaf_keys(config):
        node = config
        for part in k.split(".")[:-1]:
            node = node[part]
        lines.append(f"  --config.{k}={node[k.split('.')[-1]]!r}")
    return "\n".join(lines)


def parse(argv: Sequence[str] | None = None, *, example: str, description: str | None = None,
          add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
          ) -> tuple[argparse.Namespace, config_dict.ConfigDict]:
    """Parses an example's command line; returns ``(args, config)``.

    Args:
      argv: the arguments (default ``sys.argv[1:]``).
      example: the example's name: default config ``configs/<example>.py``, default workdir
        ``runs/<example>``.
      description: ``--help`` text (the example's docstring).
      add_arguments: optional ``f(parser)`` adding example-specific flags (rare: settings belong in
        the config).

    Returns:
      ``args`` with ``workdir``, ``num_devices`` (None: all), ``config`` (the spec string) and any
      added flags; ``config`` with every ``--config.key=value`` applied after the variant.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    default_spec = os.path.join(CONFIG_DIR, f"{example}.py")
    parser = argparse.ArgumentParser(prog=f"{example}.py", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=default_spec, metavar="PATH[:VARIANT]",
                        help="config file and optional variant, e.g. configs/%s.py:quick (default: %%(default)s)"
                             % example)
    parser.add_argument("--workdir", default=os.path.join("runs", example),
                        help="checkpoints, metrics.jsonl, plots, results and config.json (default: %(default)s); "
                             "rerunning the same command resumes from the last checkpoint")
    parser.add_argument("--num_devices", "--num-devices", type=_positive_int, default=None,
                        help="devices of the data-parallel mesh (default: all devices); batch sizes are global")
    if add_arguments is not None:
        add_arguments(parser)

    try:
        config = load_config(_config_spec_in(argv, default_spec))
    except ConfigError as e:
        parser.error(str(e))
    parser.epilog = ("config fields (override with --config.KEY=VALUE; values of "
                     f"{_config_spec_in(argv, default_spec)}):\n" + _describe(config))

    rest_in = []
    overrides: list[tuple[str, str]] = []
    it = iter(range(len(argv)))
    for i in it:
        a = argv[i]
        if a.startswith("--config."):
            key, eq, value = a[len("--config."):].partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    parser.error(f"`--config.{key}` needs a value")
                value = argv[i + 1]
                next(it, None)
            overrides.append((key, value))
        else:
            rest_in.append(a)
    args = parser.parse_args(rest_in)
    for key, value in overrides:
        try:
            override(config, key, value)
        except ConfigError as e:
            parser.error(str(e))
    return args, config


# ---------------------------------------------------------------------------------------------
# Devices, batch sizes, the saved config


def make_mesh(num_devices: int | None = None):
    """The data mesh (:func:`mamjax.sharding.data_mesh`) over the first ``num_devices`` devices.

    ``None`` uses every device of every process. With several processes the mesh must span all
    devices (each process feeds its own ones).
    """
    import jax

    from mamjax import sharding

    devices = jax.devices()
    if num_devices is None:
        return sharding.data_mesh(devices)
    if isinstance(num_devices, bool) or not isinstance(num_devices, int) or not 1 <= num_devices <= len(devices):
        raise ConfigError(f"`num_devices` must be an int in [1, {len(devices)}] (the devices of this job); "
                          f"got {num_devices!r}.")
    if jax.process_count() > 1 and num_devices != len(devices):
        raise ConfigError(f"`num_devices` = {num_devices}: with {jax.process_count()} processes the mesh spans all "
                          f"{len(devices)} devices; omit --num_devices.")
    return sharding.data_mesh(devices[:num_devices])


def check_batch_size(batch_size: int, mesh, name: str = "batch_size") -> int:
    """Checks that the global ``batch_size`` splits evenly over the mesh's devices; returns it."""
    n = int(mesh.devices.size)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"`{name}` must be a positive int; got {batch_size!r}.")
    if batch_size % n:
        lo = max(n, batch_size - batch_size % n)
        raise ConfigError(f"`{name}` = {batch_size} is the global batch and must be divisible by the {n} devices of "
                          f"the data mesh; use e.g. {lo} or {lo + n}, or choose --num_devices.")
    return batch_size


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def save_config(workdir: str | os.PathLike | None, config: config_dict.ConfigDict,
                may_change: Iterable[str] = ()) -> str | None:
    """Writes ``config`` to ``workdir/config.json``, or checks it against the one already there.

    A run resumed in a workdir must use the config it was started with: fields that differ (other
    than those matching a pattern of ``may_change``, e.g. ``"eval.*"``, ``"num_test"``) raise
    :class:`ConfigMismatchError` listing each field with its saved and its new value. Only process 0
    writes. Returns the file's path (None when ``workdir`` is None).
    """
    if workdir is None:
        return None
    patterns = tuple(may_change)
    path = os.path.join(os.fspath(workdir), CONFIG_FILE)
    new = json.loads(config.to_json_best_effort(sort_keys=True))
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigMismatchError(f"{path} is not a readable config ({e}); move it away to start afresh.") from None
        flat_old, flat_new, missing = _flatten(old), _flatten(new), object()
        changed = [k for k in sorted(set(flat_old) | set(flat_new))
                   if flat_old.get(k, missing) != flat_new.get(k, missing)]
        refused = [k for k in changed if not any(fnmatch.fnmatchcase(k, p) for p in patterns)]
        if refused:
            def show(d, k):
                return "(absent)" if k not in d else json.dumps(d[k])
            lines = "; ".join(f"{k}: {show(flat_old, k)} saved, {show(flat_new, k)} now" for k in refused)
            raise ConfigMismatchError(
                f"{os.fspath(workdir)} holds a run made with a different config ({lines}). Resume with the saved "
                f"settings (see {path}) or start in a fresh --workdir.")
        if not changed:
            return path
    if _process_index() == 0:
        os.makedirs(os.fspath(workdir), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(new, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    return path


def _process_index() -> int:
    jax = sys.modules.get("jax")
    return jax.process_index() if jax is not None else 0


def _user_errors() -> tuple[type, ...]:
    errors: list[type] = [ConfigError]
    for module, name in (("mamjax.train", "NonFiniteError"), ("mamjax.checkpoint", "DirectoryLockedError"),
                         ("mamjax.checkpoint", "CheckpointMismatchError"), ("mamjax.checkpoint", "CheckpointError")):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            errors.append(cls)
    return tuple(errors)


def run(main: Callable[..., Any], argv: Sequence[str] | None = None) -> Any:
    """Calls ``main(argv)``; a user-facing error (a bad config, a non-finite loss, a locked or
    mismatched workdir) exits with status 1 and ``error: <message>`` instead of a traceback."""
    try:
        return main(argv)
    except Exception as e:  # noqa: BLE001 - re-raised unless it is one of the user-facing errors
        if isinstance(e, _user_errors()):
            raise SystemExit(f"error: {e}") from None
        raise
