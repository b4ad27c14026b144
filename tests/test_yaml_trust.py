"""Model folders may not run foreign code; torch.load is weights-only."""

import ast
import os

import pytest

from amser_sb.config.yaml_trust import disallowed_targets

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "amser_sb")
TEMPLATE = os.path.join(os.path.dirname(__file__), "..", "amser_sb",
                        "inference", "inference.yaml")


def test_template_is_allowed():
    assert disallowed_targets(open(TEMPLATE).read()) == []


@pytest.mark.parametrize("text", [
    "x: !apply:os.system [ls]",
    "x: !new:subprocess.Popen [[ls]]",
    "x: !name:builtins.eval",
    "x: !apply:eval ['1']",
    "x: !module:os",
    "x: !include:other.yaml",
    "x: !apply:speechbrain.utils.superpowers.run_shell [ls]",
    "x: !apply:torch.hub.load [a, b]",
    "n:\n  deep: [1, {k: !apply:os.system [ls]}]",
])
def test_code_running_tags_are_found(text):
    assert disallowed_targets(text)


def test_every_torch_load_is_weights_only():
    for root, _dirs, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            tree = ast.parse(open(path).read())
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call)
                        and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "load"
                        and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "torch"):
                    kwargs = {k.arg: k.value for k in node.keywords}
                    value = kwargs.get("weights_only")
                    assert isinstance(value, ast.Constant) and value.value \
                        is True, f"{path}:{node.lineno}"


# issue 17, row 1: targets are resolved as HyperPyYAML resolves them and the
# resolved object is checked; no attribute walk, no other code-running tag.
@pytest.mark.parametrize("text", [
    "x: !apply:speechbrain.dataio.dataio.os.system [ls]",
    "x: !name:speechbrain.dataio.dataio.os.system",
    "x: !apply:torch.nn.modules.module.torch.serialization.os.system [ls]",
    "x: !apply:torch.nn.functional.torch.load [a]",
    "x: !new:amser_sb.lobes.AMSER.__init__.__globals__",
    "x: !apply:speechbrain.dataio.dataio.load_pickle [model.pkl]",
    "x: !apply:amser_sb.lobes.build_random_wav2vec2 [/tmp/x]",
    "x: !name:builtins.eval",
    "x: !name:eval",
    "x: !apply:max [[ls], {key: 1}]",
    "x: !module:amser_sb.lobes",
    "x: !module:speechbrain",
    "x: !!python/object/apply:os.system [ls]",
    "x: !!python/name:os.system",
    "x: !applyref:os.system [ls]",
    "x: !<!apply:os.system> [ls]",
    "%TAG !e! !apply:os.\n---\nx: !e!system [ls]",
    "x: !apply:getattr [!new:amser_sb.lobes.Passthrough , __init__]",
    "y: __globals__\nx: !apply:getattr [!new:amser_sb.lobes.Passthrough , "
    "!ref <y>]",
    "x: !nosuchtag [1]",
])
def test_bypasses_are_refused(text):
    from amser_sb.config.yaml_trust import UntrustedYamlError, \
        check_hyperparams_text

    assert disallowed_targets(text)
    with pytest.raises(UntrustedYamlError, match="allow_any_yaml"):
        check_hyperparams_text(text, "m/hyperparams.yaml")


def test_the_bypass_would_run_without_the_check(tmp_path):
    """The tags above really run code when HyperPyYAML loads them."""
    from hyperpyyaml import load_hyperpyyaml

    marker = tmp_path / "ran"
    load_hyperpyyaml(
        f"x: !apply:speechbrain.dataio.dataio.os.system [touch {marker}]")
    assert marker.exists()
    assert disallowed_targets(
        f"x: !apply:speechbrain.dataio.dataio.os.system [touch {marker}]"
    ) == ["!apply:speechbrain.dataio.dataio.os.system"]


@pytest.mark.parametrize("text", [
    "x: !new:torch.nn.Linear [1, 2]",
    "x: !new:amser_sb.lobes.mask_resnet.AMResNet\n  channels: 8",
    "x: !name:torch.nn.ReLU",
    "a: !new:amser_sb.lobes.Passthrough\nx: !apply:getattr [!ref <a>, "
    "training]",
    "x: !apply:speechbrain.dataio.encoder.CategoricalEncoder.expect_len "
    "[!new:speechbrain.dataio.encoder.CategoricalEncoder , 2]",
    "a: 2\nx: !ref <a> + 1\ny: !copy <a>\nz: (1, 2)",
])
def test_what_models_use_is_allowed(text):
    from amser_sb.config.yaml_trust import check_hyperparams_text

    check_hyperparams_text(text, "m/hyperparams.yaml")


def test_hub_model_is_checked_before_loading(tmp_path, monkeypatch):
    """A Hub id: its hyperparams.yaml is fetched alone and checked first."""
    from amser_sb.config.yaml_trust import UntrustedYamlError
    from amser_sb.inference import classify, model_checks

    bad = tmp_path / "hyperparams.yaml"
    bad.write_text("x: !apply:speechbrain.dataio.dataio.os.system [ls]\n")
    fetched = []
    monkeypatch.setattr(model_checks, "fetch_hub_hyperparams",
                        lambda source, savedir: fetched.append(source)
                        or str(bad))

    def no_load(*args, **kwargs):
        raise AssertionError("loaded before the check")

    from speechbrain.inference.classifiers import EncoderClassifier

    monkeypatch.setattr(EncoderClassifier, "from_hparams", no_load)
    with pytest.raises(UntrustedYamlError, match="posix.system"):
        classify.load_classifier("someone/model",
                                 savedir=str(tmp_path / "sd"))
    assert fetched == ["someone/model"]
