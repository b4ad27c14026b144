"""Model lobes: AM-ResNet, the wav2vec2 branch, fusion, AMSER, classifier.

Authors
 * amser-sb contributors
"""

from amser_sb.lobes.amser import AMSER
from amser_sb.lobes.classifier import EmotionClassifier
from amser_sb.lobes.fusion import (
    ConcatFusion,
    CrossAttentionFusion,
    masked_mean,
    resample_to_length,
)
from amser_sb.lobes.mask_resnet import (
    AMResNet,
    MaskedConv1d,
    MaskResBlock,
    VoicedAttention,
)
from amser_sb.lobes.ssl import (
    SSLBackbone,
    build_random_wav2vec2,
    normalize_waveforms,
    wav2vec2_config,
)
from amser_sb.lobes.utterance import Passthrough, UtteranceEncoder

__all__ = [
    "AMResNet",
    "AMSER",
    "ConcatFusion",
    "CrossAttentionFusion",
    "EmotionClassifier",
    "MaskResBlock",
    "MaskedConv1d",
    "Passthrough",
    "SSLBackbone",
    "UtteranceEncoder",
    "VoicedAttention",
    "build_random_wav2vec2",
    "masked_mean",
    "normalize_waveforms",
    "resample_to_length",
    "ssl_config",
]
