#!/usr/bin/env python3
"""Cross-validation with one command: train and test every fold.

Runs ``train.py``'s steps for each fold of the protocol (resuming finished
and interrupted folds), then writes ``results.md`` and ``results.json``
(per-fold WA / UA / macro-F1 and mean ± std) to
``<output_root>/<protocol>``::

    python cv.py hparams/am_resnet_w2v2.yaml \\
        --data_folder=/data/IEMOCAP_full_release \\
        --protocol speaker [--folds 1,2] [--key=value ...]

Same as ``amser-sb cv``; the logic is ``amser_sb.training.cv.run_cv``.

Authors
 * amser-sb contributors 2026
"""

import sys

from amser_sb.training.cv import main

if __name__ == "__main__":
    sys.exit(main())
