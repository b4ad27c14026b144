"""Training: the Brain, its data pipeline, and what makes runs resumable.

``brain`` (``AMSERBrain``), ``pipeline`` (``DynamicItemDataset`` segments
and masks), ``feature_cache``/``cache_entries`` (frozen-encoder features;
``cache_choice``: which caches a run uses),
``checkpoints``, ``rng_state``, ``schedulers``, ``distributed`` (DDP),
``run_lock`` (one run per output folder), ``run`` (one fold: prepare,
load hparams, train, test) and ``cv`` (every fold and the results table).
Builds on ``core``, ``lobes``, ``data`` and ``config``; inference never
imports it.

Authors
 * amser-sb contributors
"""
