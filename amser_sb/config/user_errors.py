"""User errors as one line and exit status 2; tracebacks for our bugs.

The ``amser-sb`` command and the recipe's ``train.py`` run their work
through :func:`report_user_errors`: an error the user can fix (a subclass
of :class:`amser_sb.core.errors.AmserUserError` (every error class of the
project for bad input derives from it), a YAML syntax error, a file that is
missing or cannot be written) is printed as ``error: <message>`` naming
the file and the fix, and the process exits with status 2. Anything else
is a bug of ours and keeps its traceback. ``--debug`` (``amser-sb --debug
<command>``) or ``AMSER_SB_DEBUG=1`` shows the traceback of user errors
too.

Authors
 * amser-sb contributors
"""

import contextlib
import importlib
import os
import re
import sys

from amser_sb.core.errors import USER_ERROR_STATUS, AmserUserError

def user_error_types():
    """The exception classes that are the user's to fix.

    Returns
    -------
    tuple of type

    Example
    -------
    >>> AmserUserError in user_error_types()
    True
    """
    types = [AmserUserError]
    for module in ("yaml", "ruamel.yaml"):
        try:
            types.append(importlib.import_module(module).YAMLError)
        except (ImportError, AttributeError):
            continue
    return tuple(types)


def user_error_message(err):
    """The one-line message for a user error.

    Arguments
    ---------
    err : BaseException

    Returns
    -------
    str or None
        ``error: ...``; None when ``err`` is not a user error (a bug).

    Example
    -------
    >>> user_error_message(PermissionError(13, "Permission denied", "/ro/x"))
    'error: cannot write /ro/x: permission denied; make it writable or choose another folder'
    >>> user_error_message(NotADirectoryError(20, "Not a directory", "f/x"))
    'error: cannot use f/x as a folder: a part of that path is a file, not a folder; choose another path'
    >>> user_error_message(KeyError("n")) is None
    True
    """
    if isinstance(err, PermissionError):
        where = err.filename or "a file"
        return (
            f"error: cannot write {where}: permission denied; make it "
            "writable or choose another folder"
        )
    if isinstance(err, NotADirectoryError) and err.filename:
        return (
            f"error: cannot use {err.filename} as a folder: a part of that "
            "path is a file, not a folder; choose another path"
        )
    if isinstance(err, FileExistsError) and err.filename:
        return (
            f"error: cannot create the folder {err.filename}: a file of "
            "that name is in the way; choose another path (or move the file)"
        )
    if isinstance(err, FileNotFoundError):
        if err.filename and err.strerror is not None:
            return f"error: {err.filename} does not exist; check the path"
        return f"error: {err}"  # ours: the message names the file
    if isinstance(err, user_error_types()):
        if _is_yaml(err) and refused_tag(err):
            return f"error: {refused_tag_message(refused_tag(err))}"
        if _is_yaml(err):
            text = " ".join(str(err).split())
            return f"error: YAML syntax error: {text}; fix the file"
        return f"error: {err}"
    return None


def refused_tag(err):
    """The tag a YAML constructor could not build, or None.

    Arguments
    ---------
    err : Exception

    Returns
    -------
    str or None
    """
    if type(err).__name__ != "ConstructorError":
        return None
    match = re.search(r"constructor for the tag '([^']+)'", str(err))
    return match.group(1) if match else None


def refused_tag_message(tag, where="the YAML file"):
    """The message for a tag no constructor knows (not a syntax error).

    Example
    -------
    >>> refused_tag_message("!nwe:torch.nn.Linear")
    "YAML tag '!nwe:torch.nn.Linear' in the YAML file is not one HyperPyYAML \
knows (!new:, !name:, !apply:, !ref, !copy, !tuple); fix its spelling"
    """
    return (
        f"YAML tag {tag!r} in {where} is not one HyperPyYAML knows (!new:, "
        "!name:, !apply:, !ref, !copy, !tuple); fix its spelling"
    )


def _is_yaml(err):
    """A YAML parser's error (ours, e.g. a refused model file, say more)."""
    if isinstance(err, AmserUserError):
        return False
    return type(err).__name__.endswith("YAMLError") or "yaml" in (
        type(err).__module__ or ""
    )


def debug_requested(argv=()):
    """Whether tracebacks of user errors were asked for.

    Arguments
    ---------
    argv : sequence of str
        Command-line arguments (``--debug`` among them).

    Returns
    -------
    bool
    """
    env = os.environ.get("AMSER_SB_DEBUG", "")
    return "--debug" in argv or env not in ("", "0")


@contextlib.contextmanager
def report_user_errors(debug=False):
    """Turn a user error of the block into one line and ``SystemExit(2)``.

    Arguments
    ---------
    debug : bool
        Re-raise with the traceback instead.

    Yields
    ------
    None
    """
    try:
        yield
    except Exception as err:
        message = None if debug else user_error_message(err)
        if message is None:
            raise
        print(message, file=sys.stderr)
        raise SystemExit(USER_ERROR_STATUS) from None
