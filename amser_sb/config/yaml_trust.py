"""Refuse model folders whose ``hyperparams.yaml`` would run foreign code.

Loading a HyperPyYAML file calls what its tags name: ``!apply:os.system
["..."]`` runs a shell command the moment the file is loaded, also by
``amser-sb push --dry-run`` (which only meant to validate). Before a model
folder is loaded (:func:`amser_sb.inference.classify.load_classifier`, hub
validation, the export's own check of the folder it wrote),
:func:`check_hyperparams` reads the file's tags without building anything
and refuses every tag that could run code other than the allowed:

* each ``!new:`` / ``!name:`` / ``!apply:`` target is resolved exactly as
  HyperPyYAML resolves it (``pydoc.locate``; only targets under
  ``amser_sb.``, ``speechbrain.`` or ``torch.``, or a bare builtin name, are
  ever imported) and the *resolved object* is checked: a class defined in
  one of :data:`ALLOWED_CLASS_MODULES`, or one of the callables of
  :data:`ALLOWED_CALLABLES` (compared by identity). An attribute walk
  from an allowed module to something else
  (``speechbrain.dataio.dataio.os.system``) resolves to an object defined
  elsewhere (``posix.system``) and is refused;
* ``!apply:getattr`` only with a plain attribute name (no ``_`` prefix,
  no reference);
* ``!module:``, ``!applyref:``, ``!include:``, PyYAML's
  ``!!python/...`` tags and any tag HyperPyYAML does not define are
  refused; ``!ref``, ``!copy``, ``!tuple`` and YAML's plain data tags are
  allowed.

The check runs on the file as written and again on it with its references
resolved (what the PyYAML loader finally builds). The opt-in for a file
you trust is ``allow_any_yaml=True`` (``--allow_any_yaml`` on the command
line).

Authors
 * amser-sb contributors
"""

import inspect
import pydoc
import re

import yaml

from amser_sb.core.errors import AmserUserError

#: Modules whose classes a model file may build (``!new:``) or name
#: (``!name:``): the class's own ``__module__`` must be one of these or
#: below one of them.
ALLOWED_CLASS_MODULES = (
    "amser_sb.lobes",
    "speechbrain.nnet",
    "speechbrain.processing",
    "torch.nn.modules",
)

#: Callables (classes or functions) a model file may use beyond those
#: classes, compared by identity with what the tag resolves to.
ALLOWED_CALLABLES = (
    "amser_sb.lobes.encoder_registry.encoder_from_options",
    "speechbrain.dataio.encoder.CategoricalEncoder",
    "speechbrain.dataio.encoder.CategoricalEncoder.expect_len",
    "speechbrain.utils.parameter_transfer.Pretrainer",
)

#: Builtins a model file may call (no file, import, eval or callback
#: access; ``getattr`` only with a plain public attribute name).
ALLOWED_BUILTINS = frozenset({
    "getattr", "len", "int", "float", "str", "bool", "list", "tuple",
    "abs", "round",
})

#: Top-level packages a tag target may be imported from while it is
#: resolved (anything else is refused without importing it).
_IMPORTABLE_ROOTS = ("amser_sb", "speechbrain", "torch")

#: Tags that build or call what they name.
_CALLING_TAGS = ("!new:", "!name:", "!apply:")

#: Tags that never run code.
_DATA_TAGS = frozenset({"!ref", "!copy", "!tuple", "!PLACEHOLDER"})
_YAML_DATA_TAGS = frozenset(
    "tag:yaml.org,2002:" + name for name in (
        "str", "int", "float", "bool", "null", "seq", "map", "timestamp",
        "binary", "set", "omap", "pairs", "merge", "value",
    )
)

_PUBLIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class UntrustedYamlError(AmserUserError, ValueError):
    """A hyperparams file names code outside the allowed list."""


def _tag_of(node):
    tag = getattr(node, "tag", None)
    return str(getattr(tag, "value", tag) or "")


def _nodes(root):
    """Every node under a composed YAML node (PyYAML or ruamel), once."""
    found, seen, todo = [], set(), [root]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        found.append(node)
        value = getattr(node, "value", None)
        if isinstance(value, list):
            for item in value:
                todo.extend(item if isinstance(item, tuple) else (item,))
    return found


def _compose_all(text):
    """The documents of ``text`` composed by PyYAML and by ruamel.yaml
    (HyperPyYAML reads with both: a tag either parser sees is checked)."""
    from ruamel.yaml import YAML

    docs = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    docs += list(YAML(typ="rt").compose_all(text))
    return docs


def _allowed_objects():
    objects = []
    for name in ALLOWED_CALLABLES:
        obj = pydoc.locate(name)
        if obj is not None:
            objects.append(obj)
    return objects


def _in_modules(obj, modules):
    module = getattr(obj, "__module__", None) or ""
    return any(module == m or module.startswith(m + ".") for m in modules)


def _target_problem(tag, target):
    """Why the target of a calling tag is refused, or None if allowed."""
    if target in ALLOWED_BUILTINS:
        return None if tag != "!new:" else "a builtin function, not a class"
    if "." not in target:
        return "not an allowed builtin"
    if target.split(".")[0] not in _IMPORTABLE_ROOTS:
        return "outside amser_sb / speechbrain / torch"
    try:
        obj = pydoc.locate(target)
    except Exception as err:  # an import error of the named module
        return f"cannot be resolved ({type(err).__name__})"
    if obj is None:
        return "does not exist"
    if any(obj is allowed for allowed in _allowed_objects()):
        return None
    if inspect.isclass(obj) and _in_modules(obj, ALLOWED_CLASS_MODULES):
        return None
    where = getattr(obj, "__module__", None) or type(obj).__name__
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "")
    return (f"resolves to {where}.{name}".rstrip(".")
            + ", not an allowed class or callable")


def _getattr_problem(node):
    """``!apply:getattr`` must name a plain public attribute."""
    items = getattr(node, "value", None)
    if not isinstance(items, list) or len(items) not in (2, 3):
        return "getattr needs [object, attribute name]"
    name = items[1]
    if not (isinstance(getattr(name, "value", None), str)
            and _tag_of(name) in ("tag:yaml.org,2002:str", "")
            and _PUBLIC_NAME.fullmatch(name.value)):
        return "getattr may only read a plain public attribute name"
    return None


def yaml_problems(text):
    """The tags of a HyperPyYAML text that could run foreign code.

    Arguments
    ---------
    text : str
        HyperPyYAML content.

    Returns
    -------
    list of str
        ``"<tag>: <why>"``, e.g.
        ``"!apply:speechbrain.dataio.dataio.os.system: resolves to
        posix.system"``; empty when the text is allowed.

    Raises
    ------
    yaml.YAMLError
        The text is not YAML.

    Example
    -------
    >>> yaml_problems("a: !new:amser_sb.lobes.Passthrough\\n"
    ...               "b: !apply:getattr [!ref <a>, training]\\n"
    ...               "c: !apply:os.system [echo hi]\\n")
    ['!apply:os.system: outside amser_sb / speechbrain / torch']
    """
    bad = []
    for document in _compose_all(text):
        for node in _nodes(document):
            tag = _tag_of(node)
            if not tag or tag in _DATA_TAGS or tag in _YAML_DATA_TAGS:
                continue
            prefix = next((p for p in _CALLING_TAGS if tag.startswith(p)),
                          None)
            if prefix is None:
                why = ("may run code" if tag.startswith(
                    ("!applyref:", "!module:", "!include:", "tag:yaml.org"))
                    else "not a HyperPyYAML data tag")
                bad.append(f"{tag}: {why}")
                continue
            target = tag[len(prefix):]
            why = _target_problem(prefix, target)
            if why is None and target == "getattr":
                why = _getattr_problem(node)
            if why is not None:
                bad.append(f"{tag}: {why}")
    return sorted(set(bad), key=bad.index)


def disallowed_targets(text):
    """The refused tags of a HyperPyYAML text (without the reasons).

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
    return [problem.split(": ")[0] for problem in yaml_problems(text)]


def _resolved_text(text):
    """``text`` with its ``!ref``/``!copy`` resolved (HyperPyYAML's first
    pass; only called on a text without ``!applyref``/``!include``)."""
    from hyperpyyaml import resolve_references

    return resolve_references(text).getvalue()


def check_hyperparams_text(text, where, allow_any_yaml=False):
    """Refuse a HyperPyYAML text that would run code outside the list.

    Arguments
    ---------
    text : str
        The file's content.
    where : str
        Its path, for the message.
    allow_any_yaml : bool
        Skip the check (the user trusts this file).

    Raises
    ------
    UntrustedYamlError
        Naming the file, the refused tags and the opt-in.
    """
    if allow_any_yaml:
        return
    try:
        bad = yaml_problems(text)
        if not bad:
            bad = yaml_problems(_resolved_text(text))
    except Exception as err:  # yaml / ruamel parse errors, bad !ref
        raise UntrustedYamlError(
            f"{where} cannot be read as HyperPyYAML "
            f"({' '.join(str(err).split())}); re-export the model"
        ) from err
    if bad:
        raise UntrustedYamlError(
            f"{where} would run code outside the allowed list "
            f"(amser_sb.lobes, speechbrain.nnet/processing, torch.nn "
            f"classes, {', '.join(ALLOWED_CALLABLES)}) when loaded: "
            f"{'; '.join(bad)}. Loading it was refused; if you trust this "
            "file, pass --allow_any_yaml (allow_any_yaml=True)"
        )


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
    check_hyperparams_text(text, path)
