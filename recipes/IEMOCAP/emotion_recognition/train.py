#!/usr/bin/env python3
"""Recipe for speech emotion recognition on IEMOCAP with AM-ResNet and
wav2vec 2.0 cross-feature fusion (Li & Zhang, Digital Communications and
Networks, 2025).

Trains one fold of a cross-validation protocol (``--protocol``, ``--fold``)
and tests the checkpoint with the best validation UA on the fold's test
speaker (or session)::

    python train.py hparams/am_resnet_w2v2.yaml \\
        --data_folder=/data/IEMOCAP_full_release

Every fold in one command, with a results table: ``python cv.py`` (same
arguments). The training loop is ``amser_sb.brain.AMSERBrain``; the data
pipeline (4 s segments, voiced masks, soft targets) is
``amser_sb.pipeline``. Everything else is in the hparams file.

Authors
 * amser-sb contributors 2026
"""

import sys

import speechbrain as sb

from amser_sb.brain import AMSERBrain
from amser_sb.cv import RecipeError, load_hparams, prepare_data
from amser_sb.pipeline import dataio_prep, loader_options

# The same steps as amser_sb.cv.run_fold (used by cv.py for every fold).
if __name__ == "__main__":
    # Command line: hparams file, SpeechBrain run options, --key=value.
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])

    # Load hyperparameters with overrides (clear errors for bad input).
    try:
        hparams = load_hparams(hparams_file, overrides)
    except RecipeError as err:
        sys.exit(f"error: {err}")

    # Experiment folder: a copy of the hparams, the log.
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )

    # Manifests, label encoder and folds, on one process (idempotent):
    # iemocap_prepare.prepare_iemocap, or a corpus preset (--dataset).
    try:
        prepare_data(hparams)
    except RecipeError as err:
        sys.exit(f"error: {err}")

    # Train/valid/test datasets of this fold (segments, masks, targets).
    datasets = dataio_prep(hparams)

    # The Brain: loss, metrics, checkpoints, optimiser groups, cache.
    brain = AMSERBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )

    # Train; an interrupted run resumes from its latest checkpoint.
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=loader_options(hparams, datasets["train"], "train"),
        valid_loader_kwargs=loader_options(hparams, datasets["valid"], "valid"),
    )

    # Test the checkpoint with the best validation UA; writes test_*.
    brain.evaluate(
        datasets["test"],
        max_key="UA",
        test_loader_kwargs=loader_options(hparams, datasets["test"], "test"),
    )
