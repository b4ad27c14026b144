#!/usr/bin/env python3
"""Recipe for speech emotion recognition on IEMOCAP with AM-ResNet and
wav2vec 2.0 cross-feature fusion (Li & Zhang, Digital Communications and
Networks, 2025).

Trains one fold of a cross-validation protocol (``--protocol``, ``--fold``)
and tests the checkpoint that ``model_selection`` names (the last epoch's,
or the best validation UA's) on the fold's test speaker (or session)::

    python train.py hparams/am_resnet_w2v2.yaml \\
        --data_folder=/data/IEMOCAP_full_release

On several GPUs (or CPU processes), one fold with DDP::

    torchrun --standalone --nproc_per_node=4 train.py \\
        hparams/am_resnet_w2v2.yaml --data_folder=/data/IEMOCAP_full_release

(``batch_size`` is per process; see the recipe README for multi-node runs).
Every fold in one command, with a results table: ``python cv.py`` (same
arguments). The training loop is ``amser_sb.training.brain.AMSERBrain``; the data
pipeline (4 s segments, voiced masks, soft targets) is
``amser_sb.training.pipeline``. Everything else is in the hparams file.

Authors
 * amser-sb contributors 2026
"""

import sys

import speechbrain as sb

from amser_sb.training.run import train_fold
from amser_sb.training.distributed import exit_process, init_distributed
from amser_sb.config.hparams_loading import load_hparams
from amser_sb.config.user_errors import debug_requested, user_error_message

if __name__ == "__main__":
    # Command line: hparams file, SpeechBrain run options, --key=value.
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])

    # Under torchrun: join the process group (gloo on CPU, one GPU per
    # process); without torchrun nothing happens.
    try:
        run_opts = init_distributed(run_opts)
    except ValueError as err:
        sys.exit(f"error: {err}")

    try:
        # Load hyperparameters with overrides (clear errors for bad input).
        hparams = load_hparams(hparams_file, overrides)

        # The fold, as amser-sb cv runs each one: experiment folder, data
        # preparation on the main process, datasets, AMSERBrain.fit (an
        # interrupted run resumes from its latest checkpoint), test of the
        # checkpoint that model_selection names (writes test_*).
        train_fold(hparams, hparams_file, run_opts, overrides)
    except Exception as err:
        # A user error: one line naming the file and the fix, status 2
        # (AMSER_SB_DEBUG=1 shows its traceback); our bugs keep theirs.
        message = user_error_message(err)
        if message is None or debug_requested():
            raise
        print(message, file=sys.stderr)
        exit_process(2)  # under torchrun: ends here (see exit_process)
        sys.exit(2)
    # under torchrun: leave the process group and end here, before the
    # interpreter's teardown (see exit_process); otherwise nothing
    exit_process(0)
