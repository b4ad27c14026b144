"""Command-line overrides checked against the types in the hparams file.

``--batch_size=abc`` used to pass every check, run the data preparation and
then crash deep in torch. ``check_override_types`` compares each override
with the value the hparams file gives that key, before anything runs:

- an integer in the file needs an integer (``--batch_size=8``);
- a float needs a number (``--lr=0.001``, ``--lr=1e-3``);
- a boolean needs ``True``/``False``;
- a list needs a list (``--prepare_sessions=[1,2]``), a mapping a mapping;
- ``null``, a string or a tagged value (``!ref``, ``!new:`` ...) in the
  file accept anything, and ``null`` is always accepted as an override.

Authors
 * amser-sb contributors
"""

import yaml


class _TagTolerantLoader(yaml.SafeLoader):
    """A YAML loader that reads every HyperPyYAML tag as "anything"."""


_ANY = object()


def _any_tag(loader, suffix, node):
    return _ANY


_TagTolerantLoader.add_multi_constructor("!", _any_tag)


def file_values(hparams_file):
    """The top-level values of a hparams file (tags read as "anything").

    Arguments
    ---------
    hparams_file : str
        HyperPyYAML file.

    Returns
    -------
    dict
        Key -> plain value; tagged values are a sentinel that accepts any
        override. Empty when the file is no YAML mapping (the loader then
        reports it).
    """
    try:
        with open(hparams_file, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_TagTolerantLoader)
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_number(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _is_int(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, str):
        try:
            int(value)
        except ValueError:
            return False
        return True
    return False


# (test, what the file's value is, how to write one)
_RULES = (
    (bool, lambda v: isinstance(v, bool), "a boolean", "True or False"),
    (int, _is_int, "an integer", "an integer"),
    (float, _is_number, "a number", "a number"),
    (list, lambda v: isinstance(v, (list, tuple)), "a list", "a list"),
    (dict, lambda v: isinstance(v, dict), "a mapping", "a mapping"),
)


def _shown(default):
    """The file's value written as an override."""
    try:
        text = yaml.safe_dump(default, default_flow_style=True).strip()
    except yaml.YAMLError:  # holds tagged values
        return "{...}" if isinstance(default, dict) else "[...]"
    return text.removesuffix("...").strip()


def override_type_problem(key, value, default, source="the hparams file"):
    """Why ``value`` cannot replace the file's ``default``, or None.

    Arguments
    ---------
    key : str
        The hparam.
    value : object
        The override, as YAML read it.
    default : object
        The file's value.
    source : str
        The file, for the message.

    Returns
    -------
    str or None

    Example
    -------
    >>> override_type_problem("batch_size", "abc", 8)
    '--batch_size=abc: batch_size is an integer (8 in the hparams file); pass an integer, e.g. --batch_size=8'
    >>> override_type_problem("lr", "1e-3", 0.001) is None
    True
    >>> override_type_problem("data_folder", 3, "/data") is None
    True
    """
    if value is None or default is None or default is _ANY:
        return None
    for kind, accepts, what, how in _RULES:
        if isinstance(default, kind):
            if accepts(value):
                return None
            shown = _shown(default)
            return (
                f"--{key}={value}: {key} is {what} ({shown} in {source}); "
                f"pass {how}, e.g. --{key}={shown}"
            )
    return None  # strings and anything else accept any override


def check_override_types(hparams_file, overrides):
    """Every override's problem with the file's types, one line each.

    Arguments
    ---------
    hparams_file : str
        HyperPyYAML file.
    overrides : dict
        Key -> value (as YAML read the command line).

    Returns
    -------
    list of str
        Empty when all fit.
    """
    defaults = file_values(hparams_file)
    problems = []
    for key, value in (overrides or {}).items():
        if key not in defaults:
            continue  # unknown keys are reported by the loader
        problem = override_type_problem(
            key, value, defaults[key], source=hparams_file
        )
        if problem is not None:
            problems.append(problem)
    return problems
