"""Model lobes: AM-ResNet, the encoder branch, fusion, AMSER, classifier.

The encoder branch is any ``SpeechEncoder`` (``encoder.py``): one class a
family, ``wav2vec2.py`` (wav2vec2, HuBERT, WavLM, data2vec-audio) and
``whisper.py``; ``SSLBackbone`` picks the family from the source.

Authors
 * amser-sb contributors
"""

from amser_sb.lobes.amser import AMSER
from amser_sb.lobes.classifier import EmotionClassifier
from amser_sb.lobes.fusion import (
    ConcatFusion,
    CrossAttentionFusion,
    Fusion,
    masked_mean,
    resample_to_length,
)
from amser_sb.lobes.mask_resnet import (
    AMResNet,
    MaskedConv1d,
    MaskResBlock,
)
from amser_sb.lobes.voiced_attention import VoicedAttention
from amser_sb.lobes.encoder import SpeechEncoder
from amser_sb.lobes.encoder_registry import (
    ENCODERS,
    SSLBackbone,
    encoder_class,
    encoder_from_options,
)
from amser_sb.lobes.wav2vec2 import (
    Wav2Vec2Encoder,
    build_random_wav2vec2,
    normalize_waveforms,
    wav2vec2_config,
)
from amser_sb.lobes.whisper import WhisperEncoder, build_random_whisper
from amser_sb.lobes.pooling import StatsPooling, masked_mean_std
from amser_sb.lobes.residual_fusion import GatedResidualFusion
from amser_sb.lobes.utterance import Passthrough, UtteranceEncoder

__all__ = [
    "AMResNet",
    "AMSER",
    "ConcatFusion",
    "CrossAttentionFusion",
    "Fusion",
    "GatedResidualFusion",
    "StatsPooling",
    "masked_mean_std",
    "EmotionClassifier",
    "MaskResBlock",
    "MaskedConv1d",
    "Passthrough",
    "ENCODERS",
    "SSLBackbone",
    "SpeechEncoder",
    "UtteranceEncoder",
    "VoicedAttention",
    "Wav2Vec2Encoder",
    "WhisperEncoder",
    "build_random_wav2vec2",
    "build_random_whisper",
    "encoder_class",
    "encoder_from_options",
    "masked_mean",
    "normalize_waveforms",
    "resample_to_length",
    "wav2vec2_config",
]
