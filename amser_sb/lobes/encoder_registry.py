"""Which ``SpeechEncoder`` a source is, and building one from it.

A source (a Hub id or a local folder) names its family by its
``config.json``'s ``model_type``: :func:`read_model_type` reads it,
:func:`encoder_class` picks the registered ``SpeechEncoder`` subclass
(:data:`ENCODERS`, filled when a subclass is defined), :class:`SSLBackbone`
builds it from a source (what the recipe's YAML calls) and
:func:`encoder_from_options` rebuilds it offline from its
``export_options()`` (what exported model folders call).

Authors
 * amser-sb contributors
"""

import json
import os

from amser_sb.core.errors import AmserUserError

#: model_type -> SpeechEncoder subclass (filled by
#: ``SpeechEncoder.__init_subclass__``).
ENCODERS = {}


#: Configuration entries that name where a model came from, not what it is.
VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version",
                        "_commit_hash")


def hf_config_dict(config):
    """A Hugging Face configuration as a plain dict, without its origin.

    Arguments
    ---------
    config : transformers.PretrainedConfig

    Returns
    -------
    dict
        ``config.to_dict()`` less ``_name_or_path`` and version entries
        (they do not change the model; they would make two copies of one
        model look different).

    Example
    -------
    >>> from transformers import WhisperConfig
    >>> d = hf_config_dict(WhisperConfig(d_model=64))
    >>> d["model_type"], d["d_model"], "_name_or_path" in d
    ('whisper', 64, False)
    """
    return {
        key: value
        for key, value in config.to_dict().items()
        if key not in VOLATILE_CONFIG_KEYS
    }


class EncoderSourceError(AmserUserError, ValueError):
    """An encoder source (hub id, folder, configuration) that cannot serve."""


def read_model_type(source=None, save_path=None, config=None):
    """The Hugging Face ``model_type`` of an encoder source.

    Arguments
    ---------
    source : str, optional
        Local folder (its ``config.json`` is read) or hub id (its
        configuration is fetched with ``AutoConfig``, cached in
        ``save_path``).
    save_path : str, optional
        Download cache of hub configurations.
    config : dict, optional
        A configuration dict instead of a source.

    Returns
    -------
    str

    Example
    -------
    >>> read_model_type(config={"model_type": "whisper", "d_model": 512})
    'whisper'
    """
    if config is not None:
        if "model_type" not in config:
            raise EncoderSourceError(
                "the encoder configuration has no 'model_type' (expected "
                f"one of {sorted(ENCODERS)}): re-export the model"
            )
        return str(config["model_type"])
    if source is None:
        raise EncoderSourceError(
            "SSLBackbone needs a source (hub id or local folder) or a config "
            "(a Hugging Face config dict)"
        )
    folder = os.path.expanduser(str(source))
    if os.path.isdir(folder):
        path = os.path.join(folder, "config.json")
        if not os.path.isfile(path):
            raise EncoderSourceError(
                f"{folder} has no config.json: pass a Hugging Face model "
                "folder (config.json, weights, preprocessor_config.json), "
                "e.g. one written by `amser-sb fetch-encoder whisper-base "
                "DIR`"
            )
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as err:
            raise EncoderSourceError(
                f"{path} is not a readable JSON configuration ({err}): "
                "re-download or re-convert the model"
            ) from err
        if "model_type" not in data:
            raise EncoderSourceError(
                f"{path} has no 'model_type': not a Hugging Face model "
                "configuration"
            )
        return str(data["model_type"])
    from transformers import AutoConfig

    return str(AutoConfig.from_pretrained(source, cache_dir=save_path)
               .model_type)


def encoder_class(model_type):
    """The ``SpeechEncoder`` subclass serving a ``model_type``.

    Arguments
    ---------
    model_type : str
        E.g. ``"wav2vec2"``, ``"hubert"``, ``"wavlm"``, ``"whisper"``.

    Returns
    -------
    type

    Example
    -------
    >>> encoder_class("hubert").__name__
    'Wav2Vec2Encoder'
    >>> encoder_class("whisper").__name__
    'WhisperEncoder'
    """
    # the families register themselves when their modules are imported
    import amser_sb.lobes  # noqa: F401

    if model_type not in ENCODERS:
        raise EncoderSourceError(
            f"no encoder class serves model_type {model_type!r}; known: "
            f"{', '.join(sorted(ENCODERS))} (a new family is one "
            "SpeechEncoder subclass, see amser_sb/lobes/encoder.py)"
        )
    return ENCODERS[model_type]


class SSLBackbone:
    """The encoder branch for a hub id, a local folder or a configuration.

    The family (``Wav2Vec2Encoder`` for wav2vec2 / HuBERT / WavLM /
    data2vec-audio, ``WhisperEncoder`` for Whisper, ...) follows the
    ``model_type`` of the source's configuration. This is the name the
    hparams files use (``!new:amser_sb.lobes.SSLBackbone``): a class whose
    constructor returns an instance of the family's class.

    Arguments
    ---------
    source : str, optional
        Hugging Face hub id or local folder.
    save_path : str
        Download cache of hub models.
    config : dict, optional
        Hugging Face configuration: the encoder is built from it with random
        weights, reading nothing (exported models; weights come next from
        their checkpoint).
    **kwargs
        Options of the family's class (``freeze``, ``layer_weights``, ...).

    Returns
    -------
    SpeechEncoder

    Example
    -------
    >>> from amser_sb.lobes import build_random_wav2vec2
    >>> tmp = getfixture("tmp_path")
    >>> ssl = SSLBackbone(build_random_wav2vec2(tmp / "w2v"), str(tmp))
    >>> type(ssl).__name__, ssl.out_dim
    ('Wav2Vec2Encoder', 32)
    """

    def __new__(cls, source=None, save_path="pretrained_models",
                config=None, **kwargs):
        model_type = read_model_type(source, save_path, config)
        family = encoder_class(model_type)
        return family(
            source=source, save_path=save_path, config=config, **kwargs
        )


def encoder_from_options(options):
    """``SSLBackbone(**options)``: the form exported hparams files use.

    Arguments
    ---------
    options : dict
        ``SpeechEncoder.export_options()`` of the trained encoder.

    Returns
    -------
    SpeechEncoder

    Example
    -------
    >>> from amser_sb.lobes.whisper import tiny_whisper_config
    >>> from amser_sb.lobes.encoder_registry import hf_config_dict
    >>> enc = encoder_from_options(
    ...     {"config": hf_config_dict(tiny_whisper_config())}
    ... )
    >>> type(enc).__name__, enc.out_dim
    ('WhisperEncoder', 32)
    """
    return SSLBackbone(**dict(options))
