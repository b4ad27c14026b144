"""Classify audio files with an exported model, short clips and long audio.

The model is loaded with SpeechBrain's plain ``EncoderClassifier`` (see
``load_classifier``). Short files are classified whole. Long recordings are
streamed in windows of ``window`` seconds every ``hop`` seconds: each window
is read from disk on its own (memory stays bounded by the window batch,
whatever the file's length), downmixed, resampled to the model's rate,
checked for voiced audio with MADD (windows with less than
``min_voiced`` of their samples voiced are reported as ``silence`` and not
classified), and classified in batches. The overall label is the arg-max of
the duration-weighted mean posterior over the classified windows.

Speed (``benchmarks/inference_speed.py``): windows of equal length are
encoded in one batched backbone call (exact, see ``SSLBackbone``);
``load_classifier(..., quantize=True, bf16=True)`` adds the opt-in
reduced-precision speed-ups of ``amser_sb.inference.precision`` (dynamic int8 Linear
layers, bfloat16 convolutional feature encoder), which move the posteriors
by a small measured amount.

Authors
 * amser-sb contributors
"""

import logging
import os
from dataclasses import dataclass, field

import torch
import torchaudio

from amser_sb.core import audio as core_audio
from amser_sb.core.errors import AmserUserError
from amser_sb.core.madd import madd
from amser_sb.inference import model_checks
from amser_sb.inference.hub_offline import hub_offline

logger = logging.getLogger(__name__)

SILENCE_LABEL = "silence"

#: Files every exported model folder must hold (``amser-sb export``).
MODEL_FILES = (
    "hyperparams.yaml",
    "embedding_model.ckpt",
    "classifier.ckpt",
    "label_encoder.txt",
    "label_encoder.ckpt",  # what EncoderClassifier's pretrainer loads
)


class ModelFolderMismatchError(AmserUserError, ValueError):
    """A model folder whose ``hyperparams.yaml`` does not match its weights
    or its label encoder (e.g. an edited ``n_classes``)."""


def load_classifier(
    source,
    savedir=None,
    offline=None,
    device="cpu",
    quantize=False,
    bf16=False,
    allow_any_yaml=False,
):
    """Load an exported model with SpeechBrain's plain ``EncoderClassifier``.

    Arguments
    ---------
    source : str
        A model folder written by ``amser-sb export`` or a Hub id.
    savedir : str, optional
        Where SpeechBrain collects the model files (default: a folder
        ``pretrained_models/<name>`` like SpeechBrain's own default). For a
        local folder its links are renewed on every load, so a savedir
        used before by another model never serves that model's files.
    offline : bool, optional
        Hub client offline while loading, restored afterwards (default:
        True for a local folder, unchanged for a Hub id; see
        ``amser_sb.inference.hub_offline``).
    device : str
        Torch device.
    quantize : bool
        Dynamic int8 quantisation of the embedding model's Linear layers
        (CPU only; faster, posteriors move slightly; see
        ``amser_sb.inference.precision``).
    bf16 : bool
        Run the backbone's convolutional feature encoder in bfloat16 (CPU
        only; fast on CPUs with AVX512-BF16 or AMX, slower elsewhere).
    allow_any_yaml : bool
        Load a local folder's ``hyperparams.yaml`` even if it names code
        outside the allow-list of ``amser_sb.config.yaml_trust`` (it runs that
        code).

    Returns
    -------
    speechbrain.inference.classifiers.EncoderClassifier
    """
    if (quantize or bf16) and str(device) != "cpu":
        raise ValueError(
            "quantize/bf16 are CPU speed-ups; use them with device='cpu'"
        )
    from speechbrain.inference.classifiers import EncoderClassifier
    from speechbrain.utils.fetching import FetchConfig

    local = os.path.isdir(source)
    if local:
        for name in MODEL_FILES:
            if not os.path.isfile(os.path.join(source, name)):
                # SpeechBrain would otherwise fail later or, for the label
                # encoder, silently load an empty one.
                raise FileNotFoundError(
                    f"model folder {source} has no {name}; re-export it with "
                    "'amser-sb export <experiment folder> <model_dir>'"
                )
        from amser_sb.config.yaml_trust import check_hyperparams

        check_hyperparams(
            os.path.join(source, "hyperparams.yaml"), allow_any_yaml
        )
        model_checks.check_checkpoints(source)
        check_model_classes(source)
    elif os.path.sep in source and not source.count("/") == 1:
        raise FileNotFoundError(
            f"model folder {source} does not exist (and is no Hub id)"
        )
    if savedir is None:
        savedir = os.path.join(
            "pretrained_models", os.path.basename(os.path.normpath(source))
        )
    if offline is None:
        offline = local
    if not local and not allow_any_yaml:  # check before SpeechBrain loads it
        from amser_sb.config.yaml_trust import check_hyperparams

        with hub_offline(offline):
            check_hyperparams(
                model_checks.fetch_hub_hyperparams(source, savedir)
            )
    with hub_offline(offline):
        # SpeechBrain reuses whatever file a savedir already holds, from any
        # source: a second model folder with the same name (same default
        # savedir) would silently load the first one's weights. Local
        # folders are re-linked on every load.
        try:
            clf = EncoderClassifier.from_hparams(
                source=os.path.abspath(source) if local else source,
                savedir=savedir,
                run_opts={"device": device},
                fetch_config=FetchConfig(overwrite=local),
            )
        except RuntimeError as err:
            if "size mismatch" not in str(err):
                raise
            where = os.path.join(source, "hyperparams.yaml")
            detail = next(
                line.strip() for line in str(err).splitlines()
                if "size mismatch" in line
            )
            raise ModelFolderMismatchError(
                f"{where} does not match the weights of the model ({detail}); "
                "restore the values it was exported with, or re-export the "
                "model with 'amser-sb export <experiment folder> <model_dir>'"
            ) from err
    if len(clf.hparams.label_encoder.lab2ind) == 0:
        raise RuntimeError(
            f"model {source} loaded an empty label encoder; its "
            "label_encoder.txt is missing or empty"
        )
    if quantize or bf16:
        from amser_sb.inference.precision import reduce_precision

        reduce_precision(clf.mods.embedding_model, int8=quantize, bf16=bf16)
    return clf


def _output_size(classifier_ckpt):
    """Outputs of a classifier checkpoint: the size of its last bias."""
    state = torch.load(classifier_ckpt, map_location="cpu", weights_only=True)
    biases = [v for k, v in state.items() if k.endswith("bias") and v.dim()]
    return int(biases[-1].shape[0]) if biases else None


def check_model_classes(model_dir):
    """A model folder's ``n_classes`` matches its label encoder and weights.

    An edited ``n_classes`` in ``hyperparams.yaml`` would otherwise surface
    as a size-mismatch traceback while the weights load.

    Arguments
    ---------
    model_dir : str
        Exported model folder.

    Raises
    ------
    ModelFolderMismatchError
        Naming ``hyperparams.yaml``, the numbers and the fix.
    """
    from speechbrain.dataio.encoder import CategoricalEncoder

    from amser_sb.inference.export import read_run_hparams

    hparams_file = os.path.join(model_dir, "hyperparams.yaml")
    declared = read_run_hparams(hparams_file).get("n_classes")
    encoder = CategoricalEncoder()
    encoder.load(os.path.join(model_dir, "label_encoder.ckpt"))
    labels = [encoder.ind2lab[i] for i in range(len(encoder))]
    outputs = _output_size(os.path.join(model_dir, "classifier.ckpt"))
    if declared is None or declared == len(labels) == (outputs or declared):
        return
    raise ModelFolderMismatchError(
        f"{hparams_file}: n_classes is {declared}, but label_encoder.txt "
        f"holds {len(labels)} classes ({', '.join(labels)}) and "
        f"classifier.ckpt has {outputs} outputs; set n_classes: "
        f"{len(labels)} in that file (or re-export the model)"
    )


def audio_info(path):
    """:func:`amser_sb.core.audio.audio_info` of a file a user names (its
    errors do not point at the data preparation).

    Arguments
    ---------
    path : str
        Audio file.

    Returns
    -------
    amser_sb.core.audio.AudioInfo
    """
    return core_audio.audio_info(path, prep_hint=False)


def load_waveform(path, sample_rate, start=0, stop=None):
    """Read (part of) a file as mono float audio at ``sample_rate``.

    Arguments
    ---------
    path : str
        Audio file (any format libsndfile reads; checked by
        :func:`amser_sb.core.audio.audio_info`, whose ``AudioError`` names the
        file and the fix).
    sample_rate : int
        Target rate; other rates are resampled.
    start, stop : int
        Portion to read ``[start, stop)``, in samples at the file's own
        rate; ``stop`` None reads to the end.

    Returns
    -------
    torch.Tensor
        ``[time]`` float32 waveform (channels averaged).

    Example
    -------
    >>> import numpy as np, soundfile
    >>> path = str(getfixture("tmp_path") / "a.wav")
    >>> soundfile.write(path, np.zeros((8000, 2)), 8000)
    >>> load_waveform(path, 16000).shape
    torch.Size([16000])
    """
    rate = audio_info(path).samplerate
    wav = core_audio.read_audio(path, start=start, stop=stop,
                                prep_hint=False)
    model_checks.check_finite(wav, path)
    if rate != sample_rate:
        wav = torchaudio.functional.resample(wav, rate, sample_rate)
    return wav


@dataclass
class WindowResult:
    """The emotion of one window of a long recording."""

    start: float
    end: float
    label: str
    posteriors: dict = field(default_factory=dict)
    voiced: float = 1.0


@dataclass
class FileResult:
    """The emotion of one file, overall and (for long audio) per window."""

    path: str
    label: str
    posteriors: dict
    duration: float
    windows: list = field(default_factory=list)

    def to_dict(self):
        """Plain-JSON form of the result.

        Returns
        -------
        dict
        """
        out = {
            "file": self.path,
            "label": self.label,
            "posteriors": self.posteriors,
            "duration": round(self.duration, 3),
        }
        if self.windows:
            out["windows"] = [
                {
                    "start": round(w.start, 3),
                    "end": round(w.end, 3),
                    "label": w.label,
                    "voiced": round(w.voiced, 3),
                    "posteriors": w.posteriors,
                }
                for w in self.windows
            ]
        return out


def _labels(clf):
    enc = clf.hparams.label_encoder
    return [enc.ind2lab[i] for i in range(len(enc.ind2lab))]


def _posteriors(clf, wavs, wav_lens):
    """Class probabilities ``[batch, classes]`` from the classifier output."""
    with torch.inference_mode():
        out, _, _, _ = clf.classify_batch(wavs, wav_lens)
    out = out.reshape(out.shape[0], -1).float()
    if not torch.isfinite(out).all():  # finite audio in (check_finite)
        raise model_checks.DamagedModelError(
            "the model gives NaN or infinite outputs for finite audio: its "
            "weights are damaged; re-export it with 'amser-sb export "
            "<experiment folder> <model_dir>'"
        )
    # The exported classifier outputs probabilities; accept log-probs too.
    if (out <= 0).all():
        out = out.exp()
    return out / out.sum(dim=1, keepdim=True)


def _model_rate(clf):
    """The sample rate a loaded model declares (its ``sample_rate``)."""
    return int(clf.hparams.sample_rate)


def classify_file(clf, path):
    """Classify a whole file.

    Arguments
    ---------
    clf : EncoderClassifier
        Loaded model.
    path : str
        Audio file (stereo is downmixed, other rates resampled to the
        model's ``sample_rate``).

    Returns
    -------
    FileResult
    """
    sample_rate = _model_rate(clf)
    wav = load_waveform(path, sample_rate)
    shortest = model_checks.shortest_input(clf)
    if wav.numel() < shortest:
        raise core_audio.AudioError(
            f"{path} is {wav.numel() / sample_rate:.3f} s long, shorter than "
            f"the {shortest / sample_rate:.3f} s this model needs; classify "
            "a longer recording", reason="too short",
        )
    probs = _posteriors(clf, wav.unsqueeze(0), torch.ones(1))[0]
    labels = _labels(clf)
    post = {lab: round(float(p), 4) for lab, p in zip(labels, probs)}
    return FileResult(
        path, labels[int(probs.argmax())], post, wav.numel() / sample_rate
    )


def iter_windows(path, window, hop, sample_rate):
    """Yield ``(start_s, end_s, wav)`` windows of a file, read one by one.

    Arguments
    ---------
    path : str
        Audio file.
    window, hop : float
        Window length and hop in seconds.
    sample_rate : int
        Rate of the yielded windows.

    Yields
    ------
    (float, float, torch.Tensor)
        Start and end in seconds, and the ``[time]`` window (the last one
        may be shorter).
    """
    if window <= 0 or hop <= 0:
        raise ValueError("--window and --hop must be positive seconds")
    info = audio_info(path)
    rate = info.samplerate
    win, step = int(round(window * rate)), int(round(hop * rate))
    start = 0
    while start < info.frames:
        frames = min(win, info.frames - start)
        wav = load_waveform(path, sample_rate, start, start + frames)
        yield start / rate, (start + frames) / rate, wav
        if start + win >= info.frames:
            break
        start += step


def classify_long(
    clf,
    path,
    window=4.0,
    hop=2.0,
    batch_size=8,
    min_voiced=0.1,
):
    """Per-window emotions with timestamps for a recording of any length.

    Arguments
    ---------
    clf : EncoderClassifier
        Loaded model.
    path : str
        Audio file.
    window, hop : float
        Window length and hop, seconds (the windows are read at the
        model's ``sample_rate``).
    batch_size : int
        Windows classified together (bounds memory).
    min_voiced : float
        Windows whose MADD-voiced fraction (with the model's
        ``madd_window`` and ``madd_factor``) is below this are
        ``silence``.

    Returns
    -------
    FileResult
        Overall label (``silence`` if no window is voiced) and windows.
    """
    sample_rate = _model_rate(clf)
    madd_options = {"window": int(clf.hparams.madd_window),
                    "factor": float(clf.hparams.madd_factor)}
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    labels = _labels(clf)
    results, pending = [], []
    total = torch.zeros(len(labels))
    weight = 0.0
    duration = 0.0

    def flush():
        nonlocal total, weight
        if not pending:
            return
        longest = max(w.numel() for _, w in pending)
        batch = torch.zeros(len(pending), longest)
        for i, (_, w) in enumerate(pending):
            batch[i, : w.numel()] = w
        lens = torch.tensor([w.numel() / longest for _, w in pending])
        probs = _posteriors(clf, batch, lens)
        for (res, w), p in zip(pending, probs):
            res.label = labels[int(p.argmax())]
            res.posteriors = {
                lab: round(float(v), 4) for lab, v in zip(labels, p)
            }
            dur = w.numel() / sample_rate
            total += p * dur
            weight += dur
        pending.clear()

    for start, end, wav in iter_windows(path, window, hop, sample_rate):
        duration = end
        _, mask = madd(wav, **madd_options)
        voiced = float(mask.mean()) if wav.numel() else 0.0
        res = WindowResult(start, end, SILENCE_LABEL, {}, voiced)
        results.append(res)
        if voiced >= min_voiced:
            pending.append((res, wav))
            if len(pending) >= batch_size:
                flush()
    flush()
    if weight == 0:
        return FileResult(path, SILENCE_LABEL, {}, duration, results)
    mean = total / weight
    post = {lab: round(float(v), 4) for lab, v in zip(labels, mean)}
    return FileResult(
        path, labels[int(mean.argmax())], post, duration, results
    )
