"""Protocols: one registered ``Protocol`` class per way of making folds.

``registry`` (the ``Protocol`` base class, ``get_protocol``), ``speaker``,
``session``, ``grouped`` (the built-in protocols), ``choice`` (the default
protocol of corpora that may or may not name speakers), ``splits`` (the
fold strategies) and ``fold_files`` (folds checked and written as CSVs).

Authors
 * amser-sb contributors
"""
