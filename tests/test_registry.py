"""The core: discovery through entry points, fault isolation, name resolution, the fast CLI."""
from __future__ import annotations

import json
import textwrap

import pytest

import zoo
from zoo.base.errors import PluginError, UserError
from zoo.registry.catalog import Registry
from zoo.testing import fresh_registry

from conftest import make_plugin_dist, run_zoo

TINY = """
    from zoo import Architecture, Wrapper, hookimpl

    def build(num_classes=10, in_chans=3, input_size=32, depth=1):
        import torch.nn as nn
        return nn.Sequential(nn.Conv2d(in_chans, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))

    @hookimpl
    def architectures():
        return [Architecture("{name}", build, "a tiny net", input_size=32)]
"""


def discover(folder, **env):
    return Registry.discover(path=[str(folder)], env=env)


def test_third_party_plugin_is_discovered_and_builds(plugin_dir):
    make_plugin_dist(plugin_dir, "zoo-tiny", "tiny_plugin_a", TINY.format(name="tinynet"), entry_point="tiny")
    registry = discover(plugin_dir)
    spec = registry.get("arch", "tinynet")
    assert (spec.plugin, spec.qualified_name) == ("tiny", "tiny:tinynet")
    assert registry.plugins["tiny"].distribution == "zoo-tiny"
    assert registry.plugins["tiny"].provides == {"arch": ["tinynet"]}
    model = zoo.create_model("tiny:tinynet", registry=registry, num_classes=4, depth=None)
    assert model[-1].out_features == 4
    assert model.zoo_config["architecture"] == "tiny:tinynet"


@pytest.mark.parametrize("source, message", [
    ("raise ImportError('no such thing')", "failed to load: ImportError: no such thing"),
    ("from zoo import hookimpl\n@hookimpl\ndef architectures():\n    raise RuntimeError('boom')",
     "hook architectures() raised RuntimeError: boom"),
    ("from zoo import hookimpl\n@hookimpl\ndef architectures():\n    return [42]", "returned int where"),
    ("from zoo import hookimpl\n@hookimpl\ndef architectures():\n    return 42", "raised TypeError"),
    ("from zoo import hookimpl\n@hookimpl\ndef architecture():\n    return []", "unknown hook 'architecture'"),
    ("from zoo import hookimpl\n@hookimpl\ndef architecture():\n    return []\n@hookimpl\ndef wrapperz():\n    return []",
     "unknown hooks 'architecture' (did you mean 'architectures'?), 'wrapperz' (did you mean 'wrappers'?); the hooks"),
    ("from zoo import Wrapper, hookimpl\n@hookimpl\ndef wrappers():\n    return [Wrapper('a-b', 'x:y')]",
     "wrapper name with '-'"),
    ("import sys\nsys.exit(0)", "failed to load: SystemExit"),
    ("def architectures():\n    return []", "architectures() is not decorated with @zoo.hookimpl"),
    ("import time\nfrom zoo import hookimpl\n@hookimpl\ndef architectures():\n    time.sleep(3600)",
     "architectures() did not finish within 2 s"),
    ("import time\ntime.sleep(3600)", "did not finish within 2 s"),
])
def test_broken_plugin_is_reported_and_the_rest_works(plugin_dir, monkeypatch, source, message):
    monkeypatch.setenv("ZOO_PLUGIN_TIMEOUT", "2")
    make_plugin_dist(plugin_dir, "zoo-good", "good_plugin_b", TINY.format(name="goodnet"), entry_point="good")
    module = f"broken_{abs(hash(source)) % 10**8}"
    make_plugin_dist(plugin_dir, "zoo-broken", module, source, entry_point="broken")
    errors = []
    registry = Registry.discover(path=[str(plugin_dir)], env={}, on_error=errors.append)
    assert registry.plugins["broken"].status == "error"
    assert message in registry.plugins["broken"].errors[0]
    assert len(errors) == 1 and "broken" in errors[0]
    assert registry.get("arch", "goodnet").plugin == "good"
    with pytest.raises(PluginError):
        Registry.discover(path=[str(plugin_dir)], env={"ZOO_STRICT_PLUGINS": "1"})


def test_same_name_from_two_plugins_is_reachable_qualified_and_ambiguous_bare(plugin_dir):
    make_plugin_dist(plugin_dir, "zoo-one", "one_plugin_c", TINY.format(name="twin"), entry_point="one")
    make_plugin_dist(plugin_dir, "zoo-two", "two_plugin_c", TINY.format(name="twin"), entry_point="two")
    registry = discover(plugin_dir)
    assert registry.get("arch", "one:twin").plugin == "one"
    assert registry.get("arch", "two:twin").plugin == "two"
    with pytest.raises(UserError, match="provided by plugins 'one' and 'two': use one:twin or two:twin"):
        registry.get("arch", "twin")


def test_a_plugin_that_offers_a_built_in_name_leaves_the_bare_name_to_the_built_in(plugin_dir, cifar_dir, tmp_path):
    """Installing a plugin must not break a working command: `--aug hflip` and `resnet20` stay zoo's."""
    source = TINY.format(name="resnet20") + textwrap.indent(textwrap.dedent("""
        from zoo import Augmentation

        @hookimpl
        def augmentations():
            return [Augmentation("hflip", lambda: (lambda x, y: (x, y)), "an outside hflip")]
        """), "    ")
    make_plugin_dist(plugin_dir, "zoo-rival", "rival_plugin", source, entry_point="rival")
    env = {"PYTHONPATH": str(plugin_dir)}
    registry = zoo.Registry.discover()
    assert registry.get("arch", "resnet20").plugin == "resnet" and registry.get("aug", "hflip").plugin == "augment"
    assert registry.get("arch", "rival:resnet20").plugin == "rival"  # the other, by its plugin's name
    trained = run_zoo("train", "resnet20", "--data-dir", str(cifar_dir), "--aug", "hflip", "--epochs", "1",
                      "--batch-size", "20", "--set", "width=0.25", "--run-dir", "r", "--json", env=env, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())
    assert "rival" not in recorded["provenance"]["plugins"] and {"resnet", "augment"} <= set(recorded["provenance"]["plugins"])
    listed = run_zoo("list", "hflip", env=env).stdout
    assert "rival:hflip" in listed and "\nhflip " in listed  # how each is named in a command


def test_two_distributions_with_one_plugin_name_keep_the_first(plugin_dir):
    make_plugin_dist(plugin_dir, "zoo-first", "first_plugin_d", TINY.format(name="firstnet"), entry_point="dup")
    make_plugin_dist(plugin_dir, "zoo-second", "second_plugin_d", TINY.format(name="secondnet"), entry_point="dup")
    registry = discover(plugin_dir)
    statuses = sorted(p.status for p in registry.plugins.values() if p.distribution != "cnn-zoo")  # not the core
    assert statuses == ["error", "ok"]
    assert len(registry.items("arch")) == 1


def test_disable_variable_prevents_the_import(plugin_dir, tmp_path):
    marker = tmp_path / "imported"
    make_plugin_dist(plugin_dir, "zoo-spy", "spy_plugin_e", f"open({str(marker)!r}, 'w').close()", entry_point="spy")
    make_plugin_dist(plugin_dir, "zoo-other", "other_plugin_e", TINY.format(name="othernet"), entry_point="other")
    registry = discover(plugin_dir, ZOO_DISABLE_PLUGINS="spy")
    assert not marker.exists()
    assert registry.plugins["spy"].status == "disabled"
    assert registry.find("arch", "othernet") is not None
    registry = discover(plugin_dir, ZOO_PLUGINS="other")
    assert not marker.exists() and registry.plugins["spy"].status == "disabled"
    discover(plugin_dir)
    assert marker.exists()


def test_composition_and_close_matches():
    registry = zoo.default_registry()
    wrappers, arch = registry.resolve_model("se-vgg16")
    assert [w.name for w in wrappers] == ["se"] and arch.name == "vgg16"
    wrappers, arch = registry.resolve_model("se:se-vgg:vgg16")
    assert arch.qualified_name == "vgg:vgg16"
    with pytest.raises(UserError, match=r"unknown model 'se-vgg61'; did you mean .*se-vgg16"):
        registry.resolve_model("se-vgg61")
    with pytest.raises(UserError, match=r"unknown model 'resnt50'; did you mean .*resnet50"):
        registry.resolve_model("resnt50")
    with pytest.raises(UserError, match="applied twice"):
        registry.resolve_model("se-se-vgg16")


def test_python_api_mirrors_timm():
    builtins = fresh_registry(installed=("vgg", "resnet", "se", "timm"))  # whatever else is installed
    assert set(zoo.list_models("*vgg16*", registry=builtins)) == {
        "vgg16", "vgg16_bn", "vgg16c", "vgg16c_bn", "se-vgg16", "se-vgg16_bn", "se-vgg16c", "se-vgg16c_bn",
        "timm/vgg16", "timm/vgg16_bn", "se-timm/vgg16", "se-timm/vgg16_bn"}  # the last two by surgery
    assert {"vgg11", "vgg16_bn", "se-vgg16", "resnet18"} <= set(zoo.list_models())
    assert zoo.list_models("vgg1?") == ["vgg11", "vgg13", "vgg16", "vgg19"]
    # timm's filters: a list of patterns, exclusions, and pretrained=True for the registered weights' names
    assert zoo.list_models(["vgg1?", "resnet18"], registry=builtins) == ["resnet18", "vgg11", "vgg13", "vgg16", "vgg19"]
    assert zoo.list_models("vgg16*", exclude_filters=["*bn*", "*c"], registry=builtins) == ["vgg16"]
    assert {"resnet50.tv2_in1k", "resnet50.tv_in1k"} <= set(zoo.list_models("resnet50.*", pretrained=True))
    with pytest.raises(UserError, match="pattern is a shell-style pattern or a list of them"):
        zoo.list_models({"vgg": 1})
    model = zoo.create_model("vgg11", num_classes=7, in_chans=None, input_size=32, width=0.25)
    assert model.classifier.out_features == 7 and model.features[0].in_channels == 3


def _imported_modules(result) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["--help"], ["list"], ["plugins"], ["list", "timm/*", "--kind", "arch"]])
def test_listing_does_not_import_torch(args):
    result = run_zoo(*args, python_flags=("-X", "importtime"))
    assert result.returncode == 0, result.stderr[-2000:]
    modules = _imported_modules(result)
    assert "zoo.cli" in modules  # the measurement works
    assert "torch" not in modules and "timm" not in modules


def test_cli_list_and_plugins():
    result = run_zoo("list", "*resnet*", "--json")
    rows = json.loads(result.stdout)
    names = {r["name"] for r in rows}
    assert {"resnet18", "resnet110", "timm/resnet18"} <= names and "vgg16" not in names
    fields = {r["name"]: r for r in json.loads(run_zoo("list", "--json", "--kind", "data").stdout)}
    assert (fields["cifar100"]["num_classes"], fields["fashion-mnist"]["channels"]) == (100, 1)
    vgg16 = json.loads(run_zoo("list", "vgg16", "--json").stdout)[0]
    assert vgg16["options"] == {"config": "D", "batch_norm": False} and vgg16["family"] == "vgg"
    models = run_zoo("list", "--kind", "model", "se-*").stdout.split()
    assert {"se-resnet", "se-resnet18", "se-resnet20", "se-vgg16"} <= set(models) and all(m.startswith("se-") for m in models)
    assert "se-timm/resnet18" in run_zoo("list", "--kind", "model", "se-timm/resnet1*").stdout.split()
    plugins = {p["name"]: p for p in json.loads(run_zoo("plugins", "--json").stdout)}
    assert plugins["vgg"]["status"] == "ok" and "vgg16" in plugins["vgg"]["provides"]["arch"]
    assert run_zoo("--version").stdout.strip() == f"zoo, version {zoo.__version__}"
    result = run_zoo("list", "nothing-like-this*")
    assert result.returncode == 2 and result.stderr.startswith("zoo: error: nothing matches")


def test_cli_survives_a_broken_plugin(plugin_dir):
    make_plugin_dist(plugin_dir, "zoo-broken", "broken_cli_plugin", "raise ImportError('missing dependency')",
                     entry_point="broken")
    env = {"PYTHONPATH": str(plugin_dir)}
    result = run_zoo("list", "vgg16", env=env)
    assert result.returncode == 0 and "vgg16" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "broken" in warnings[0] and "missing dependency" in warnings[0]
    plugins = {p["name"]: p for p in json.loads(run_zoo("plugins", "--json", env=env).stdout)}
    assert plugins["broken"]["status"] == "error" and plugins["vgg"]["status"] == "ok"
    for command in ("list", "plugins"):
        result = run_zoo(command, env={**env, "ZOO_STRICT_PLUGINS": "1"})
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("zoo: error: plugin 'broken'") and "missing dependency" in result.stderr


def test_importing_the_factories_does_not_hide_any_hook():
    # A plugin submodule named like a hook (zoo_optim/optimizers.py) once replaced the hook function.
    builtins = ("vgg", "resnet", "se", "timm", "datasets", "augment", "optim", "trainers")
    before = fresh_registry(installed=builtins)
    for kind in ("arch", "wrapper", "aug", "opt", "sched", "trainer", "data"):
        for spec in before.items(kind)[:3] + before.items(kind)[-3:]:
            spec.load()  # imports the plugin's submodules
    after = fresh_registry(installed=builtins)
    assert {n: p.provides for n, p in after.plugins.items()} == {n: p.provides for n, p in before.plugins.items()}


def test_plugins_cannot_spoil_stdout_nor_replace_a_built_in(plugin_dir):
    make_plugin_dist(plugin_dir, "zoo-noisy", "noisy_plugin", "print('hello from a plugin')\n" +
                     textwrap.dedent(TINY.format(name="noisynet")), entry_point="noisy")
    make_plugin_dist(plugin_dir, "zoo-impostor", "impostor_plugin", TINY.format(name="vgg16"), entry_point="vgg")
    env = {"PYTHONPATH": str(plugin_dir)}
    result = run_zoo("list", "--json", "--kind", "arch", env=env)
    names = {(r["name"], r["plugin"]) for r in json.loads(result.stdout)}  # valid JSON despite the print
    assert ("noisynet", "noisy") in names and ("vgg16", "vgg") in names
    assert "hello from a plugin" in result.stderr
    named_vgg = {p["distribution"]: p for p in json.loads(run_zoo("plugins", "--json", env=env).stdout)
                 if p["name"] == "vgg"}
    assert named_vgg["cnn-zoo"]["status"] == "ok" and named_vgg["cnn-zoo"]["provides"]["arch"]
    assert named_vgg["zoo-impostor"]["status"] == "error" and "already used by cnn-zoo" in named_vgg["zoo-impostor"]["errors"][0]


def test_a_factory_that_fails_names_its_plugin_and_item_in_one_line(plugin_dir):
    source = """
        from zoo import Architecture, hookimpl

        def build(num_classes=10, in_chans=3, input_size=32):
            raise RuntimeError("bug in the plugin")

        @hookimpl
        def architectures():
            return [Architecture("typonet", "typo_plugin_mod:bulid"), Architecture("buggynet", build)]
    """
    make_plugin_dist(plugin_dir, "zoo-typo", "typo_plugin_mod", source, entry_point="typo")
    env = {"PYTHONPATH": str(plugin_dir)}
    for name, message in (("typonet", "cannot import its factory 'typo_plugin_mod:bulid' (AttributeError"),
                          ("buggynet", "its factory raised (RuntimeError: bug in the plugin)")):
        result = run_zoo("info", name, env=env)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert f"plugin 'typo', architecture '{name}': {message}" in result.stderr


def test_a_plugin_with_a_built_in_name_breaks_no_default(plugin_dir, cifar_dir, tmp_path):
    source = """
        from zoo import Augmentation, Optimizer, Scheduler, Trainer, Dataset, hookimpl

        @hookimpl
        def augmentations():
            return [Augmentation("hflip", "os:getcwd"), Augmentation("crop", "os:getcwd")]

        @hookimpl
        def optimizers():
            return [Optimizer("sgd-nesterov", "os:getcwd")]
    """
    make_plugin_dist(plugin_dir, "zoo-twin", "twin_names_plugin", source, entry_point="twin")
    result = run_zoo("train", "vgg_bn", "--data-dir", str(cifar_dir), "--set", "layout=8,M", "--epochs", "1",
                     "--batch-size", "20", "--json", env={"PYTHONPATH": str(plugin_dir)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_defaults_are_declared_by_plugins_and_the_core_names_none(plugin_dir, cifar_dir, tmp_path):
    config = zoo.RunConfig()
    assert (config.data, config.augs, config.opt, config.sched) == (None, None, None, None)
    printed = json.loads(run_zoo("train", "resnet20", "--print-config").stdout)
    assert (printed["data"], printed["augs"], printed["opt"], printed["sched"]) == (
        "datasets:cifar10", ["augment:crop", "augment:hflip"], "optim:sgd-nesterov", "optim:cosine")
    source = """
        from zoo import Optimizer, hookimpl

        @hookimpl
        def optimizers():
            return [Optimizer("mine", "torch.optim:SGD", options={"momentum": 0.5}, default=True)]
    """
    make_plugin_dist(plugin_dir, "zoo-mine", "mine_plugin", source, entry_point="mine")
    tiny = ["vgg_bn", "--data-dir", str(cifar_dir), "--set", "layout=8,M", "--epochs", "1", "--batch-size", "20"]
    result = run_zoo("train", *tiny, env={"PYTHONPATH": str(plugin_dir)}, cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "optimizer uses the one a plugin declares default, and " in result.stderr
    assert "mine:mine" in result.stderr and "optim:sgd-nesterov" in result.stderr and "do; name one" in result.stderr
    result = run_zoo("train", *tiny, "--opt", "mine", "--json", env={"PYTHONPATH": str(plugin_dir)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_zoo("train", *tiny, env={"ZOO_DISABLE_PLUGINS": "optim"}, cwd=tmp_path)
    assert result.returncode == 2 and "and no installed plugin does; name one" in result.stderr


def test_zoo_plugins_shows_what_each_plugin_costs_to_load_and_names_a_slow_one(plugin_dir):
    make_plugin_dist(plugin_dir, "zoo-slow", "slow_plugin", textwrap.dedent(TINY.format(name="slownet")) + "import time\ntime.sleep(1.2)\n",
                     entry_point="slow")
    result = run_zoo("plugins", env={"PYTHONPATH": str(plugin_dir)})
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:] if line.strip()}
    assert "load" in result.stdout and int(rows["slow"][3].replace(",", "")) >= 1200
    assert "plugin 'slow' took 1.2 s to load, which every zoo command pays; disable it with ZOO_DISABLE_PLUGINS=slow" \
        in " ".join(result.stderr.split())
    listed = json.loads(run_zoo("plugins", "--json", env={"PYTHONPATH": str(plugin_dir)}).stdout)
    assert next(p for p in listed if p["name"] == "slow")["load_seconds"] >= 1.2


def test_a_summary_with_brackets_is_shown_as_written(plugin_dir):
    source = ("from zoo import Architecture, hookimpl\n@hookimpl\ndef architectures():\n"
              "    return [Architecture('bracketnet', 'torch.nn:Identity', '[bold]not bold[/bold], widths [0.5, 1]')]\n")
    make_plugin_dist(plugin_dir, "zoo-brackets", "bracket_plugin", source, entry_point="brackets")
    result = run_zoo("list", "bracket*", env={"PYTHONPATH": str(plugin_dir), "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "[bold]not bold[/bold], widths [0.5, 1]" in result.stdout
