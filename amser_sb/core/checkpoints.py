"""A SpeechBrain ``Checkpointer`` that survives full disks and truncation.

SpeechBrain's ``Checkpointer`` writes ``CKPT.yaml`` first and the parameter
files after it, into the final ``CKPT+...`` folder. A save that dies half
way (disk full, ``kill -9``) leaves a folder that looks complete, and as the
newest checkpoint every rerun picks it and dies with ``PytorchStreamReader
failed reading zip archive``. ``SafeCheckpointer``:

* saves into a hidden temporary folder (``.tmp-CKPT+...``, not a
  checkpoint to SpeechBrain) and renames it into place only after every
  file was written and flushed to disk; a failed save removes it;
* verifies a checkpoint's files before listing it (zip archives written by
  ``torch.save`` are read through with their CRCs checked, other torch
  files are loaded with ``torch.load(weights_only=True)``, every registered
  recoverable needs its file), so a damaged checkpoint is never chosen:
  it is skipped with a warning naming it and the reason, and recovery
  falls back to the newest intact one.

Use it as the recipe's ``checkpointer`` (the hparams files do); its
arguments are SpeechBrain's.

Authors
 * amser-sb contributors
"""

import contextlib
import logging
import os
import pathlib
import shutil
import time
import zipfile

import torch
from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    DEFAULT_SAVE_HOOKS,
    METAFNAME,
    PARAMFILE_EXT,
    Checkpointer,
    get_default_hook,
)
from speechbrain.utils.distributed import (
    ddp_barrier,
    ddp_broadcast,
    if_main_process,
)

logger = logging.getLogger(__name__)

#: Prefix of the folder a checkpoint is written into before its rename.
TMP_PREFIX = ".tmp-"


def check_param_file(path):
    """Why a checkpoint parameter file is unusable, or None when it is fine.

    Arguments
    ---------
    path : str or pathlib.Path
        A ``*.ckpt`` file of a checkpoint folder.

    Returns
    -------
    str or None
        The reason (e.g. ``"truncated zip archive"``), None for a good file.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> torch.save({"w": torch.ones(3)}, tmp / "model.ckpt")
    >>> check_param_file(tmp / "model.ckpt") is None
    True
    >>> data = (tmp / "model.ckpt").read_bytes()
    >>> _ = (tmp / "model.ckpt").write_bytes(data[: len(data) // 2])
    >>> check_param_file(tmp / "model.ckpt")
    'damaged zip archive (File is not a zip file)'
    """
    path = pathlib.Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if size == 0:
        return "empty file"
    if magic == b"PK\x03\x04":  # torch.save's zip format
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            return f"damaged zip archive ({err})"
        if bad is not None:
            return f"damaged zip archive (bad CRC in {bad})"
        return None
    if magic[:1] == b"\x80":  # legacy (pickle) torch.save format
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # any failure: the file is not usable
            return f"does not load ({type(err).__name__}: {err})"
    return None  # a text file (e.g. the epoch counter)


class SafeCheckpointer(Checkpointer):
    """SpeechBrain's ``Checkpointer`` with atomic saves and verified loads.

    Arguments
    ---------
    *args, **kwargs
        As ``speechbrain.utils.checkpoints.Checkpointer``.
    optional_recoverables : dict, optional
        Recoverables a checkpoint may lack (loaded when present), e.g. the
        ``amser_sb.training.rng_state.RNGState`` that older checkpoints do not have.

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> model = torch.nn.Linear(2, 2)
    >>> ckpter = SafeCheckpointer(tmp, recoverables={"model": model})
    >>> first = ckpter.save_checkpoint(meta={"step": 1})
    >>> time.sleep(0.01)
    >>> second = ckpter.save_checkpoint(meta={"step": 2})
    >>> ckpt_file = second.paramfiles["model"]
    >>> _ = ckpt_file.write_bytes(ckpt_file.read_bytes()[:100])  # truncated
    >>> ckpter.recover_if_possible().meta["step"]  # falls back
    1
    """

    def __init__(self, *args, optional_recoverables=None, **kwargs):
        folder = pathlib.Path(
            kwargs["checkpoints_dir"] if "checkpoints_dir" in kwargs else args[0]
        )
        missing = []  # folders SpeechBrain's __init__ creates, outermost last
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        super().__init__(*args, **kwargs)
        # Created when the first checkpoint is saved: merely loading the
        # hparams (e.g. of a run refused for a bad --fold) leaves nothing.
        # Not under torchrun: the other processes create the same folders
        # at the same moment, and removing one under a process still in
        # its os.makedirs fails that process (FileNotFoundError).
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            missing = []
        for created in missing:
            with contextlib.suppress(OSError):
                created.rmdir()
        for name, obj in (optional_recoverables or {}).items():
            self.add_recoverable(name, obj, optional_load=True)
        # path -> (size, mtime_ns, reason): each file is verified once.
        self._verified = {}
        self._reported = set()

    def save_checkpoint(
        self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO
    ):
        """Save a checkpoint into a temporary folder, then rename it.

        Arguments
        ---------
        meta : mapping
            Added to the checkpoint's meta file.
        end_of_epoch : bool
            Whether the checkpoint is at the end of an epoch.
        name : str, optional
            Custom checkpoint name (replaces one of that name atomically).
        verbosity : int
            Logging level of the "saved" line.

        Returns
        -------
        speechbrain.utils.checkpoints.Checkpoint
            The saved checkpoint (None on other processes than the main).
        """
        final_dir = tmp_dir = None
        if if_main_process():
            self._remove_stale_temporaries()
            if name is None:
                final_dir = self._new_checkpoint_dirpath()
            else:
                final_dir = self._custom_checkpoint_dirpath(name)
            tmp_dir = final_dir.with_name(TMP_PREFIX + final_dir.name)
            shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir = ddp_broadcast(tmp_dir, src=0)
        saved = None
        try:
            self._save_into(tmp_dir, meta, end_of_epoch)
            ddp_barrier()
            if if_main_process():
                _fsync_folder(tmp_dir)
                _replace_folder(tmp_dir, final_dir)
                saved = self._construct_checkpoint_objects([final_dir])[0]
                ckpt_type = "end-of-epoch" if end_of_epoch else "intra-epoch"
                logger.log(
                    verbosity, f"Saved an {ckpt_type} checkpoint in {final_dir}"
                )
        except BaseException:
            if if_main_process():
                shutil.rmtree(tmp_dir, ignore_errors=True)
                logger.error(
                    f"saving checkpoint {final_dir} failed; nothing of it "
                    "was kept (the previous checkpoints are intact)"
                )
            raise
        return saved

    def _save_into(self, ckpt_dir, meta, end_of_epoch):
        """Write the meta file and every recoverable into ``ckpt_dir``."""
        if if_main_process():
            os.makedirs(ckpt_dir, exist_ok=True)
            self._save_checkpoint_metafile(
                ckpt_dir / METAFNAME, meta, end_of_epoch
            )
        ddp_barrier()
        for name, obj in self.recoverables.items():
            savepath = ckpt_dir / f"{name}{PARAMFILE_EXT}"
            if name in self.custom_save_hooks:
                self.custom_save_hooks[name](obj, savepath)
                continue
            hook = get_default_hook(obj, DEFAULT_SAVE_HOOKS)
            if hook is None:
                raise RuntimeError(
                    f"Don't know how to save {type(obj)}. Register a default "
                    "hook or add a custom hook for this object."
                )
            hook(obj, savepath)

    def _remove_stale_temporaries(self):
        """Remove temporary folders left by a save that was killed."""
        if not self.checkpoints_dir.is_dir():
            return
        for path in self.checkpoints_dir.iterdir():
            if path.name.startswith(TMP_PREFIX + CKPT_PREFIX):
                logger.warning(
                    f"removing {path}: an unfinished checkpoint save "
                    "(interrupted run)"
                )
                shutil.rmtree(path, ignore_errors=True)

    def checkpoint_problem(self, checkpoint):
        """Why ``checkpoint`` cannot be loaded, or None when it is intact.

        Arguments
        ---------
        checkpoint : speechbrain.utils.checkpoints.Checkpoint
            A listed checkpoint.

        Returns
        -------
        str or None
        """
        for name in self.recoverables:
            if name in checkpoint.paramfiles or self.allow_partial_load:
                continue
            if "dataloader" in name or self.optional_recoverables.get(name):
                continue
            return f"{name}{PARAMFILE_EXT} is missing"
        for name, path in sorted(checkpoint.paramfiles.items()):
            reason = self._file_problem(path)
            if reason is not None:
                return f"{pathlib.Path(path).name}: {reason}"
        return None

    def _file_problem(self, path):
        try:
            stat = os.stat(path)
        except OSError as err:
            return f"unreadable ({err.strerror or err})"
        key = str(path)
        cached = self._verified.get(key)
        if cached and cached[:2] == (stat.st_size, stat.st_mtime_ns):
            return cached[2]
        reason = check_param_file(path)
        self._verified[key] = (stat.st_size, stat.st_mtime_ns, reason)
        return reason

    def list_checkpoints(self):
        """The intact checkpoints of the folder (damaged ones are skipped
        with a warning naming them and the reason).

        Returns
        -------
        list of speechbrain.utils.checkpoints.Checkpoint
        """
        intact = []
        if not self.checkpoints_dir.is_dir():
            return []
        for ckpt in super().list_checkpoints():
            reason = self.checkpoint_problem(ckpt)
            if reason is None:
                intact.append(ckpt)
                continue
            if str(ckpt.path) not in self._reported:
                self._reported.add(str(ckpt.path))
                logger.warning(
                    f"skipping checkpoint {ckpt.path}: {reason}; using the "
                    "newest intact checkpoint instead (delete the damaged "
                    "folder to silence this)"
                )
        return intact


def _fsync_folder(folder):
    """Flush every file of ``folder`` and the folder itself to disk."""
    for path in pathlib.Path(folder).iterdir():
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


def _replace_folder(src, dst):
    """Rename ``src`` to ``dst``; an existing ``dst`` is replaced."""
    src, dst = pathlib.Path(src), pathlib.Path(dst)
    old = None
    if dst.exists():
        old = dst.with_name(f"{TMP_PREFIX}{dst.name}-old-{time.time_ns()}")
        os.replace(dst, old)
    os.replace(src, dst)
    _fsync_dir(dst.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def find_best_checkpoint(save_folder, key="UA"):
    """The intact checkpoint with the highest ``key`` in a save folder.

    Arguments
    ---------
    save_folder : str
        A run's checkpoint folder (``<output_folder>/save``).
    key : str
        Metric recorded in the checkpoints' meta data.

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint
        The best checkpoint (damaged ones are skipped, see
        :class:`SafeCheckpointer`).

    Raises
    ------
    FileNotFoundError
        When the folder holds no checkpoint with ``key``.
    """
    best = SafeCheckpointer(save_folder).find_checkpoint(max_key=key)
    if best is None:
        raise FileNotFoundError(
            f"no checkpoint with {key!r} in {save_folder}: train this fold "
            "first (it is written at the end of each epoch)"
        )
    return best


#: ``model_selection`` of the recipe -> the checkpoint meta key maximised.
SELECTION_KEYS = {"best_valid": "UA", "last": "epoch"}


def selection_key(model_selection):
    """The checkpoint meta key that picks the tested checkpoint.

    Arguments
    ---------
    model_selection : str
        ``best_valid`` (highest validation UA) or ``last`` (last epoch).

    Returns
    -------
    str

    Example
    -------
    >>> selection_key("last"), selection_key("best_valid")
    ('epoch', 'UA')
    """
    if model_selection not in SELECTION_KEYS:
        raise ValueError(
            f"model_selection must be one of {', '.join(SELECTION_KEYS)}, "
            f"got {model_selection!r}"
        )
    return SELECTION_KEYS[model_selection]
