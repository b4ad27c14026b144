"""The base class of the errors a user can fix.

Every error the project raises for bad input (a missing file, a malformed
annotation, an unknown option, a folder in use) derives from
``AmserUserError`` next to its builtin base (``ValueError``,
``RuntimeError``). The ``amser-sb`` command and the recipe's ``train.py``
print such an error as one line that names the file and the fix and exit
with status 2; any other exception is a bug of ours and keeps its
traceback.

Authors
 * amser-sb contributors
"""


class AmserUserError(Exception):
    """An error in the user's input or setup, with the fix in its text.

    Example
    -------
    >>> class FolderError(AmserUserError, ValueError):
    ...     pass
    >>> isinstance(FolderError("x"), AmserUserError)
    True
    """


#: Exit status for a user error (as argparse's usage errors).
USER_ERROR_STATUS = 2
