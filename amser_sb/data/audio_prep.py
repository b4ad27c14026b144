"""Audio preparation of a corpus: checks, conversion to 16 kHz, MADD.

The recipe reads 16 kHz mono files. Recordings at another rate or with
several channels are converted **once**, when a corpus is prepared:
downmixed to mono (mean of the channels), resampled with ``torchaudio``'s
band-limited sinc resampler (filter bank built once per rate; see
:func:`resampling_ratio` for awkward rates such as TESS's) and written as
16-bit PCM under ``<save_folder>/wav16k/<path relative to data_folder>``
(:func:`analyse_audio`); the manifest's ``wav`` points at that copy. Files
already 16 kHz mono are used in place. Rates below ``min_sample_rate``
(16 kHz) are refused (upsampling cannot restore the missing band). MADD
runs on the 16 kHz signal exactly as written (:func:`voiced_intervals`).
Converting once (rather than on the fly) keeps every epoch's data loading
as cheap as IEMOCAP's and lets the feature cache and the ``voiced`` sample
intervals refer to one fixed signal.

Files are read through :mod:`amser_sb.core.audio`, so that an unreadable, empty,
truncated or Git-LFS-pointer file becomes a skip reason naming the file
and the fix, never a silent short signal.

Authors
 * amser-sb contributors
"""

import functools
import inspect
import os

import numpy as np
import soundfile as sf
import torch

from amser_sb.core.audio import AudioError, audio_info, read_audio
from amser_sb.core.madd import format_intervals, madd, mask_to_intervals

SAMPLE_RATE = 16000
WAV16K_FOLDER = "wav16k"

#: ``skipped.csv`` reason of each :class:`amser_sb.core.audio.AudioError` kind
#: (others are ``unreadable audio``).
AUDIO_SKIP_REASONS = {
    "missing audio": "missing wav",
    "empty audio": "empty audio",
    "truncated audio": "truncated audio",
}

#: Largest reduced denominator of the resampling ratio (see
#: :func:`resampling_ratio`).
MAX_RATIO_DENOMINATOR = 1000


def resampling_ratio(rate, target=SAMPLE_RATE):
    """The ``(orig, new)`` pair handed to the resampler for ``rate``.

    ``torchaudio``'s sinc resampler builds a ``[new, orig]``-sized filter
    bank for the reduced ratio ``new / orig``; for an awkward rate such as
    TESS's 24414 Hz (``8000 / 12207``) that is 8000 x 12227 taps (400 MB,
    seconds per file). The ratio is therefore replaced by its best
    rational approximation with a denominator of at most
    :data:`MAX_RATIO_DENOMINATOR`: exact for every common rate (8, 11.025,
    22.05, 24, 32, 44.1, 48, 88.2, 96 kHz), and off by a relative 1e-6
    or less otherwise (a pitch and duration change far below anything
    audible; the 16 kHz output's length follows the approximated ratio).

    Arguments
    ---------
    rate : int
        Source sample rate.
    target : int
        Target sample rate.

    Returns
    -------
    (int, int)
        ``(orig_freq, new_freq)`` for ``torchaudio.functional.resample``.

    Example
    -------
    >>> resampling_ratio(44100), resampling_ratio(48000)
    ((441, 160), (3, 1))
    >>> orig, new = resampling_ratio(24414)
    >>> orig <= 1000 and abs(new / orig / (16000 / 24414) - 1) < 1e-6
    True
    """
    from fractions import Fraction

    ratio = Fraction(target, rate).limit_denominator(MAX_RATIO_DENOMINATOR)
    return ratio.denominator, ratio.numerator


def convert_to_16k(wav, rate):
    """Resample a mono waveform to 16 kHz (band-limited sinc).

    Arguments
    ---------
    wav : numpy.ndarray
        ``[time]`` float waveform.
    rate : int
        Its sample rate.

    Returns
    -------
    numpy.ndarray
        ``[time * 16000 / rate]`` float32 waveform, clipped to [-1, 1].

    Example
    -------
    >>> convert_to_16k(np.zeros(44100, dtype=np.float32), 44100).shape
    (16000,)
    """
    if rate != SAMPLE_RATE:
        resampler = _resampler(*resampling_ratio(rate))
        with torch.no_grad():
            wav = resampler(torch.from_numpy(wav)).numpy()
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _resampler(orig, new):
    """A ``torchaudio`` resampler whose filter bank is built once."""
    import torchaudio

    return torchaudio.transforms.Resample(orig, new)


def madd_options(window, factor):
    """Every MADD keyword argument: the two given, the rest at defaults.

    Defaults are recorded too, so that a change of them in
    ``amser_sb.core.madd`` invalidates a preparation's stamp.

    Arguments
    ---------
    window : int
        MADD window, samples.
    factor : float
        MADD factor.

    Returns
    -------
    dict
        Keyword arguments of :func:`amser_sb.core.madd.madd`.

    Example
    -------
    >>> options = madd_options(400, 3.0)
    >>> options["window"], options["factor"]
    (400, 3.0)
    """
    options = {
        name: p.default
        for name, p in inspect.signature(madd).parameters.items()
        if p.default is not inspect.Parameter.empty and name != "wav_lens"
    }
    options.update(window=int(window), factor=float(factor))
    return options


def voiced_intervals(wav, options):
    """MADD on one waveform -> its formatted voiced sample intervals.

    Arguments
    ---------
    wav : numpy.ndarray
        ``[time]`` float waveform at 16 kHz.
    options : dict
        Keyword arguments of :func:`amser_sb.core.madd.madd`
        (:func:`madd_options`).

    Returns
    -------
    str
        Space-separated ``start:end`` intervals (empty: no voiced sample).

    Example
    -------
    >>> wav = np.zeros(4000, dtype=np.float32)
    >>> wav[1000:3000] = np.sin(np.arange(2000) / 5)
    >>> voiced_intervals(wav, madd_options(400, 3.0)) != ""
    True
    """
    wav = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    _, mask = madd(wav, **options)
    return format_intervals(mask_to_intervals(mask))


def analyse_audio(path, out_path, min_sample_rate, madd_options):
    """Check one file, convert it to 16 kHz mono if needed, run MADD.

    Arguments
    ---------
    path : str
        Source audio file.
    out_path : str
        Where a converted copy goes (written only if needed).
    min_sample_rate : int
        Lower rates are refused.
    madd_options : dict
        Keyword arguments of ``amser_sb.core.madd.madd``.

    Returns
    -------
    dict
        ``status`` (``ok`` or a skip reason), ``detail``, ``wav`` (the
        16 kHz mono file), ``num_samples``, ``voiced``, ``rate``,
        ``channels``, ``converted``.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "a.wav")
    >>> t = np.arange(44100) / 44100
    >>> sf.write(path, 0.5 * np.sin(2 * np.pi * 220 * t), 44100)
    >>> info = analyse_audio(path, os.path.join(folder, "16k", "a.wav"),
    ...                      16000, {"window": 400, "factor": 3.0})
    >>> info["status"], info["num_samples"], info["converted"]
    ('ok', 16000, True)
    """
    out = {"status": "ok", "detail": "", "wav": path, "num_samples": None,
           "voiced": None, "rate": None, "channels": None,
           "converted": False}
    try:
        info = audio_info(path)
        wav = read_audio(path).numpy()
    except AudioError as err:
        reason = AUDIO_SKIP_REASONS.get(err.reason, "unreadable audio")
        out.update(status=reason, detail=str(err))
        return out
    rate, channels = info.samplerate, info.channels
    out.update(rate=rate, channels=channels)
    if rate < min_sample_rate:
        out.update(
            status="sample rate too low",
            detail=(
                f"{path}: {rate} Hz < min_sample_rate={min_sample_rate} Hz; "
                "upsampling cannot restore the missing band (pass "
                f"min_sample_rate={rate} to accept it anyway)"
            ),
        )
        return out
    if not np.isfinite(wav).all():
        out.update(status="non-finite samples",
                   detail=f"{path}: NaN or infinite samples")
        return out
    if rate != SAMPLE_RATE or channels != 1:
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        sf.write(out_path, convert_to_16k(wav, rate), SAMPLE_RATE,
                 subtype="PCM_16")
        try:  # MADD on exactly what is used
            wav = read_audio(out_path).numpy()
        except AudioError:
            wav = np.zeros(0, dtype=np.float32)
        out.update(wav=out_path, converted=True)
    out["num_samples"] = int(wav.shape[0])
    if out["num_samples"] == 0:
        out.update(status="empty audio",
                   detail=f"{path}: no samples left at {SAMPLE_RATE} Hz")
        return out
    voiced = voiced_intervals(wav, madd_options)
    if not voiced:
        out.update(
            status="no voiced samples",
            detail=f"{path}: MADD finds no voiced sample (digital silence)",
        )
        return out
    out["voiced"] = voiced
    return out
