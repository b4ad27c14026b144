"""amser-sb: AM-ResNet + wav2vec 2.0 cross-feature fusion for SpeechBrain.

Implements Li & Zhang, "Cross-feature fusion speech emotion recognition
based on attention mask residual network and Wav2vec 2.0", Digital
Communications and Networks 11(5):1567-1577, 2025.
"""

__version__ = "0.1.0"
