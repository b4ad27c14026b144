"""Shared basics that every other package builds on.

Audio reading (``audio``), maximum amplitude difference detection and
voiced intervals (``madd``), relative lengths (``lengths``), segment
windows (``segments``), class sets and soft targets (``labels``), the
soft-target loss (``losses``), metrics (``metrics``), atomic file writes
(``atomic_write``) and the user-error base class (``errors``). Nothing here
imports another package of amser_sb.

Authors
 * amser-sb contributors
"""
