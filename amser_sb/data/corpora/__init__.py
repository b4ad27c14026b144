"""Corpora: one registered ``Corpus`` class per corpus family.

``registry`` (the ``Corpus`` base class, ``get_corpus``), ``iemocap``
(+ ``iemocap_annotations``, EmoEvaluation parsing; ``iemocap_audio``, wav
checks and MADD in worker processes), ``named_files`` (corpora
labelled by their file names), ``presets`` (the file-name conventions of
known corpora and ``custom``).

Authors
 * amser-sb contributors
"""
