"""Data preparation: corpora to CSV manifests, protocols to folds.

``corpora`` (one registered ``Corpus`` class per corpus family: IEMOCAP,
the file-name presets), ``protocols`` (one registered ``Protocol`` class
per fold protocol: speaker, session, grouped), ``manifest`` (the CSV
schema), ``classes`` (class vocabulary and selection), ``audio_prep``
(16 kHz mono conversion and MADD intervals) and ``synthetic`` (generated
corpora for tests and benchmarks).

Authors
 * amser-sb contributors
"""
