"""Hugging Face Hub offline mode for one block of code, then back.

``huggingface_hub`` reads ``HF_HUB_OFFLINE`` once, when it is first
imported, into ``huggingface_hub.constants.HF_HUB_OFFLINE``. Setting the
environment variable around a load therefore either does nothing (the
library was imported before) or keeps the whole process offline (the
library was first imported inside the block): ``amser-sb push`` validated
the model that way and then could never upload. ``hub_offline`` sets and
restores both the variable and the library's constant.

Authors
 * amser-sb contributors
"""

import contextlib
import os


def _hub_constants():
    """``huggingface_hub.constants``, or None without huggingface_hub."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a dependency of speechbrain
        return None
    return constants


@contextlib.contextmanager
def hub_offline(enabled=True):
    """Run a block with the Hub client offline; restore the previous mode.

    Arguments
    ---------
    enabled : bool
        False: change nothing (a convenience for callers that only
        sometimes want offline mode).

    Yields
    ------
    None

    Example
    -------
    >>> from huggingface_hub import constants
    >>> before = constants.is_offline_mode()
    >>> with hub_offline():
    ...     constants.is_offline_mode()
    True
    >>> constants.is_offline_mode() == before
    True
    """
    if not enabled:
        yield
        return
    # Import first, so the constant is read from the caller's environment,
    # not from the value set below.
    constants = _hub_constants()
    previous_env = os.environ.get("HF_HUB_OFFLINE")
    previous_const = getattr(constants, "HF_HUB_OFFLINE", None)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if previous_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous_env
        if constants is not None:
            constants.HF_HUB_OFFLINE = previous_const
