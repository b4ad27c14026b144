"""A fold's data, fingerprinted, so that a resumed run trains on it only.

An interrupted fold resumes from its latest checkpoint. If the corpus
changed in between (files added, removed or relabelled), the data
preparation rebuilds the manifests and the run would continue a model
trained on the old data without a word. :func:`check_fold_data` records
the sha256 of the fold's manifests (``train/valid/test.csv``, audio paths
reduced to file names, and ``label_encoder.txt``) in ``<output_folder>/data_digest.json`` and, when
checkpoints exist, refuses to resume on other data: the message names
the changed files and asks for a new ``--output_root``.

Authors
 * amser-sb contributors
"""

import csv
import glob
import hashlib
import json
import logging
import os

from speechbrain.utils.distributed import if_main_process

from amser_sb.core.errors import AmserUserError

logger = logging.getLogger(__name__)

#: The fingerprint of the data a fold's checkpoints were trained on.
DIGEST_FILE = "data_digest.json"


class DataChangedError(AmserUserError, RuntimeError):
    """A fold's data changed since its checkpoints were written."""


def _sha256(path):
    """sha256 of a file; of a CSV manifest, of its rows with each ``wav``
    reduced to its file name (a moved corpus holds the same data)."""
    h = hashlib.sha256()
    if not path.endswith(".csv"):
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if "wav" in row:
                row["wav"] = os.path.basename(row["wav"] or "")
            h.update(json.dumps(row, sort_keys=True).encode("utf-8"))
    return h.hexdigest()


def fold_data_files(hparams):
    """The manifests a fold trains and tests on.

    Arguments
    ---------
    hparams : dict
        Recipe hparams (``manifest_folder``, ``protocol``, ``fold``).

    Returns
    -------
    dict
        Name -> path (only files that exist).
    """
    manifests = hparams["manifest_folder"]
    fold = os.path.join(manifests, str(hparams["protocol"]),
                        f"fold_{hparams['fold']}")
    files = {"label_encoder.txt": os.path.join(manifests,
                                               "label_encoder.txt")}
    for stage in ("train", "valid", "test"):
        files[f"{stage}.csv"] = os.path.join(fold, f"{stage}.csv")
    return {name: path for name, path in files.items()
            if os.path.isfile(path)}


def fold_data_digest(hparams):
    """sha256 of each manifest of the fold.

    Arguments
    ---------
    hparams : dict
        As :func:`fold_data_files`.

    Returns
    -------
    dict
        Name -> hex digest.
    """
    return {name: _sha256(path)
            for name, path in sorted(fold_data_files(hparams).items())}


def _has_checkpoints(save_folder):
    return bool(glob.glob(os.path.join(str(save_folder), "CKPT*")))


def check_fold_data(hparams):
    """Refuse to resume a fold's checkpoints on other data; record it.

    Arguments
    ---------
    hparams : dict
        Recipe hparams (``output_folder``, ``save_folder`` and those of
        :func:`fold_data_files`).

    Raises
    ------
    DataChangedError
        Naming the changed manifests, the folder and the fix.
    """
    output = str(hparams["output_folder"])
    path = os.path.join(output, DIGEST_FILE)
    current = fold_data_digest(hparams)
    resumed = _has_checkpoints(hparams["save_folder"])
    try:
        with open(path, encoding="utf-8") as handle:
            recorded = json.load(handle)
    except (OSError, ValueError):
        recorded = None
    if resumed and recorded is not None and recorded != current:
        changed = sorted(
            name for name in set(recorded) | set(current)
            if recorded.get(name) != current.get(name)
        )
        raise DataChangedError(
            f"the data of {output} changed since its checkpoints were "
            f"written ({', '.join(changed)} differ: the corpus or the "
            "preparation options changed); resuming would continue a model "
            "trained on the old data. Pass a new --output_root (or delete "
            f"{output}) to train on the new data"
        )
    if resumed and recorded is None:
        logger.warning(
            "%s has checkpoints but no %s (an older run): whether its data "
            "changed cannot be told; recording the current data",
            output, DIGEST_FILE,
        )
    if recorded != current and if_main_process():
        os.makedirs(output, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(current, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
