"""Which feature caches a training run uses.

The encoder's outputs are cached (:class:`FeatureCache`) when the run asks
for it (``use_feature_cache``) and the encoder is frozen, or partly
fine-tuned (the cache then holds the states below the fine-tuned top
layers, see ``SpeechEncoder.extract_frozen``). AM-ResNet's outputs are
cached beside them when AM-ResNet is frozen and fused (the second stage of
the paper's two-stage training). A fine-tuned encoder changes its outputs
every step: no cache, with a warning.

Authors
 * amser-sb contributors
"""

import logging

from amser_sb.training.feature_cache import FeatureCache

logger = logging.getLogger(__name__)


def encoder_cache(use_cache, backbone, folder, dtype):
    """The encoder's feature cache, or None.

    Arguments
    ---------
    use_cache : bool or None
        The run's ``use_feature_cache``.
    backbone : torch.nn.Module or None
        The encoder branch in use (None: no encoder branch).
    folder : str
        Cache folder.
    dtype : str
        Stored dtype (``feature_cache_dtype``).

    Returns
    -------
    FeatureCache or None

    Example
    -------
    >>> encoder_cache(False, None, "cache", "float16") is None
    True
    """
    if not use_cache:
        return None
    if backbone is None:
        logger.info("feature cache: no encoder branch in use; disabled")
        return None
    if not getattr(backbone, "cacheable", False):
        logger.warning(
            "use_feature_cache is True but the encoder is fine-tuned "
            "(freeze_ssl: False%s): its outputs change every step, "
            "so the cache is disabled.",
            "" if not getattr(backbone, "partial", False) else
            f", {type(backbone).__name__} runs its frozen lower layers "
            "live",
        )
        return None
    return FeatureCache(folder, backbone, dtype=dtype)


def am_resnet_cache(feature_cache, model, frozen):
    """A cache of AM-ResNet's outputs (beside the encoder's), or None.

    Only when the encoder's outputs are cached too, AM-ResNet is frozen
    (``freeze_am_resnet``) and the model fuses it with the encoder.

    Arguments
    ---------
    feature_cache : FeatureCache or None
        The encoder's cache (:func:`encoder_cache`).
    model : torch.nn.Module
        The embedding model (``AMSER``: ``am_resnet`` and ``fusion``
        attributes when those branches are built).
    frozen : bool or None
        The run's ``freeze_am_resnet``.

    Returns
    -------
    FeatureCache or None

    Example
    -------
    >>> am_resnet_cache(None, object(), True) is None
    True
    """
    am_resnet = getattr(model, "am_resnet", None)
    if (
        feature_cache is None
        or not frozen
        or am_resnet is None
        or getattr(model, "fusion", None) is None
    ):
        return None
    return FeatureCache(feature_cache.root, am_resnet,
                        dtype=feature_cache.dtype)
