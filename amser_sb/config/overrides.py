"""Command-line hparam overrides: parsing and deprecated names.

SpeechBrain's ``parse_arguments`` hands the overrides over as a YAML
string; ``as_dict`` reads it, and ``rename_deprecated`` maps names of
earlier releases onto today's (``wav2vec2_hub`` -> ``ssl_hub``, ...), with a
warning, so that old commands keep working.

Authors
 * amser-sb contributors
"""

import logging

import yaml
from amser_sb.core.errors import AmserUserError

logger = logging.getLogger(__name__)

#: Old hparam name -> current one (the encoder branch is any encoder now).
DEPRECATED_NAMES = {
    "wav2vec2_hub": "ssl_hub",
    "freeze_wav2vec2": "freeze_ssl",
    "lr_wav2vec2": "lr_ssl",
    "wav2vec2_layer_weights": "ssl_layer_weights",
}


class OverrideError(AmserUserError, ValueError):
    """Overrides that cannot be read, with the fix in the text."""


def as_dict(overrides):
    """Overrides as a dict, from a dict or a YAML string.

    Arguments
    ---------
    overrides : str, dict or None

    Returns
    -------
    dict

    Example
    -------
    >>> as_dict("lr: 0.01\\nfold: 2")
    {'lr': 0.01, 'fold': 2}
    >>> as_dict("lr: 0.01\\nlr: 0.1")
    Traceback (most recent call last):
    ...
    amser_sb.config.overrides.OverrideError: option --lr is given 2 times \
(0.01, 0.1): give each option once
    """
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    try:
        _refuse_repeated(overrides)
        data = yaml.safe_load(overrides)
    except yaml.YAMLError as err:
        raise OverrideError(
            f"the command-line overrides are not valid YAML ({err}): write "
            "them as --key=value"
        ) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OverrideError(
            f"the command-line overrides must be key: value pairs, got "
            f"{overrides!r}"
        )
    return data


def _refuse_repeated(text):
    """Raise for an option given twice (``--lr=1 ... --lr=2``): the later
    one would silently win, or the file would be blamed for it."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        return
    seen = {}
    for key, value in node.value:
        seen.setdefault(key.value, []).append(
            getattr(value, "value", "") if isinstance(value, yaml.ScalarNode)
            else "...")
    repeated = {k: v for k, v in seen.items() if len(v) > 1}
    if repeated:
        raise OverrideError("; ".join(
            f"option --{key} is given {len(values)} times "
            f"({', '.join(map(str, values))})"
            for key, values in repeated.items()
        ) + ": give each option once")


def rename_deprecated(overrides):
    """Map deprecated hparam names onto the current ones (with a warning).

    Arguments
    ---------
    overrides : str, dict or None

    Returns
    -------
    dict

    Example
    -------
    >>> rename_deprecated({"wav2vec2_hub": "/models/w2v", "lr": 0.1})
    {'ssl_hub': '/models/w2v', 'lr': 0.1}
    """
    data = as_dict(overrides)
    out = {}
    for key, value in data.items():
        new = DEPRECATED_NAMES.get(key)
        if new is None:
            out[key] = value
            continue
        if new in data:
            raise OverrideError(
                f"both --{key} (deprecated) and --{new} are given: keep "
                f"--{new}"
            )
        logger.warning("--%s is deprecated: use --%s", key, new)
        out[new] = value
    return out
