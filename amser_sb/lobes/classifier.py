"""Emotion classifier head: one linear layer on utterance embeddings.

Li & Zhang (2025) end the model with one fully connected layer to the four
classes. The output activation is a constructor argument with no
parameters, so a checkpoint trained with log-probabilities (for a
cross-entropy / NLL loss) loads into an inference model that outputs
probabilities, or logits.

Authors
 * amser-sb contributors
"""

import torch

OUTPUTS = ("log_prob", "prob", "logits")


class EmotionClassifier(torch.nn.Module):
    """Linear layer + output activation, on ``[batch, 1, D]`` embeddings.

    Arguments
    ---------
    input_size : int
        Embedding size ``D`` (``AMSER.out_dim``).
    n_classes : int
        Number of classes (4 for the usual IEMOCAP setup).
    output : str
        ``"log_prob"`` (default: log-softmax, what SpeechBrain's
        ``EncoderClassifier.classify_batch`` documents), ``"prob"`` (softmax)
        or ``"logits"``.

    Example
    -------
    >>> head = EmotionClassifier(512, 4)
    >>> emb = torch.randn(2, 1, 512)
    >>> head(emb).shape
    torch.Size([2, 1, 4])
    >>> probs = EmotionClassifier(512, 4, output="prob")
    >>> _ = probs.load_state_dict(head.state_dict())
    >>> torch.allclose(probs(emb), head(emb).exp())
    True
    """

    def __init__(self, input_size, n_classes, output="log_prob"):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.output = output
        self.linear = torch.nn.Linear(input_size, n_classes)

    def forward(self, x):
        """Class scores.

        Arguments
        ---------
        x : torch.Tensor
            Embeddings ``[batch, 1, D]`` (or ``[batch, D]``).

        Returns
        -------
        torch.Tensor
            ``[batch, 1, n_classes]`` (or ``[batch, n_classes]``): log
            probabilities, probabilities or logits, per ``output``.
        """
        logits = self.linear(x)
        if self.output == "log_prob":
            return torch.log_softmax(logits, dim=-1)
        if self.output == "prob":
            return torch.softmax(logits, dim=-1)
        return logits
