"""The ONNX file's contract, shared by its export and its runtime.

File names in the model folder, opset, input and output names, the parity
tolerance the export guarantees, its error class, and the speech-like clips
it is checked on.

Authors
 * amser-sb contributors
"""

import numpy as np
import torch

from amser_sb.core.errors import AmserUserError

#: ONNX opset of the exported graph (STFT needs 17; 20 has ``Gelu`` as one
#: operator, which onnxruntime runs fused: it does not fuse the opset-18
#: form, five elementwise operators).
OPSET = 20
#: The float32 graph and the int8 one, in the model folder.
ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
#: What the export checked, in the model folder.
REPORT_FILE = "onnx.json"
#: Largest |posterior difference| allowed between onnxruntime and PyTorch.
PARITY_TOLERANCE = 1e-4
#: Names of the graph's inputs and output.
INPUT_NAMES = ("wavs", "wav_lens")
OUTPUT_NAME = "posteriors"
#: Heading of the model card's section (replaced on every export).
CARD_HEADING = "## ONNX (onnxruntime, no PyTorch)"


class OnnxExportError(AmserUserError, RuntimeError):
    """The model folder cannot be exported, or the export does not match."""


def check_clips(seconds, sample_rate, seed=0):
    """Speech-like test clips: harmonic bursts, pauses, a noise floor.

    Arguments
    ---------
    seconds : list of float
        Clip lengths.
    sample_rate : int
        Their rate.
    seed : int
        Random seed.

    Returns
    -------
    list of numpy.ndarray
        ``[time]`` float32 clips.

    Example
    -------
    >>> [clip.shape for clip in check_clips([0.5, 1.0], 16000)]
    [(8000,), (16000,)]
    """
    rng = np.random.default_rng(seed)
    clips = []
    for length in seconds:
        n = int(round(length * sample_rate))
        t = np.arange(n) / sample_rate
        f0 = rng.uniform(90, 250) * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * t))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 8))
        syllables = np.clip(np.sin(2 * np.pi * 2.5 * t + rng.uniform()), 0, 1)
        wav = 0.1 * voice * syllables + 1e-3 * rng.standard_normal(n)
        clips.append(wav.astype(np.float32))
    return clips


def pad_batch(clips):
    """Zero-pad clips into ``(wavs [batch, time], wav_lens [batch])``.

    Arguments
    ---------
    clips : list of numpy.ndarray

    Returns
    -------
    (torch.Tensor, torch.Tensor)
    """
    longest = max(len(clip) for clip in clips)
    wavs = torch.zeros(len(clips), longest)
    for i, clip in enumerate(clips):
        wavs[i, : len(clip)] = torch.from_numpy(np.asarray(clip))
    lens = torch.tensor([len(clip) / longest for clip in clips])
    return wavs, lens
