"""One live run per output folder: a lock file naming its holder.

Two trainings writing into one output folder overwrite each other's
checkpoints and logs without a word. ``RunLock`` makes the second one stop
with a message naming the first: the lock file ``<folder>/.amser.lock``
holds the host, process id, start time and command of its holder. A lock
whose holder is gone (a process id no longer alive on this host, e.g.
after ``kill -9``) is stale: it is removed with a log line and taken.

Under ``torchrun`` only the main process (rank 0) holds the lock; the
other processes learn the outcome from it (``exclusive_output_folder``).

Authors
 * amser-sb contributors
"""

import contextlib
import datetime
import functools
import json
import logging
import os
import socket
import sys
import time

from amser_sb.core.errors import AmserUserError

logger = logging.getLogger(__name__)

#: Name of the lock file inside the locked folder.
LOCK_NAME = ".amser.lock"

#: A lock file without readable content younger than this is being written.
_UNREADABLE_GRACE_S = 30.0

#: Lock files held by live ``RunLock`` objects of this process.
_HELD_HERE = set()


class RunLockError(AmserUserError, RuntimeError):
    """The folder is in use by another live run."""


def _pid_alive(pid):
    """Whether process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    except OSError:  # pragma: no cover - e.g. Windows
        return True
    return True


def _is_main_process():
    """Rank 0 of a ``torchrun`` launch, or a plain process."""
    from speechbrain.utils.distributed import if_main_process

    return if_main_process() and int(os.environ.get("RANK", "0") or 0) == 0


class RunLock:
    """An exclusive lock on a folder for one run (a context manager).

    Arguments
    ---------
    folder : str
        The folder to lock (created if missing; removed again on release
        when the lock created it and it is still empty).
    purpose : str
        What the holder does, for the message a second run gets (e.g.
        ``"training"``, ``"data preparation"``).

    Example
    -------
    >>> tmp = getfixture("tmp_path")
    >>> with RunLock(str(tmp / "run")) as lock:
    ...     os.path.isfile(lock.path)
    ...     try:
    ...         RunLock(str(tmp / "run")).acquire()
    ...     except RunLockError as err:
    ...         print("refused")
    True
    refused
    >>> os.path.exists(tmp / "run")  # created for the lock, removed again
    False
    """

    def __init__(self, folder, purpose="training"):
        self.folder = str(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.purpose = purpose
        self._created_folder = False
        self._held = False

    def holder(self):
        """The current lock file's content (a dict), or None.

        Returns
        -------
        dict or None
            ``host``, ``pid``, ``started``, ``command``, ``purpose``.
        """
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _stale_reason(self, info):
        """Why an existing lock may be taken over, or None."""
        if info is None:
            try:
                age = time.time() - os.path.getmtime(self.path)
            except OSError:
                return "it vanished"
            if age > _UNREADABLE_GRACE_S:
                return "it is unreadable"
            return None
        if info.get("host") != socket.gethostname():
            return None  # cannot tell whether it is alive
        pid = int(info.get("pid", -1))
        if pid == os.getpid():
            if os.path.abspath(self.path) in _HELD_HERE:
                return None  # held by another run of this very process
            return "it was left by this process"
        if not _pid_alive(pid):
            return f"process {pid} is no longer running"
        return None

    def _refusal(self, info):
        if info is None:
            who = "a run that is starting"
        else:
            who = (
                f"{info.get('purpose', 'a run')} on {info.get('host')} "
                f"(pid {info.get('pid')}, started {info.get('started')}: "
                f"{info.get('command')})"
            )
        return (
            f"{self.folder} is in use by {who}; wait for it to finish, give "
            f"this run another output folder, or delete {self.path} if that "
            "run is gone"
        )

    def acquire(self):
        """Take the lock or raise ``RunLockError`` naming the holder.

        Returns
        -------
        RunLock
            ``self``.
        """
        if not os.path.isdir(self.folder):
            os.makedirs(self.folder, exist_ok=True)
            self._created_folder = True
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
            "purpose": self.purpose,
        }
        for _attempt in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                info = self.holder()
                reason = self._stale_reason(info)
                if reason is None:
                    self._cleanup_folder()
                    raise RunLockError(self._refusal(info)) from None
                logger.warning(
                    f"removing the stale lock {self.path} ({reason}): "
                    f"{json.dumps(info) if info else 'no content'}"
                )
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
                handle.write("\n")
            self._held = True
            _HELD_HERE.add(os.path.abspath(self.path))
            return self
        self._cleanup_folder()
        raise RunLockError(self._refusal(self.holder()))

    def release(self):
        """Remove the lock file (if this lock holds it)."""
        if not self._held:
            return
        self._held = False
        _HELD_HERE.discard(os.path.abspath(self.path))
        info = self.holder()
        if info is None or (
            info.get("pid") == os.getpid()
            and info.get("host") == socket.gethostname()
        ):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        self._cleanup_folder()

    def _cleanup_folder(self):
        if self._created_folder:
            with contextlib.suppress(OSError):
                os.rmdir(self.folder)  # only when empty
            self._created_folder = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


@contextlib.contextmanager
def locked_folder(folder, purpose="training"):
    """Hold ``RunLock(folder)`` on the main process for a block.

    Under ``torchrun`` rank 0 takes the lock and tells the others whether
    it got it, so every process raises the same ``RunLockError``.

    Arguments
    ---------
    folder : str
        Folder to lock.
    purpose : str
        What the run does (shown to a refused second run).

    Yields
    ------
    RunLock or None
        The held lock (None on the other processes).
    """
    from speechbrain.utils.distributed import ddp_broadcast

    lock, refusal = None, None
    if _is_main_process():
        try:
            lock = RunLock(folder, purpose).acquire()
        except RunLockError as err:
            refusal = str(err)
    refusal = ddp_broadcast(refusal, src=0)
    if refusal is not None:
        raise RunLockError(refusal)
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()


def exclusive_output_folder(func):
    """Decorate ``func(hparams, ...)`` to hold a lock on
    ``hparams["output_folder"]`` while it runs.

    Arguments
    ---------
    func : callable
        Takes the loaded hparams (a dict with ``output_folder``) first.

    Returns
    -------
    callable
    """

    @functools.wraps(func)
    def wrapper(hparams, *args, **kwargs):
        with locked_folder(hparams["output_folder"], "training"):
            return func(hparams, *args, **kwargs)

    return wrapper
