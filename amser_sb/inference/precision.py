"""Reduced-precision CPU inference: int8 Linear layers, bfloat16 convolutions.

Two opt-in speed-ups for inference with an exported model (see
``amser_sb.inference.classify.load_classifier``), each trading a small, measured
deviation of the posteriors for time (``benchmarks/inference_speed.py``):

* **int8**: dynamic int8 quantisation of every ``torch.nn.Linear`` layer
  (``torch.ao.quantization.quantize_dynamic``): weights stored as int8 per
  tensor, activations quantised on the fly per batch. With a wav2vec2
  backbone these are the transformer's projections and feed-forward
  layers, most of the compute. The classifier head stays in float.
* **bf16**: the backbone's convolutional feature encoder runs under
  ``torch.autocast("cpu", dtype=torch.bfloat16)`` and hands float32 on.
  Fast on CPUs with native bfloat16 instructions (AVX512-BF16, AMX); on
  others oneDNN emulates it and it can be slower than float32.

Both change the modules in place and are for inference only (no
gradients through quantised layers).

Authors
 * amser-sb contributors
"""

import warnings

import torch


class Autocast(torch.nn.Module):
    """Runs a module under CPU autocast and returns float32.

    Arguments
    ---------
    module : torch.nn.Module
        The wrapped module (called with the same arguments).
    dtype : torch.dtype
        Autocast dtype (default ``torch.bfloat16``).

    Example
    -------
    >>> conv = torch.nn.Conv1d(1, 4, 3)
    >>> fast = Autocast(conv)
    >>> x = torch.randn(1, 1, 50)
    >>> out = fast(x)
    >>> out.dtype, out.shape
    (torch.float32, torch.Size([1, 4, 48]))
    >>> bool((out - conv(x)).abs().max() < 0.05)
    True
    """

    def __init__(self, module, dtype=torch.bfloat16):
        super().__init__()
        self.module = module
        self.dtype = dtype

    def forward(self, *args, **kwargs):
        """Call the module under autocast.

        Arguments
        ---------
        *args, **kwargs
            The module's inputs.

        Returns
        -------
        torch.Tensor or tuple
            The module's output, floating-point tensors (also inside a
            tuple or list) as float32.
        """
        with torch.autocast("cpu", dtype=self.dtype):
            out = self.module(*args, **kwargs)
        return _as_float32(out)


def _as_float32(out):
    """Floating-point tensors to float32, through tuples and lists."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(_as_float32(item) for item in out)
    return out


def quantize_linear_int8(module):
    """Dynamic int8 quantisation of all Linear layers, in place.

    ``torch.nn.MultiheadAttention``'s output projection is left in float
    (PyTorch does not quantise it dynamically).

    Arguments
    ---------
    module : torch.nn.Module
        Model in eval mode.

    Returns
    -------
    torch.nn.Module
        ``module`` with ``DynamicQuantizedLinear`` layers.

    Example
    -------
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 8)).eval()
    >>> x = torch.randn(2, 8)
    >>> ref = model(x)
    >>> q = quantize_linear_int8(model)
    >>> q[0]._get_name()
    'DynamicQuantizedLinear'
    >>> bool((q(x) - ref).abs().max() < 0.1)
    True
    """
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the eager
        # dynamic quantisation used here still ships with torch.
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantize_dynamic(
            module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
        )


def _backbones(module):
    """Hugging Face wav2vec2-like models inside ``module``."""
    return [
        sub
        for sub in module.modules()
        if isinstance(getattr(sub, "feature_extractor", None), torch.nn.Module)
        and hasattr(sub, "encoder")
    ]


def bf16_feature_encoders(module):
    """Run the convolutional feature encoder of each backbone in bfloat16.

    Arguments
    ---------
    module : torch.nn.Module
        Model holding Hugging Face wav2vec2 / HuBERT / WavLM models.

    Returns
    -------
    int
        Number of feature encoders switched (already switched ones count).
    """
    count = 0
    for backbone in _backbones(module):
        if not isinstance(backbone.feature_extractor, Autocast):
            backbone.feature_extractor = Autocast(backbone.feature_extractor)
        count += 1
    return count


def reduce_precision(model, int8=False, bf16=False):
    """Apply the chosen reduced-precision speed-ups to a model, in place.

    Arguments
    ---------
    model : torch.nn.Module
        The embedding model of an exported classifier (eval mode).
    int8 : bool
        Dynamic int8 quantisation of the Linear layers.
    bf16 : bool
        bfloat16 convolutional feature encoder of the backbone.

    Returns
    -------
    torch.nn.Module
        ``model``.
    """
    if bf16 and bf16_feature_encoders(model) == 0:
        raise ValueError(
            "bf16 needs a wav2vec2-like backbone (this model has none; "
            "drop --bf16)"
        )
    if int8:
        quantize_linear_int8(model)
    return model
