"""Refuse model folders whose ``hyperparams.yaml`` would run foreign code.

Loading a HyperPyYAML file calls what its tags name: ``!apply:os.system
["..."]`` runs a shell command the moment the file is loaded, also by
``amser-sb push --dry-run`` (which only meant to validate). Before a model
folder is loaded (:func:`amser_sb.inference.classify.load_classifier`, hub
validation), :func:`check_hyperparams` reads the file's tags without
building anything and refuses every ``!new:`` / ``!name:`` / ``!apply:`` /
``!module:`` target outside ``ALLOWED_PREFIXES`` and ``ALLOWED_BUILTINS``,
and every ``!include:``. The opt-in for a file you trust is
``allow_any_yaml=True`` (``--allow_any_yaml`` on the command line).

Authors
 * amser-sb contributors
"""

import yaml

from amser_sb.core.errors import AmserUserError

#: Module prefixes an exported model's objects may come from (the
#: template ``hparams/inference.yaml`` uses amser_sb.lobes and
#: speechbrain.dataio / speechbrain.utils.parameter_transfer).
ALLOWED_PREFIXES = (
    "amser_sb.lobes.",
    "amser_sb.core.segments.",
    "speechbrain.dataio.",
    "speechbrain.lobes.",
    "speechbrain.nnet.",
    "speechbrain.processing.",
    "speechbrain.utils.parameter_transfer.",
    "torch.nn.",
)

#: Builtins a model file may call (no file, import or eval access).
ALLOWED_BUILTINS = frozenset({
    "getattr", "len", "int", "float", "str", "bool", "list", "tuple",
    "dict", "min", "max", "abs", "round", "sum",
})

_CALLING_TAGS = ("!new:", "!name:", "!apply:", "!module:")


class UntrustedYamlError(AmserUserError, ValueError):
    """A hyperparams file names code outside the allowed list."""


def _tags(node, found):
    """Collect every tag under a composed YAML node."""
    tag = getattr(node, "tag", "") or ""
    if tag.startswith("!"):
        found.append(tag)
    value = getattr(node, "value", None)
    if isinstance(value, list):
        for item in value:
            if isinstance(item, tuple):
                for part in item:
                    _tags(part, found)
            else:
                _tags(item, found)
    return found


def disallowed_targets(text):
    """The tags of a HyperPyYAML text that name code outside the list.

    Arguments
    ---------
    text : str
        HyperPyYAML content.

    Returns
    -------
    list of str
        E.g. ``["!apply:os.system"]``.

    Example
    -------
    >>> disallowed_targets("a: !new:amser_sb.lobes.AMResNet\\n"
    ...                    "b: !apply:getattr [!ref <a>, out_dim]\\n"
    ...                    "c: !apply:os.system [echo hi]\\n")
    ['!apply:os.system']
    """
    found = []
    for document in yaml.compose_all(text, Loader=yaml.SafeLoader):
        _tags(document, found)
    bad = []
    for tag in found:
        if tag.startswith("!include"):
            bad.append(tag)
            continue
        prefix = next((p for p in _CALLING_TAGS if tag.startswith(p)), None)
        if prefix is None:
            continue  # !ref, !copy, !tuple, !PLACEHOLDER
        target = tag[len(prefix):]
        if target in ALLOWED_BUILTINS:
            continue
        if any(target.startswith(p) for p in ALLOWED_PREFIXES):
            continue
        bad.append(tag)
    return sorted(set(bad), key=bad.index)


def check_hyperparams(path, allow_any_yaml=False):
    """Refuse ``path`` if it would run code outside the allowed list.

    Arguments
    ---------
    path : str
        A model folder's ``hyperparams.yaml``.
    allow_any_yaml : bool
        Skip the check (the user trusts this file).

    Raises
    ------
    UntrustedYamlError
        Naming the file, the targets and the opt-in.
    """
    if allow_any_yaml:
        return
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        bad = disallowed_targets(text)
    except yaml.YAMLError as err:
        raise UntrustedYamlError(
            f"{path} is not valid YAML ({' '.join(str(err).split())}); "
            "re-export the model"
        ) from err
    if bad:
        raise UntrustedYamlError(
            f"{path} would run code outside amser_sb.lobes / speechbrain / "
            f"torch.nn when loaded: {', '.join(bad)}. Loading it was "
            "refused; if you trust this file, pass --allow_any_yaml "
            "(allow_any_yaml=True)"
        )
