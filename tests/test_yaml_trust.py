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
