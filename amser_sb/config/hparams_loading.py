"""Loading a recipe's hparams, with every common mistake a clear error.

:func:`load_hparams` is the one loader of recipe hyperparameters, used by
the recipe's ``train.py``, :mod:`amser_sb.training.cv` (``amser-sb cv``) and the
demo: deprecated override names are renamed
(:mod:`amser_sb.config.overrides`), override values are checked against the
types of the file's values before anything is built
(:mod:`amser_sb.config.override_types`), an unknown override, an unset or
missing ``data_folder``, an impossible ``--fold``/``--protocol``
(:mod:`amser_sb.config.fold_check`) and an encoder checkpoint that cannot be
loaded (``ssl_hub``) each become a :class:`RecipeError` naming the file
and the fix.

Authors
 * amser-sb contributors 2026
"""

import os
import re
import traceback

from hyperpyyaml import load_hyperpyyaml, resolve_references

from amser_sb.core.errors import AmserUserError
from amser_sb.config.fold_check import fold_problem
from amser_sb.config.override_types import check_override_types
from amser_sb.config.overrides import OverrideError, rename_deprecated

__all__ = ["RecipeError", "load_hparams"]


class RecipeError(AmserUserError, ValueError):
    """A recipe configuration that cannot run, with the fix in the text."""


def _hparam_text(hparams_file, overrides, key):
    """The resolved text of one top-level key, without building objects."""
    try:
        with open(hparams_file) as handle:
            resolved = resolve_references(handle, overrides).getvalue()
    except Exception:  # only used to improve an error message
        return None
    match = re.search(rf"^{key}:\s*(.*)$", resolved, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def _from_hub_loading(err):
    """Whether an exception was raised while loading a Hugging Face model."""
    frames = traceback.extract_tb(err.__traceback__)
    return any(
        "transformers" in frame.filename or "huggingface" in frame.filename
        for frame in frames
    )


def _hub_message(hub, err):
    """The error text for an encoder checkpoint that cannot be loaded."""
    text = f"cannot load ssl_hub={hub!r}: {err}\n"
    path_like = hub is not None and (
        os.path.isabs(hub) or hub.startswith((".", "~"))
    )
    if path_like and not os.path.isdir(os.path.expanduser(hub)):
        return text + (
            f"The folder {hub} does not exist. Pass --ssl_hub=<local "
            "folder> holding config.json, the weights and "
            "preprocessor_config.json, or a Hugging Face hub id."
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "")
    return text + (
        ("HF_HUB_OFFLINE is set, so nothing can be downloaded. " if offline
         else "The Hub could not be reached or has no such model. ")
        + "Pass --ssl_hub=<local folder> holding config.json, the "
        "weights and preprocessor_config.json (e.g. one written by "
        "`amser-sb fetch-encoder whisper-base DIR`, or downloaded beforehand "
        "with huggingface_hub.snapshot_download), or a hub id that is "
        "already in the local cache."
    )


def _damaged_weights_message(hub, err):
    """The error text for an encoder whose weights file cannot be read."""
    folder = os.path.expanduser(hub or "")
    files = sorted(
        name for name in (os.listdir(folder) if os.path.isdir(folder) else [])
        if name.endswith((".safetensors", ".bin"))
    )
    where = (", ".join(os.path.join(folder, f) for f in files)
             if files else "its weights file")
    return (
        f"cannot load ssl_hub={hub!r}: {where} is damaged or truncated "
        f"({' '.join(str(err).split())}); fetch the encoder again (e.g. "
        "`amser-sb fetch-encoder whisper-base DIR` into a new DIR, or "
        "huggingface_hub.snapshot_download) and pass that folder"
    )


def load_hparams(hparams_file, overrides=None, check_data=True):
    """Loads recipe hparams, turning common mistakes into clear errors.

    Arguments
    ---------
    hparams_file : str
        HyperPyYAML file, e.g. ``hparams/am_resnet_w2v2.yaml``.
    overrides : str or dict, optional
        ``key: value`` overrides (SpeechBrain's ``parse_arguments`` gives a
        YAML string).
    check_data : bool
        Require ``data_folder`` to exist (unless ``skip_prep``).

    Returns
    -------
    dict
        The loaded hparams (objects built).

    Raises
    ------
    RecipeError
        For a missing file, an unknown override, an unset ``data_folder``,
        a missing data folder, or a ``ssl_hub`` that cannot be loaded.

    Example
    -------
    >>> load_hparams("no/such/hparams.yaml")
    Traceback (most recent call last):
     ...
    amser_sb.config.hparams_loading.RecipeError: hparams file no/such/hparams.yaml \
does not exist
    """
    if not os.path.isfile(hparams_file):
        raise RecipeError(f"hparams file {hparams_file} does not exist")
    try:
        overrides = rename_deprecated(overrides)
    except OverrideError as err:
        raise RecipeError(str(err)) from err
    wrong_types = check_override_types(hparams_file, overrides)
    if wrong_types:
        raise RecipeError("; ".join(wrong_types))
    try:
        with open(hparams_file) as handle:
            hparams = load_hyperpyyaml(handle, overrides)
    except KeyError as err:
        text = str(err.args[0]) if err.args else str(err)
        match = re.match(r"Override '(.+?)' not found", text)
        if match:
            with open(hparams_file) as handle:
                known = re.findall(r"^(\w+):", handle.read(), re.MULTILINE)
            raise RecipeError(
                f"unknown hparam override --{match.group(1)}: "
                f"{hparams_file} has no such key (check the spelling). "
                "Its keys: "
                f"{', '.join(k for k in known if not k.startswith('__'))}"
            ) from err
        raise
    except ValueError as err:
        from amser_sb.lobes.encoder import EncoderOptionError

        if isinstance(err, EncoderOptionError):
            raise RecipeError(str(err)) from err
        match = re.match(r"'(\w+)' is a !PLACEHOLDER", str(err))
        if match:
            raise RecipeError(
                f"{match.group(1)} is not set: pass "
                f"--{match.group(1)}=<path> (for data_folder, the "
                "IEMOCAP_full_release folder holding Session1..Session5)"
            ) from err
        raise
    except OSError as err:
        if not _from_hub_loading(err):
            raise
        hub = _hparam_text(hparams_file, overrides, "ssl_hub")
        raise RecipeError(_hub_message(hub, err)) from err
    except Exception as err:
        from amser_sb.config.user_errors import (
            refused_tag,
            refused_tag_message,
        )

        if refused_tag(err):  # a YAML error, but not a syntax error
            raise RecipeError(
                refused_tag_message(refused_tag(err), hparams_file)
            ) from err
        if type(err).__name__ != "SafetensorError":  # safetensors' one type
            raise
        hub = _hparam_text(hparams_file, overrides, "ssl_hub")
        raise RecipeError(_damaged_weights_message(hub, err)) from err
    problem = fold_problem(hparams)
    if problem is not None:
        raise RecipeError(problem)
    if check_data and not hparams.get("skip_prep", False):
        folder = hparams["data_folder"]
        if not os.path.isdir(folder):
            raise RecipeError(
                f"data_folder {folder} does not exist: pass "
                "--data_folder=<IEMOCAP_full_release folder> (holding "
                "Session1..Session5)"
            )
    return hparams
