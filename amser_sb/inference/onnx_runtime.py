"""Classify with onnxruntime: the ``model.onnx`` of a model folder.

``OnnxClassifier`` runs the graph written by ``amser-sb export-onnx``
(``amser_sb.inference.onnx_export``) and answers ``classify_batch`` like SpeechBrain's
``EncoderClassifier``, with the folder's label encoder and ``hparams``
(``sample_rate``, MADD options), so ``amser_sb.inference.classify.classify_file`` and
``classify_long`` (windows, silence, batching) run on it unchanged:
``amser-sb classify --runtime onnx`` (``onnx-int8`` for
``model.int8.onnx``) prints what the PyTorch path prints.

onnxruntime itself needs neither PyTorch nor SpeechBrain; see the README's
torch-free example for the few lines that use the graph directly.

Authors
 * amser-sb contributors
"""

import json
import os
from types import SimpleNamespace

import numpy as np
import torch

from amser_sb.core.errors import AmserUserError
from amser_sb.inference.onnx_contract import (
    ONNX_FILE,
    INT8_FILE,
    OUTPUT_NAME,
)

#: ``--runtime`` values and the file each loads.
RUNTIME_FILES = {"onnx": ONNX_FILE, "onnx-int8": INT8_FILE}


class OnnxModelMissingError(AmserUserError, FileNotFoundError):
    """The model folder has no ONNX file (or onnxruntime is missing)."""


class OnnxOptionError(AmserUserError, ValueError):
    """An option of the PyTorch path given with an onnxruntime one."""


class OnnxClassifier:
    """A model folder's ONNX graph behind ``EncoderClassifier``'s interface.

    Arguments
    ---------
    model_dir : str
        A model folder holding ``model.onnx`` (``amser-sb export-onnx``).
    int8 : bool
        Load ``model.int8.onnx`` instead.
    threads : int
        onnxruntime intra-op threads (0: onnxruntime's default, all cores).

    Example
    -------
    >>> try:
    ...     OnnxClassifier("empty_folder")
    ... except OnnxModelMissingError as err:
    ...     print(err)
    model folder empty_folder has no model.onnx; write it with 'amser-sb export-onnx empty_folder'
    """

    def __init__(self, model_dir, int8=False, threads=0):
        name = INT8_FILE if int8 else ONNX_FILE
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            flag = " --int8" if int8 else ""
            raise OnnxModelMissingError(
                f"model folder {model_dir} has no {name}; write it with "
                f"'amser-sb export-onnx{flag} {model_dir}'"
            )
        try:
            import onnxruntime
        except ImportError as err:
            raise OnnxModelMissingError(
                f"--runtime onnx needs onnxruntime ({err}): pip install "
                "'amser-sb[onnx]' (or pip install onnxruntime)"
            ) from err
        options = onnxruntime.SessionOptions()
        # errors only: the optimiser's "cannot constant fold CastLike"
        # notes on quantised graphs are not the user's concern
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = onnxruntime.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        self.hparams = SimpleNamespace(
            sample_rate=int(meta["sample_rate"]),
            madd_window=int(meta["madd_window"]),
            madd_factor=float(meta["madd_factor"]),
            label_encoder=self._label_encoder(model_dir, meta, path),
        )
        self.min_samples = int(meta.get("min_samples", 1))
        self.path = path

    @staticmethod
    def _label_encoder(model_dir, meta, path):
        """The folder's label encoder, checked against the graph's labels."""
        from speechbrain.dataio.encoder import CategoricalEncoder

        labels_file = os.path.join(model_dir, "label_encoder.txt")
        if not os.path.isfile(labels_file):
            raise OnnxModelMissingError(
                f"model folder {model_dir} has no label_encoder.txt; "
                "re-export it with 'amser-sb export <experiment> <model_dir>'"
            )
        encoder = CategoricalEncoder()
        encoder.load(labels_file)
        labels = [encoder.ind2lab[i] for i in range(len(encoder))]
        graph_labels = json.loads(meta.get("labels", "null"))
        if graph_labels is not None and graph_labels != labels:
            raise OnnxModelMissingError(
                f"{path} was exported for the classes {graph_labels}, but "
                f"{labels_file} holds {labels}; re-run 'amser-sb "
                f"export-onnx {model_dir}'"
            )
        return encoder

    def posteriors(self, wavs, wav_lens=None):
        """Class posteriors ``[batch, classes]`` (numpy).

        Arguments
        ---------
        wavs : array-like
            ``[batch, time]`` waveforms at ``hparams.sample_rate``.
        wav_lens : array-like, optional
            ``[batch]`` relative lengths; None means all full length.

        Returns
        -------
        numpy.ndarray
        """
        wavs = np.asarray(wavs, dtype=np.float32)
        if wavs.ndim == 1:
            wavs = wavs[None]
        if wav_lens is None:
            wav_lens = np.ones(wavs.shape[0], dtype=np.float32)
        wav_lens = np.asarray(wav_lens, dtype=np.float32)
        shortest = int(np.round(wav_lens.min() * wavs.shape[1]))
        if shortest < self.min_samples:
            raise ValueError(
                f"a waveform has {shortest} samples, fewer than the model's "
                f"{self.min_samples} (one encoder frame): nothing to classify"
            )
        return self.session.run(
            [OUTPUT_NAME], {"wavs": wavs, "wav_lens": wav_lens}
        )[0]

    def classify_batch(self, wavs, wav_lens=None):
        """``EncoderClassifier.classify_batch``'s outputs, from onnxruntime.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]`` waveforms.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths.

        Returns
        -------
        out_prob : torch.Tensor
            ``[batch, classes]`` posteriors.
        score : torch.Tensor
            ``[batch]`` the largest posterior.
        index : torch.Tensor
            ``[batch]`` its class index.
        text_lab : list of str
            Its class name.
        """
        lens = None if wav_lens is None else wav_lens.cpu().numpy()
        probs = torch.from_numpy(self.posteriors(wavs.cpu().numpy(), lens))
        score, index = probs.max(dim=-1)
        encoder = self.hparams.label_encoder
        return probs, score, index, [encoder.ind2lab[int(i)] for i in index]


def load_onnx_classifier(model_dir, runtime="onnx", threads=0):
    """An ``OnnxClassifier`` for a ``--runtime`` value.

    Arguments
    ---------
    model_dir : str
        Model folder.
    runtime : str
        ``"onnx"`` or ``"onnx-int8"``.
    threads : int
        onnxruntime intra-op threads (0: its default).

    Returns
    -------
    OnnxClassifier
    """
    if runtime not in RUNTIME_FILES:
        raise ValueError(
            f"runtime must be one of {sorted(RUNTIME_FILES)}, got {runtime!r}"
        )
    if not os.path.isdir(model_dir):
        raise OnnxModelMissingError(
            f"model folder {model_dir} does not exist (--runtime "
            f"{runtime} needs a local folder holding {RUNTIME_FILES[runtime]})"
        )
    return OnnxClassifier(
        model_dir, int8=runtime == "onnx-int8", threads=threads
    )
