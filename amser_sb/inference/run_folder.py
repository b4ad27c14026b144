"""Reading a finished training run: its hparams and its best checkpoint.

A fold folder (written by ``train.py`` or ``amser-sb cv``) holds the run's
``hyperparams.yaml`` (SpeechBrain's copy, overrides applied) and ``save/``
(checkpoints with their validation scores). Export reads runs through
this module; nothing here imports training code.

Authors
 * amser-sb contributors
"""

import glob
import logging
import os

import yaml

from amser_sb.core.checkpoints import find_best_checkpoint, selection_key
from amser_sb.core.errors import AmserUserError

logger = logging.getLogger(__name__)


class RunFolderError(AmserUserError, RuntimeError):
    """A run folder that cannot be read (missing, or nothing trained)."""


class _TagIgnoringLoader(yaml.SafeLoader):
    """Reads a saved HyperPyYAML file as plain data (tags become None)."""


def _ignore_tag(loader, suffix, node):
    return None


_TagIgnoringLoader.add_multi_constructor("!", _ignore_tag)
_TagIgnoringLoader.add_multi_constructor("tag:", _ignore_tag)


def read_run_hparams(path):
    """Plain values of a training run's saved ``hyperparams.yaml``.

    Arguments
    ---------
    path : str
        ``<fold folder>/hyperparams.yaml`` (SpeechBrain saves it with the
        command-line overrides applied).

    Returns
    -------
    dict
        Top-level keys; objects built with ``!new:`` etc. read as None.
    """
    with open(path, encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_TagIgnoringLoader)
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} is not a hyperparameter file")
    return data


def _best_checkpoint(fold_folder):
    """``(checkpoint folder, meta)`` the run tested (its
    ``model_selection``: best valid UA, or the last epoch), or None."""
    path = os.path.join(fold_folder, "hyperparams.yaml")
    chosen = read_run_hparams(path).get("model_selection") or "best_valid"
    try:
        best = find_best_checkpoint(os.path.join(fold_folder, "save"),
                                    key=selection_key(chosen))
    except FileNotFoundError:
        return None
    return str(best.path), dict(best.meta)


def find_best_fold(experiment):
    """The fold folder and checkpoint to export from an experiment folder.

    Arguments
    ---------
    experiment : str
        A fold folder (holding ``hyperparams.yaml`` and ``save/``) or any
        folder above several of them.

    Returns
    -------
    (str, str, dict)
        Fold folder, checkpoint folder, checkpoint meta (``UA``, ``WA``,
        ``epoch``).
    """
    if not os.path.isdir(experiment):
        raise RunFolderError(f"experiment folder {experiment} does not exist")
    folds = sorted(
        {
            os.path.dirname(save)
            for save in glob.glob(
                os.path.join(experiment, "**", "save"), recursive=True
            )
            if os.path.isfile(
                os.path.join(os.path.dirname(save), "hyperparams.yaml")
            )
        }
    )
    found = []
    for fold in folds:
        best = _best_checkpoint(fold)
        if best is not None:
            found.append((best[1]["UA"], fold, best[0], best[1]))
    if not found:
        raise RunFolderError(
            f"no checkpoint with a validation UA under {experiment}: train "
            "first (python train.py hparams/am_resnet_w2v2.yaml ...)"
        )
    found.sort(key=lambda item: (-float(item[0]), item[1]))
    _, fold, ckpt, meta = found[0]
    if len(found) > 1:
        logger.info(
            "%d folds under %s; exporting %s (best valid UA %.2f)",
            len(found), experiment, fold, float(meta["UA"]),
        )
    return fold, ckpt, meta


