"""Shared pytest fixtures: tiny local wav2vec2 folders (never the Hub), one
trained and exported tiny model, speech-like audio."""

import contextlib
import json
import logging
import os
import pathlib
import runpy
import sys
import traceback

import filelock

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


#: The test files that take longest, longest first (seconds of one core:
#: ``make test`` prints the slowest tests). Under pytest-xdist (``-n auto
#: --dist loadfile``: each file on one worker) they start first, in this
#: order, so that the run ends on short files and no worker is left with a
#: long one while the others idle.
SLOWEST_FILES = (
    "test_ddp.py", "test_onnx.py", "test_onnx_families.py", "test_export.py",
    "test_recipe.py", "test_inference_speed.py", "test_finetune.py",
    "test_export_modes.py", "test_encoders.py", "test_user_errors.py",
    "test_op_count.py", "test_layering.py", "test_resume_reproducible.py",
    "test_recipe_presets.py", "test_iemocap_prepare.py", "test_silence.py",
    "test_amser.py", "test_corpora.py",
)


def pytest_configure(config):
    """Under pytest-xdist with ``--dist loadfile``, hand out the files in
    collection order (``SLOWEST_FILES`` first): xdist's default reorders
    them by their number of tests, which leaves a slow file of three tests
    to the end of the run while the other worker idles."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, start the slowest files first (stable order
    otherwise)."""
    if not hasattr(config, "workerinput"):  # not a pytest-xdist worker
        return

    def rank(item):
        name = item.path.name
        return SLOWEST_FILES.index(name) if name in SLOWEST_FILES else len(
            SLOWEST_FILES)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def worker_id(request):
    """pytest-xdist's worker name (``gw0``, ...), ``"master"`` without
    xdist (xdist provides this fixture itself when it is loaded)."""
    return getattr(request.config, "workerinput", {}).get("workerid",
                                                        "master")

# The tests run tiny models: one intra-op thread is as fast on an idle
# machine and avoids OpenMP oversubscription (3x slower runs) on a busy
# one. Set OMP_NUM_THREADS to choose otherwise.
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_w2v2_group(tmp_path_factory):
    """A tiny random wav2vec2 with a group-norm feature encoder
    (wav2vec2-base style); the folder path as str."""
    from amser_sb.lobes.wav2vec2 import build_random_wav2vec2

    folder = tmp_path_factory.mktemp("tiny_w2v2_group")
    return build_random_wav2vec2(folder, "tiny", feat_extract_norm="group")


@pytest.fixture(scope="session")
def tiny_w2v2_layer(tmp_path_factory):
    """A tiny random wav2vec2 with a layer-norm feature encoder and
    ``do_stable_layer_norm=True`` (wav2vec2-large-lv60 / WavLM style); the
    folder path as str."""
    from amser_sb.lobes.wav2vec2 import build_random_wav2vec2

    folder = tmp_path_factory.mktemp("tiny_w2v2_layer")
    return build_random_wav2vec2(folder, "tiny", feat_extract_norm="layer")


@contextlib.contextmanager
def _logging_handlers_kept():
    """Remove the logging handlers a training run adds (SpeechBrain's
    logger setup writes to the streams of the moment: in a session
    fixture, the output capture of whichever test asked first, closed
    for every later test)."""
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    before = {id(lg): list(lg.handlers) for lg in loggers}
    try:
        yield
    finally:
        for logger in [logging.getLogger()] + [
            lg for lg in logging.root.manager.loggerDict.values()
            if isinstance(lg, logging.Logger)
        ]:
            for handler in list(logger.handlers):
                if handler not in before.get(id(logger), []):
                    logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def _logging_handlers_of_a_test_removed():
    """Every test leaves the logging handlers as it found them: a handler
    that an in-process run (a CLI ``main``, ``run_fold``, SpeechBrain's
    experiment setup) bound to this test's captured stream would raise
    "--- Logging error ---" in whichever later test of the worker logs."""
    with _logging_handlers_kept():
        yield


def _train_and_export(root, encoder):
    """Builds the ``trained`` fixture's folders under ``root``."""
    from amser_sb.data.synthetic import make_iemocap_corpus
    from amser_sb.inference.export import export_model
    from amser_sb.training.run import run_fold
    from tiny_run import RECIPE_FULL, tiny_run_values

    corpus = root / "IEMOCAP_full_release"
    make_iemocap_corpus(corpus, utts_per_speaker=6, sessions=(1, 2),
                        min_dur=1.0, max_dur=2.5)
    values = tiny_run_values(
        corpus, encoder, root / "exp", number_of_epochs=1,
        batch_size=8,
        # float32 cache: tests compare posteriors to 1e-4
        feature_cache_dtype="float32",
    )
    overrides = "\n".join(f"{k}: {v}" for k, v in values.items())
    with _logging_handlers_kept():
        run_fold(RECIPE_FULL, {"noprogressbar": True}, overrides)
        export_model(str(root / "exp"), str(root / "model"))
    return {
        "root": str(root), "fold": str(root / "exp" / "speaker" / "fold_1"),
        "model": str(root / "model"), "corpus": str(corpus),
        "args": [f"--{k}={v}" for k, v in values.items()],
    }


@pytest.fixture(scope="session")
def trained(tmp_path_factory, worker_id):
    """One tiny fold of the recipe trained for one epoch, and its export.

    The one trained model of the export, classify and user-error tests
    (tiny wav2vec2, 8-channel AM-ResNet, two sessions); tests must not
    change its folders (copy them first). Keys: ``root``, ``fold`` (the
    fold folder), ``model`` (the exported folder), ``corpus``, ``args``
    (the run's ``--key=value`` overrides). Under pytest-xdist the first
    worker that asks trains it, under a file lock in the run's shared
    temporary folder, and the others read its description.
    """
    from amser_sb.lobes.wav2vec2 import build_random_wav2vec2

    if worker_id == "master":
        shared = tmp_path_factory.mktemp("trained_shared")
    else:
        shared = tmp_path_factory.getbasetemp().parent
    described = shared / "trained.json"
    with filelock.FileLock(str(shared / "trained.lock")):
        if not described.exists():
            root = shared / "trained"
            root.mkdir()
            encoder = build_random_wav2vec2(root / "encoder", "tiny",
                                            feat_extract_norm="group")
            info = _train_and_export(root, encoder)
            described.write_text(json.dumps(info))
        info = json.loads(described.read_text())
    for key in ("root", "fold"):
        info[key] = pathlib.Path(info[key])
    return info


@pytest.fixture
def train_py(monkeypatch, capsys, caplog):
    """The recipe's ``train.py`` run in this process, as ``python train.py
    ARGS`` in the recipe folder runs it, without a fresh interpreter's
    imports (about 4 s): ``train_py(*args)`` returns ``(exit status,
    output)``.

    The exit status is the process's: 0 on return, ``sys.exit``'s code (a
    message: printed, status 1), an uncaught exception's traceback printed
    and status 1. The output is all the run showed: its log records, then
    its stdout, then its stderr (last). The working folder, ``sys.argv``,
    ``sys.excepthook`` (SpeechBrain logs uncaught exceptions),
    ``HF_HUB_OFFLINE`` and the run's logging handlers are restored
    afterwards.
    """
    from tiny_run import RECIPE_DIR

    def run(*args):
        monkeypatch.chdir(RECIPE_DIR)
        monkeypatch.setattr(sys, "argv", ["train.py", *args])
        monkeypatch.setattr(sys, "excepthook", sys.excepthook)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        capsys.readouterr()
        caplog.clear()
        status = 0
        with _logging_handlers_kept():
            try:
                runpy.run_path("train.py", run_name="__main__")
            except SystemExit as exit_:
                status = exit_.code
                if status is None:
                    status = 0
                elif not isinstance(status, int):
                    print(status, file=sys.stderr)
                    status = 1
            except Exception:  # what the interpreter does with it
                traceback.print_exc()
                status = 1
        shown = capsys.readouterr()
        return status, caplog.text + shown.out + shown.err

    return run


@pytest.fixture(scope="session")
def speech_audio(tmp_path_factory):
    """A 13 s speech-like recording and its utterances as clips (16 kHz):
    ``(recording path, [clip paths])``."""
    from amser_sb.data.synthetic import write_recording_and_clips

    return write_recording_and_clips(str(tmp_path_factory.mktemp("speech")),
                                     13.0)
