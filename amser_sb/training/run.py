"""One fold's run: prepare the data, train, test the best checkpoint.

:func:`train_fold` is the one definition of a fold's run, used by the
recipe's ``train.py`` and (through :func:`run_fold`) by ``amser-sb cv``.

Authors
 * amser-sb contributors
"""

import speechbrain as sb

from amser_sb.config.device_check import check_device
from amser_sb.config.hparams_loading import load_hparams
from amser_sb.core.checkpoints import selection_key
from amser_sb.data.corpora.registry import get_corpus
from amser_sb.training.brain import AMSERBrain
from amser_sb.training.data_digest import check_fold_data
from amser_sb.training.distributed import init_distributed
from amser_sb.training.pipeline import dataio_prep, loader_options
from amser_sb.training.run_lock import exclusive_output_folder

__all__ = ["prepare_data", "run_fold", "train_fold"]


def prepare_data(hparams):
    """Runs the data preparation on the main process (idempotent).

    The corpus is the registry's ``hparams["dataset"]`` (default
    ``iemocap``; :mod:`amser_sb.data.corpora.registry`): IEMOCAP or a corpus
    preset, which all write the same manifests and folds.

    Arguments
    ---------
    hparams : dict
        Loaded recipe hparams.

    Raises
    ------
    amser_sb.data.corpora.registry.CorpusError
        For an unknown ``dataset`` (listing the known ones).
    """
    if hparams.get("skip_prep", False):
        return
    corpus = get_corpus(hparams.get("dataset") or "iemocap")
    sb.utils.distributed.run_on_main(
        corpus.prepare_from_hparams, args=[hparams]
    )


def run_fold(hparams_file, run_opts=None, overrides=None):
    """Trains and tests one fold (``amser-sb cv``, for every fold).

    Joins the process group of a ``torchrun`` launch (once), loads the
    hparams, then :func:`train_fold`.

    Arguments
    ---------
    hparams_file : str
        Recipe hparams file.
    run_opts : dict, optional
        SpeechBrain run options (``--device``, ``--debug`` ...).
    overrides : str, optional
        YAML overrides (``fold``, ``protocol``, ...).

    Returns
    -------
    dict
        Test summary (:meth:`amser_sb.core.metrics.ClassificationStats.summarize`
        plus ``epoch``), on every process.
    """
    run_opts = init_distributed({} if run_opts is None else run_opts)
    hparams = load_hparams(hparams_file, overrides)
    return train_fold(hparams, hparams_file, run_opts, overrides)


@exclusive_output_folder  # a second live run on the folder is refused
def train_fold(hparams, hparams_file, run_opts=None, overrides=None):
    """Trains and tests one fold from loaded hparams: the recipe's steps.

    The one definition of a fold's run, used by the recipe's ``train.py``
    and by :func:`run_fold`: the experiment folder, the data preparation
    (main process only, the others wait), the fold's datasets, the Brain,
    training with model selection on validation UA, and the test of the
    best checkpoint. Under ``torchrun`` (process group joined, see
    :func:`amser_sb.training.distributed.init_distributed`) every process runs
    this; files are written once, by the main process.

    Arguments
    ---------
    hparams : dict
        Loaded hparams (:func:`load_hparams`).
    hparams_file : str
        The file they came from (copied to the experiment folder).
    run_opts : dict, optional
        SpeechBrain run options.
    overrides : str, optional
        The YAML overrides used (saved with the hparams).

    Returns
    -------
    dict
        Test summary, on every process.
    """
    check_device(run_opts)  # before the data preparation
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    prepare_data(hparams)
    check_fold_data(hparams)  # a resumed run trains on the same data
    datasets = dataio_prep(hparams)
    brain = AMSERBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=loader_options(hparams, datasets["train"], "train"),
        valid_loader_kwargs=loader_options(hparams, datasets["valid"], "valid"),
    )
    brain.evaluate(
        datasets["test"],
        max_key=selection_key(hparams["model_selection"]),
        test_loader_kwargs=loader_options(hparams, datasets["test"], "test"),
    )
    return brain.test_summary
