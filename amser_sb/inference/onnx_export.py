"""ONNX export of a whole exported model: waveform in, posteriors out.

``amser-sb export-onnx MODEL_DIR`` writes ``MODEL_DIR/model.onnx``, one
graph from the waveform to the class posteriors, with everything
``EncoderClassifier`` runs in PyTorch inside it:

* inputs ``wavs`` ``[batch, time]`` (float32, at the model's
  ``sample_rate``) and ``wav_lens`` ``[batch]`` (relative lengths, as
  SpeechBrain's), both axes dynamic; output ``posteriors``
  ``[batch, classes]`` in ``label_encoder.txt`` order;
* MADD (the voiced mask of each whole utterance, ``graph_madd``: the same
  rule as ``amser_sb.core.madd.madd``, written without data-dependent Python
  branches), the segment grid of ``UtteranceEncoder`` (``cut_segments``:
  every segment of every utterance in one batch, gathered by index),
  AM-ResNet, the encoder branch with its layer weights (Whisper's log-mel
  front end, STFT included, and its fixed window; wav2vec2-family waveform
  normalisation), fusion, the mean segment embedding and the classifier.

Padded batches give the posteriors of each clip alone: the wav2vec2
family's group-norm feature encoder is normalised over each clip's own
frames (``MaskedFeatureEncoder``; in PyTorch the clip runs alone, cropped),
its transformer gets the frame padding mask; Whisper pads every window to
its fixed length as in PyTorch; AM-ResNet and fusion mask padding already.

The export checks itself before it writes anything: onnxruntime's posteriors
must equal PyTorch's (``EncoderClassifier.classify_batch`` on each clip
alone) within ``PARITY_TOLERANCE`` on speech-like clips of several lengths
(shorter than a segment, several segments), each alone and all together in
one padded batch. ``--int8`` also writes ``model.int8.onnx`` (onnxruntime's
dynamic quantisation of the MatMul weights, large 1-D convolutions
rewritten as MatMuls first: ``onnx_int8``); its deviation from float32 on
the same clips is reported, not bounded. What was checked goes to
``onnx.json`` and to the model card (``README.md``).

The exporter is ``torch.onnx.export(..., dynamo=True)`` on a
``torch.export`` program (non-strict mode; onnxscript translates), opset
``OPSET``. ``torch.export`` cannot keep one time axis dynamic across "the
clip is its own segment, of any length" and "fixed-length segments", so for
a model with a segment grid the segment front (the grid, or the clip
whole) is exported twice, joined by an ONNX ``If`` on the input's length;
MADD before it and the body that holds every weight (the model on each
segment, the mean embedding, the classifier) after it once each
(``compose_by_length``). Where
tracing would fix an axis to the example's size (SpeechBrain's
``length_to_mask`` calls ``len()`` on a tensor; max-pooling fixes its time
axis), ``traceable`` swaps in twins with the same values for the duration
of the export.

Authors
 * amser-sb contributors
"""

import json
import logging
import os
import platform
import tempfile
import time

import numpy as np
import torch


from amser_sb.inference.onnx_contract import (
    OPSET,
    ONNX_FILE,
    INT8_FILE,
    REPORT_FILE,
    PARITY_TOLERANCE,
    OUTPUT_NAME,
    CARD_HEADING,
    OnnxExportError,
    check_clips,
    pad_batch,
)
from amser_sb.inference.onnx_compose import build_onnx
from amser_sb.inference.onnx_graph_encoders import graph_form
from amser_sb.inference.onnx_int8 import quantize_int8

logger = logging.getLogger(__name__)



def torch_posteriors(clf, wavs, wav_lens):
    """PyTorch's posteriors ``[batch, classes]`` (``classify_batch``)."""
    with torch.inference_mode():
        out = clf.classify_batch(wavs, wav_lens)[0]
    out = out.reshape(out.shape[0], -1).float()
    if (out <= 0).all():
        out = out.exp()
    return (out / out.sum(dim=1, keepdim=True)).numpy()


def onnx_posteriors(session, wavs, wav_lens):
    """onnxruntime's posteriors ``[batch, classes]``."""
    feeds = {"wavs": np.asarray(wavs, dtype=np.float32),
             "wav_lens": np.asarray(wav_lens, dtype=np.float32)}
    return session.run([OUTPUT_NAME], feeds)[0]


def check_parity(clf, path, sample_rate, segment, int8_path=None):
    """Compare onnxruntime with PyTorch on clips alone and in a batch.

    Arguments
    ---------
    clf : EncoderClassifier
        The loaded model folder.
    path : str
        The float32 ONNX file.
    sample_rate : int
        The model's rate.
    segment : int or None
        Segment length in samples (clip lengths are chosen around it).
    int8_path : str, optional
        The int8 file, compared with float32 on the same clips.

    Returns
    -------
    dict
        What was checked, the deviations, ``passed``.
    """
    import onnxruntime

    short = (segment or 4 * sample_rate) / sample_rate
    seconds = [0.35, 0.8 * short, short + 0.3, 2.6 * short]
    clips = check_clips(seconds, sample_rate, seed=1)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(
        path, options, providers=["CPUExecutionProvider"]
    )
    reference = np.concatenate([
        torch_posteriors(clf, torch.from_numpy(c)[None], torch.ones(1))
        for c in clips
    ])
    alone = np.concatenate([
        onnx_posteriors(session, c[None], np.ones(1)) for c in clips
    ])
    wavs, lens = pad_batch(clips)
    batched = onnx_posteriors(session, wavs.numpy(), lens.numpy())
    dev_alone = float(np.abs(alone - reference).max())
    dev_batch = float(np.abs(batched - reference).max())
    report = {
        "clip_seconds": [round(s, 3) for s in seconds],
        "reference": "PyTorch EncoderClassifier.classify_batch, each clip "
                     "alone",
        "max_abs_diff_alone": dev_alone,
        "max_abs_diff_padded_batch": dev_batch,
        "tolerance": PARITY_TOLERANCE,
        "passed": max(dev_alone, dev_batch) <= PARITY_TOLERANCE,
    }
    if int8_path is not None:
        quantized = onnxruntime.InferenceSession(
            int8_path, options, providers=["CPUExecutionProvider"]
        )
        q = np.concatenate([
            onnx_posteriors(quantized, c[None], np.ones(1)) for c in clips
        ])
        report["int8"] = {
            "max_abs_diff_vs_pytorch_float32": float(
                np.abs(q - reference).max()
            ),
            "top1_agreement": float(
                (q.argmax(1) == reference.argmax(1)).mean()
            ),
            "note": "synthetic clips; measure on real speech "
                    "(benchmarks/inference_speed.py)",
        }
    return report


def _labels(clf):
    encoder = clf.hparams.label_encoder
    return [encoder.ind2lab[i] for i in range(len(encoder.ind2lab))]


def _metadata(clf, sample_rate):
    """Entries of the ONNX model's ``metadata_props`` (torch-free users
    read the classes and the rate there)."""
    hparams = clf.hparams
    encoder = clf.mods.embedding_model.encoder.ssl
    min_samples = int(getattr(encoder, "min_samples", 1))
    return {
        "labels": json.dumps(_labels(clf)),
        "sample_rate": str(sample_rate),
        "madd_window": str(int(hparams.madd_window)),
        "madd_factor": str(float(hparams.madd_factor)),
        "min_samples": str(min_samples),
        "inputs": "wavs [batch, time] float32 at sample_rate; wav_lens "
                  "[batch] float32 relative lengths (1.0: the longest)",
        "outputs": "posteriors [batch, classes] in the order of labels",
        "producer": "amser-sb export-onnx",
    }


def _write_card_section(model_dir, report):
    """Replace the model card's ONNX section with what was checked."""
    path = os.path.join(model_dir, "README.md")
    text = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    if CARD_HEADING in text:
        text = text[: text.index(CARD_HEADING)].rstrip() + "\n"
    parity = report["parity"]
    files = f"`{ONNX_FILE}`" + (
        f" and `{INT8_FILE}`" if "int8" in parity else ""
    )
    lines = [
        "", CARD_HEADING, "",
        f"{files}: the whole model (MADD, segment grid, AM-ResNet, encoder, "
        "fusion, classifier) from the waveform to the posteriors, opset "
        f"{report['opset']}; inputs `wavs` `[batch, time]` at "
        f"{report['sample_rate']} Hz and `wav_lens` `[batch]` (relative "
        "lengths), output `posteriors` `[batch, classes]` (classes in the "
        "model's `labels` metadata and label_encoder.txt).",
        "",
        "Checked at export: onnxruntime against PyTorch on speech-like clips "
        f"of {', '.join(f'{s:g}' for s in parity['clip_seconds'])} s, each "
        "alone and all in one padded batch: max |posterior difference| "
        f"{parity['max_abs_diff_alone']:.2e} alone, "
        f"{parity['max_abs_diff_padded_batch']:.2e} batched (tolerance "
        f"{parity['tolerance']:g}).",
    ]
    if "int8" in parity:
        q = parity["int8"]
        lines += [
            "",
            f"`{INT8_FILE}` (dynamic int8 MatMul weights, large 1-D "
            "convolutions as MatMuls) on the same clips: "
            f"max deviation {q['max_abs_diff_vs_pytorch_float32']:.4f} from "
            f"float32, top-1 agreement {100 * q['top1_agreement']:.0f}% "
            "(synthetic clips: see the project README for real speech).",
        ]
    lines += [
        "",
        "`amser-sb classify --runtime onnx --model <this folder> file.wav` "
        "(or `--runtime onnx-int8`).",
        "",
    ]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.rstrip() + "\n" + "\n".join(lines))


def export_onnx(model_dir, int8=False, savedir=None, allow_any_yaml=False):
    """Write ``model.onnx`` (and ``model.int8.onnx``) into a model folder.

    The graph is built and checked in a temporary folder next to
    ``model_dir``; only a graph whose onnxruntime posteriors equal
    PyTorch's (``check_parity``) lands in the folder, with ``onnx.json``
    and the model card's ONNX section.

    Arguments
    ---------
    model_dir : str
        A folder written by ``amser-sb export``.
    int8 : bool
        Also write the dynamically quantised ``model.int8.onnx``.
    savedir : str, optional
        SpeechBrain's collection folder for loading (default: temporary).
    allow_any_yaml : bool
        As ``load_classifier``'s.

    Returns
    -------
    dict
        The report written to ``onnx.json``.
    """
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise OnnxExportError(
            f"export-onnx needs onnx and onnxruntime ({err}): pip install "
            "'amser-sb[onnx]'"
        ) from err
    from amser_sb.inference.classify import load_classifier

    if not os.path.isdir(model_dir):
        raise OnnxExportError(
            f"model folder {model_dir} does not exist: write it with "
            "'amser-sb export <experiment folder> <model_dir>'"
        )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(
        prefix=".onnx-", dir=os.path.dirname(os.path.abspath(model_dir))
    ) as staging:
        clf = load_classifier(
            model_dir, savedir=savedir or os.path.join(staging, "sd"),
            allow_any_yaml=allow_any_yaml,
        )
        sample_rate = int(clf.hparams.sample_rate)
        segment = clf.mods.embedding_model.segment
        model = build_onnx(clf, sample_rate)
        for key, value in _metadata(clf, sample_rate).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        path = os.path.join(staging, ONNX_FILE)
        onnx.save_model(model, path)
        del model
        int8_path = None
        if int8:
            int8_path = os.path.join(staging, INT8_FILE)
            ssl = clf.mods.embedding_model.encoder.ssl
            quantize_int8(path, int8_path, convolutions=(
                ssl is None or graph_form(ssl).int8_convolutions))
        parity = check_parity(clf, path, sample_rate, segment, int8_path)
        if not parity["passed"]:
            raise OnnxExportError(
                f"the ONNX graph of {model_dir} does not reproduce PyTorch: "
                f"max |posterior difference| {parity['max_abs_diff_alone']:.2e}"
                f" alone, {parity['max_abs_diff_padded_batch']:.2e} in a "
                f"padded batch (tolerance {PARITY_TOLERANCE:g}); nothing was "
                "written (report it as a bug)"
            )
        report = {
            "onnx_file": ONNX_FILE,
            "int8_file": INT8_FILE if int8 else None,
            "opset": OPSET,
            "exporter": "torch.onnx.export(dynamo=True) on torch.export "
                        "(non-strict)",
            "sample_rate": sample_rate,
            "segment_samples": segment,
            "parity": parity,
            "versions": {
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "python": platform.python_version(),
            },
            "export_seconds": round(time.perf_counter() - start, 1),
        }
        for name in (ONNX_FILE, INT8_FILE):
            source = os.path.join(staging, name)
            if os.path.isfile(source):
                os.replace(source, os.path.join(model_dir, name))
        if not int8 and os.path.isfile(os.path.join(model_dir, INT8_FILE)):
            # an int8 file of an older export would not match this one
            os.remove(os.path.join(model_dir, INT8_FILE))
    with open(os.path.join(model_dir, REPORT_FILE), "w") as handle:
        json.dump(report, handle, indent=2)
    _write_card_section(model_dir, report)
    logger.info(
        "wrote %s (max |posterior difference| vs PyTorch %.2e alone, %.2e "
        "batched) in %.0f s", os.path.join(model_dir, ONNX_FILE),
        parity["max_abs_diff_alone"], parity["max_abs_diff_padded_batch"],
        report["export_seconds"],
    )
    return report
