"""One registry of corpora: amser-sb prepare, cv and the recipe use it."""

import pytest

from amser_sb.data.corpora import registry
from amser_sb.data.corpora.iemocap import IemocapCorpus
from amser_sb.data.corpora.named_files import NamedFilesCorpus
from amser_sb.data.corpora.presets import PRESETS
from amser_sb.data.corpora.registry import Corpus, CorpusError, get_corpus
from amser_sb.core.errors import AmserUserError


def test_every_corpus_is_registered_once():
    names = registry.corpus_names()
    assert names[0] == "iemocap"
    assert set(names) == {"iemocap", "custom", *PRESETS}
    assert isinstance(get_corpus("iemocap"), IemocapCorpus)
    for name in (*PRESETS, "custom"):
        assert isinstance(get_corpus(name), NamedFilesCorpus)
        assert get_corpus(name).name == name
    assert get_corpus(None) is get_corpus("IEMOCAP")


def test_unknown_name_protocol_and_option_are_user_errors():
    with pytest.raises(CorpusError, match="unknown dataset 'voxceleb'"):
        get_corpus("voxceleb")
    assert issubclass(CorpusError, AmserUserError)
    with pytest.raises(CorpusError, match="--protocol 'grouped'"):
        get_corpus("iemocap").check_protocol("grouped")
    with pytest.raises(CorpusError, match="--protocol 'session'"):
        get_corpus("emodb").check_protocol("session")
    with pytest.raises(CorpusError, match="label_regex"):
        get_corpus("emodb").prepare("d", "s", label_regex="x")


def test_a_new_corpus_registers_itself(tmp_path):
    calls = []

    class LabelFiles(Corpus):
        """A corpus whose labels live in a label file (as MSP-Podcast)."""

        name = "label-files-test"
        protocols = ("official",)
        default_protocol = "official"
        options = ("seed",)

        def prepare(self, data_folder, save_folder, protocol=None,
                    **options):
            self.check_protocol(protocol)
            self.check_options(options)
            calls.append((data_folder, save_folder, protocol, options))
            return {"folds": []}

    try:
        corpus = get_corpus("label-files-test")
        assert isinstance(corpus, LabelFiles)
        hparams = {"data_folder": "d", "manifest_folder": "m",
                   "protocol": "official", "skip_prep": False,
                   "dataset": "label-files-test"}
        from amser_sb.training.run import prepare_data

        prepare_data(hparams)  # cv's preparation goes through the registry
        assert calls == [("d", "m", "official", {})]
    finally:
        registry.unregister("label-files-test")
    with pytest.raises(CorpusError):
        get_corpus("label-files-test")


def test_hparams_options_match_prepare_signatures():
    import inspect

    from amser_sb.data.corpora.iemocap import prepare_iemocap
    from amser_sb.data.corpora.named_files import prepare_corpus

    for corpus, fn in ((get_corpus("iemocap"), prepare_iemocap),
                       (get_corpus("custom"), prepare_corpus)):
        params = set(inspect.signature(fn).parameters)
        assert set(corpus.options) <= params, corpus
