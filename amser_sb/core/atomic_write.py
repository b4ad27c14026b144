"""Write a file atomically under a temporary name unique to the writer.

Two preparations writing into one folder used the same ``<file>.tmp``:
one renamed the other's half-written file or found it gone and crashed.
``atomic_open`` writes to a unique temporary file in the target's folder
(``tempfile.mkstemp``) and renames it over the target with ``os.replace``
only when the block succeeded; readers see the old or the new file, never
a part of one.

Authors
 * amser-sb contributors
"""

import contextlib
import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a unique temporary file that replaces ``path`` on success.

    Arguments
    ---------
    path : str
        The file to write.
    mode : str
        ``"w"`` or ``"wb"``.
    **kwargs
        Passed to ``open`` (``encoding``, ``newline``).

    Yields
    ------
    file object

    Example
    -------
    >>> path = str(getfixture("tmp_path") / "a.txt")
    >>> with atomic_open(path, encoding="utf-8") as handle:
    ...     _ = handle.write("done")
    >>> open(path).read()
    'done'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(
        dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would have made it
        with os.fdopen(handle, mode, **kwargs) as fout:
            yield fout
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
