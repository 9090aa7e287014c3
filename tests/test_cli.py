"""mamjax.cli: config files, typed overrides, argparse-style errors, the saved config, the mesh."""

import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest

from mamjax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = textwrap.dedent("""
    from ml_collections import config_dict

    def get_config(arg=None):
        c = config_dict.ConfigDict()
        c.seed = 0
        c.lr = 1e-3
        c.batch_size = 128
        c.use_ema = False
        c.name = "mlp"
        c.widths = (512, 512)
        c.limit = config_dict.placeholder(int)
        c.train = config_dict.ConfigDict({"steps": 1000, "save_every": 500})
        c.eval = config_dict.ConfigDict({"num_test": 500})
        if arg == "quick":
            c.train.steps, c.eval.num_test = 10, 20
        elif arg is not None:
            raise ValueError(f"unknown variant {arg!r}; choose None or 'quick'")
        return c
""")


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "toy.py"
    path.write_text(CONFIG)
    return str(path)


def _parse(argv, config_path):
    return cli.parse(["--config", config_path] + argv if not any(a.startswith("--config=") or a == "--config"
                                                                  for a in argv) else argv, example="toy")


def test_defaults_variant_and_typed_overrides(config_path):
    args, c = _parse([], config_path)
    assert (c.train.steps, args.workdir, args.num_devices) == (1000, os.path.join("runs", "toy"), None)
    args, c = cli.parse(["--config", config_path + ":quick", "--config.train.steps=7", "--config.lr", "0.5",
                         "--config.use_ema=true", "--config.widths=(8, 4, 2)", "--config.limit=3",
                         "--config.name=transformer", "--workdir", "/tmp/w", "--num_devices", "2"], example="toy")
    assert c.train.steps == 7  # the command line wins over the variant
    assert c.eval.num_test == 20  # the variant changed this default
    assert c.lr == 0.5 and c.use_ema is True and c.widths == (8, 4, 2) and c.limit == 3 and c.name == "transformer"
    assert (args.workdir, args.num_devices) == ("/tmp/w", 2)
    _, c = _parse(["--config.lr=2"], config_path)  # an int literal for a float field stays a float
    assert c.lr == 2.0 and isinstance(c.lr, float)


@pytest.mark.parametrize("argv, needle", [
    (["--config.train.stpes=3"], "Did you mean --config.train.steps"),
    (["--config.train.steps=abc"], "expects an int"),
    (["--config.use_ema=maybe"], "expects a bool"),
    (["--config.train=3"], "is a group of fields"),
    (["--config.lr"], "needs a value"),
    (["--num_devices", "0"], "positive int"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_command_lines_are_usage_errors(config_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        _parse(argv, config_path)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_bad_config_specs(config_path, tmp_path, capsys):
    for spec, needle in [(config_path + ":huge", "unknown variant 'huge'"), (str(tmp_path / "nope.py"), "not found")]:
        with pytest.raises(SystemExit) as e:
            cli.parse(["--config", spec], example="toy")
        assert e.value.code == 2 and needle in capsys.readouterr().err
    no_fn = tmp_path / "empty.py"
    no_fn.write_text("x = 1\n")
    with pytest.raises(cli.ConfigError, match="defines no get_config"):
        cli.load_config(str(no_fn))


def test_help_lists_fields_and_defaults(config_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.parse(["--config", config_path, "--help"], example="toy")
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "--config.train.steps=1000" in out and "default: runs/toy" in out and "--num_devices" in out


def test_saved_config_is_checked_on_resume(config_path, tmp_path):
    work = tmp_path / "run"
    _, c = _parse([], config_path)
    path = cli.save_config(work, c, may_change=("eval.*",))
    assert json.load(open(path))["train"]["steps"] == 1000
    assert cli.save_config(work, c) == path  # same config: accepted
    _, c2 = _parse(["--config.eval.num_test=9"], config_path)
    cli.save_config(work, c2, may_change=("eval.*",))  # an allowed change is accepted and recorded
    assert json.load(open(path))["eval"]["num_test"] == 9
    _, c3 = _parse(["--config.lr=0.1", "--config.train.steps=5"], config_path)
    with pytest.raises(cli.ConfigMismatchError) as e:
        cli.save_config(work, c3, may_change=("eval.*",))
    msg = str(e.value)
    assert "lr: 0.001 saved, 0.1 now" in msg and "train.steps: 1000 saved, 5 now" in msg and "fresh --workdir" in msg
    assert cli.save_config(None, c3) is None


def test_mesh_and_batch_size():
    import jax

    mesh = cli.make_mesh(None)
    assert mesh.devices.size == jax.device_count()
    assert cli.make_mesh(1).devices.size == 1
    with pytest.raises(cli.ConfigError, match="num_devices"):
        cli.make_mesh(jax.device_count() + 1)
    assert cli.check_batch_size(8, mesh) == 8


def test_batch_size_must_divide_over_devices():
    class FakeMesh:  # the divisibility rule, independent of how many devices this process has
        class devices:
            size = 8
    with pytest.raises(cli.ConfigError, match=r"`config.batch_size` = 12 .* divisible by the 8 devices.*e.g. 8 or 16"):
        cli.check_batch_size(12, FakeMesh, "config.batch_size")
    with pytest.raises(cli.ConfigError, match="positive int"):
        cli.check_batch_size(0, FakeMesh)


def test_run_turns_user_errors_into_exit_messages():
    def bad_config(argv):
        raise cli.ConfigMismatchError("workdir holds another run")

    def bug(argv):
        raise KeyError("a real bug keeps its traceback")

    with pytest.raises(SystemExit) as e:
        cli.run(bad_config)
    assert str(e.value) == "error: workdir holds another run"
    with pytest.raises(KeyError):
        cli.run(bug)


def test_parsing_does_not_import_jax(config_path):
    code = ("import sys; from mamjax import cli; cli.parse(['--config', %r, '--config.lr=0.1'], example='toy'); "
            "print('jax' in sys.modules)" % config_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def _examples_on_cli():
    return sorted(p for p in glob.glob(os.path.join(ROOT, "examples", "*.py"))
                  if "cli.parse(" in open(p).read())


@pytest.mark.parametrize("script", _examples_on_cli(), ids=os.path.basename)
def test_example_help_is_fast_and_lists_config(script):
    """`--help` of every example built on cli.parse answers without importing jax, with the config fields."""
    code = ("import runpy, sys; sys.argv = [%r, '--help']\n"
            "try:\n    runpy.run_path(%r, run_name='__main__')\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('JAX_IMPORTED' if 'jax' in sys.modules else 'NO_JAX')" % (script, script))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--config." in out.stdout and "--workdir" in out.stdout
    assert out.stdout.strip().endswith("NO_JAX"), "the example imports jax before parsing its command line"
