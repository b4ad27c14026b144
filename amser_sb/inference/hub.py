"""Publish an exported model folder to the Hugging Face Hub.

Nothing is uploaded unless ``push_model`` is called with ``dry_run=False``
(the ``amser-sb push`` command without ``--dry-run``). The token comes from
the usual Hugging Face places (``HF_TOKEN``, ``huggingface-cli login``).
Before anything is uploaded the folder is validated: the files a model
folder needs are present and the model loads offline with SpeechBrain's
plain ``EncoderClassifier.from_hparams``.

Authors
 * amser-sb contributors
"""

import logging
import os
import tempfile

from amser_sb.inference.classify import MODEL_FILES as REQUIRED_FILES
from amser_sb.core.errors import AmserUserError

logger = logging.getLogger(__name__)

#: Files never uploaded (caches, editor and OS junk).
IGNORE_PATTERNS = ["*.pyc", "__pycache__/*", ".DS_Store", "._*", "*.lock"]


class ModelFolderError(AmserUserError, RuntimeError):
    """An exported model folder is incomplete or does not load."""


class RepoIdError(AmserUserError, ValueError):
    """A Hub repository id that is not ``user/repo``."""


class HubUploadError(AmserUserError, RuntimeError):
    """The Hub cannot be reached, or refused the upload."""


def _is_network_error(err):
    """A transport failure of the Hub client (httpx, requests, sockets)."""
    names = {cls.__name__ for cls in type(err).__mro__}
    return bool(names & {"TransportError", "NetworkError",
                         "TimeoutException", "ConnectionError"}) or \
        isinstance(err, (ConnectionError, TimeoutError))


def hub_upload_problem(err, model_dir, repo_id):
    """The one-line message for a failed upload, or None (a bug of ours).

    Arguments
    ---------
    err : Exception
        What the Hub client raised.
    model_dir, repo_id : str
        What was being uploaded where.

    Returns
    -------
    str or None
    """
    from huggingface_hub import constants, errors

    nothing = f"nothing of {model_dir} was uploaded"
    if isinstance(err, errors.OfflineModeIsEnabled):
        return (f"cannot push to {repo_id}: HF_HUB_OFFLINE is set; unset it "
                f"(and check the network) to upload ({nothing})")
    if isinstance(err, errors.LocalTokenNotFoundError):
        return (f"cannot push to {repo_id}: no Hugging Face token; log in "
                f"with 'hf auth login' or set HF_TOKEN ({nothing})")
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, errors.HfHubHTTPError) and status in (401, 403):
        return (f"the Hub refused {repo_id} (HTTP {status}): check that "
                f"your token may write to it ({nothing})")
    if _is_network_error(err):
        reason = " ".join(str(err).split())[:120]
        return (f"cannot reach the Hugging Face Hub at {constants.ENDPOINT} "
                f"({type(err).__name__}: {reason}); check the network (or "
                f"HF_ENDPOINT), then push again ({nothing})")
    return None


def list_model_files(model_dir):
    """List the files of a model folder that an upload would send.

    Arguments
    ---------
    model_dir : str
        Exported model folder.

    Returns
    -------
    list of (str, int)
        ``(relative path, size in bytes)``, sorted by path.

    Example
    -------
    >>> import pathlib
    >>> tmp = getfixture("tmp_path")
    >>> _ = (tmp / "label_encoder.txt").write_text("'neu' => 0\\n")
    >>> (tmp / "._junk").touch()
    >>> list_model_files(str(tmp))
    [('label_encoder.txt', 11)]
    """
    from fnmatch import fnmatch

    files = []
    for root, _dirs, names in os.walk(model_dir):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, model_dir).replace(os.sep, "/")
            if any(
                fnmatch(rel, p) or fnmatch(name, p) for p in IGNORE_PATTERNS
            ):
                continue
            files.append((rel, os.path.getsize(path)))
    return sorted(files)


def validate_model_folder(model_dir, load=True, allow_any_yaml=False):
    """Check that a model folder is complete and loads offline.

    Arguments
    ---------
    model_dir : str
        Exported model folder.
    load : bool
        Also load it with ``EncoderClassifier.from_hparams`` (offline) and
        classify one second of noise.
    allow_any_yaml : bool
        Load even a ``hyperparams.yaml`` naming code outside the allowed
        list (``amser_sb.config.yaml_trust``); it runs that code.

    Returns
    -------
    list of str
        The class labels of the model.

    Raises
    ------
    ModelFolderError
        Naming the missing file or the load failure.
    """
    if not os.path.isdir(model_dir):
        raise ModelFolderError(
            f"{model_dir} is not a folder; create it with "
            "'amser-sb export <experiment folder> <model_dir>'"
        )
    missing = [
        f
        for f in REQUIRED_FILES
        if not os.path.isfile(os.path.join(model_dir, f))
    ]
    if missing:
        raise ModelFolderError(
            f"{model_dir} lacks {', '.join(missing)}; re-export it with "
            "'amser-sb export <experiment folder> <model_dir>'"
        )
    if not load:
        return []
    import torch

    from amser_sb.inference.classify import load_classifier
    from amser_sb.config.yaml_trust import check_hyperparams

    # before anything of the file runs (also for --dry-run)
    check_hyperparams(os.path.join(model_dir, "hyperparams.yaml"),
                      allow_any_yaml)
    with tempfile.TemporaryDirectory() as savedir:
        try:
            clf = load_classifier(model_dir, savedir=savedir, offline=True,
                                  allow_any_yaml=allow_any_yaml)
            out_prob, _, _, labels = clf.classify_batch(
                0.1 * torch.randn(1, 16000)
            )
        except Exception as err:  # report any load failure with the folder
            raise ModelFolderError(
                f"{model_dir} does not load offline with "
                f"EncoderClassifier.from_hparams: {err}"
            ) from err
        if not torch.isfinite(out_prob).all():
            raise ModelFolderError(f"{model_dir} gives non-finite outputs")
        return list(clf.hparams.label_encoder.lab2ind)


def push_model(model_dir, repo_id, private=False, dry_run=False, token=None,
               allow_any_yaml=False):
    """Validate a model folder, then upload it to a Hub model repository.

    Arguments
    ---------
    model_dir : str
        Exported model folder.
    repo_id : str
        ``user/repo`` on the Hub.
    private : bool
        Create the repository as private.
    dry_run : bool
        Only validate and list what would be uploaded.
    token : str, optional
        Hub token; default: the usual ``HF_TOKEN`` / login.
    allow_any_yaml : bool
        Validate (load) even a ``hyperparams.yaml`` naming code outside
        the allowed list of ``amser_sb.config.yaml_trust``.

    Returns
    -------
    dict
        ``{"repo_id", "files", "bytes", "uploaded", "url"}``.
    """
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise RepoIdError(
            f"repository id {repo_id!r} must look like 'user/repo'"
        )
    labels = validate_model_folder(model_dir, load=True,
                                   allow_any_yaml=allow_any_yaml)
    files = list_model_files(model_dir)
    summary = {
        "repo_id": repo_id,
        "labels": labels,
        "files": files,
        "bytes": sum(size for _, size in files),
        "uploaded": False,
        "url": None,
    }
    if dry_run:
        return summary
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private,
                        exist_ok=True)
        info = api.upload_folder(
            folder_path=model_dir,
            repo_id=repo_id,
            repo_type="model",
            ignore_patterns=IGNORE_PATTERNS,
            commit_message="Upload amser-sb model",
        )
    except Exception as err:  # the Hub client raises many types
        problem = hub_upload_problem(err, model_dir, repo_id)
        if problem is None:
            raise
        raise HubUploadError(problem) from err
    summary["uploaded"] = True
    summary["url"] = getattr(info, "commit_url", None) or str(info)
    return summary
