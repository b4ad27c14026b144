"""The ``amser-sb`` command: ``main`` (sub-commands) and ``demo``.

Authors
 * amser-sb contributors
"""

from amser_sb.cli.main import main

__all__ = ["main"]
