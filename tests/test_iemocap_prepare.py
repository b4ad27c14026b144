"""IEMOCAP preparation end to end, on generated IEMOCAP-layout corpora."""

import importlib.util
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from amser_sb.data.corpora.iemocap import prepare_iemocap
from amser_sb.data.corpora.iemocap_annotations import (
    AnnotationError,
    parse_emo_evaluation,
)
from amser_sb.data.manifest import read_csv, read_stamp
from amser_sb.data.synthetic import make_iemocap_corpus
from amser_sb.core.labels import IEMOCAP_4
from amser_sb.core.madd import madd, mask_to_intervals, parse_intervals

REPO = Path(__file__).resolve().parents[1]
SOFT = ["soft_neu", "soft_hap", "soft_sad", "soft_ang"]
# Reference mapping, written independently of amser_sb.core.labels.
REF_CAT = {"neutral": 0, "neutral state": 0, "happiness": 1, "excited": 1,
           "sadness": 2, "anger": 3}
REF_CODE = {"neu": "neu", "hap": "hap", "exc": "hap", "sad": "sad",
            "ang": "ang"}
WINDOW = 400


def ref_mass(votes):
    mass, total = [0.0] * 4, 0
    for cats in votes:
        cats = list(dict.fromkeys(c.lower() for c in cats))
        if not cats:
            continue
        total += 1
        for c in cats:
            if c in REF_CAT:
                mass[REF_CAT[c]] += 1.0 / len(cats)
    return mass, total


def ref_expectation(u, threshold=0.5, self_eval=False):
    """(status, emo, soft, ambiguous) of a generated utterance."""
    votes = list(u["votes"])
    if self_eval and u["self_votes"]:
        votes.append(u["self_votes"][1])
    mass, total = ref_mass(votes)
    s = sum(mass)
    soft = [m / s for m in mass] if s else [0.0] * 4
    if u["code"] in REF_CODE:
        emo = REF_CODE[u["code"]]
        if not s:
            soft = [float(emo == c) for c in ("neu", "hap", "sad", "ang")]
        return "used", emo, soft, 0
    if u["code"] == "xxx":
        status = "used" if s / total >= threshold else (
            "ambiguous below threshold")
        return status, "", soft, 1
    return "excluded class", "", soft, 0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release"
    return make_iemocap_corpus(root, utts_per_speaker=8, seed=3)


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    save = tmp_path_factory.mktemp("prep")
    out = prepare_iemocap(corpus["root"], save, num_workers=2)
    return save, out


def by_id(rows):
    return {r["ID"]: r for r in rows}


# ---------------------------------------------------------------- parsing


REAL_FORMAT = (
    "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n"
    "\n"
    "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
    "C-E2:\tNeutral state;\t()\n"
    "C-E3:\tNeutral; Frustration;\t(curious, a bit)\n"
    "C-E4:\tOther:pride\t()\n"
    "C-F1:\tNeutral;\t(calm)\n"
    "A-E3:\tval 3; act 2; dom  2;\t()\n"
    "A-F1:\tval 3; act 2; dom  2;\t()\n"
    "\n"
    "[10.0100 - 11.3925]\tSes01F_impro01_M013\txxx\t[2.0000, 3.5000, 3.0000]\n"
    "C-E1:\t\t()\n"
    "C-E2:\tExcited;\t()\n"
    "C-M1:\tAnger;\t()\n"
    "\n"
)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_parse_real_format(tmp_path):
    path = write(tmp_path / "Ses01F_impro01.txt", REAL_FORMAT)
    a, b = parse_emo_evaluation(str(path), 1)
    assert (a.id, a.session, a.spk_id, a.dialog) == (
        "Ses01F_impro01_F000", 1, "Ses01F", "Ses01F_impro01")
    assert (a.start, a.end, a.code, a.vad) == (
        6.2901, 8.2357, "neu", "2.5000, 2.5000, 2.5000")
    assert a.votes == [("C-E2", ["Neutral state"]),
                       ("C-E3", ["Neutral", "Frustration"]),
                       ("C-E4", ["Other:pride"])]
    assert a.self_votes == [("C-F1", ["Neutral"])]
    assert a.source == f"{path}:3"
    # The utterance speaker is the last part's letter, not the dialog's.
    assert (b.id, b.spk_id, b.code) == ("Ses01F_impro01_M013", "Ses01M", "xxx")
    assert b.votes == [("C-E1", []), ("C-E2", ["Excited"])]
    assert b.self_votes == [("C-M1", ["Anger"])]


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("[6.29 - ]\tSes01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]",
         "malformed utterance header"),
        ("[6.2 - 8.2]\tSes02F_impro01_F000\tneu\t[2.5, 2.5, 2.5]",
         "not an IEMOCAP ID of Session1"),
        ("C-E2 Neutral;", "malformed categorical line"),
        ("Neutral; Anger;", "unexpected line"),
    ],
)
def test_parse_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    lines = REAL_FORMAT.splitlines()
    # Replace the first block's header (line 3) or its C-E3 line (line 5).
    lines[2 if bad_line.startswith("[") else 4] = bad_line
    path = write(tmp_path / "Ses01F_impro01.txt", "\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=message) as err:
        parse_emo_evaluation(str(path), 1)
    lineno = 3 if bad_line.startswith("[") else 5
    assert f"{path}:{lineno}" in str(err.value)


def test_parse_line_outside_block(tmp_path):
    path = write(tmp_path / "x.txt", "C-E2:\tNeutral;\t()\n")
    with pytest.raises(AnnotationError, match="outside an utterance block"):
        parse_emo_evaluation(str(path), 1)


# ---------------------------------------------------------------- manifests


def test_all_csv_exact_contents(corpus, prepared):
    save, out = prepared
    rows = read_csv(out["all"])
    truth = corpus["utterances"]
    assert sorted(r["ID"] for r in rows) == sorted(truth)  # nothing lost
    assert list(rows[0]) == [
        "ID", "duration", "wav", "spk_id", "group", "emo", *SOFT,
        "ambiguous", "voiced", "code", "status",
    ]
    for row in rows:
        u = truth[row["ID"]]
        status, emo, soft, amb = ref_expectation(u)
        assert row["status"] == status
        assert row["emo"] == emo
        assert [float(row[c]) for c in SOFT] == pytest.approx(soft, abs=1e-12)
        assert int(row["ambiguous"]) == amb
        assert row["code"] == u["code"]
        assert row["spk_id"] == u["spk_id"]
        assert row["group"] == f"Ses{u['session']:02d}"
        assert row["wav"] == u["wav"] and os.path.isabs(row["wav"])
        assert float(row["duration"]) == u["num_samples"] / 16000
        assert (row["voiced"] != "") == (status == "used")
    kinds = {u["kind"] for u in truth.values()}
    assert {"exc", "amb", "amb_low", "fru"} <= kinds  # all cases covered


def test_skipped_csv_lists_every_unused_utterance(corpus, prepared):
    save, out = prepared
    all_rows = by_id(read_csv(out["all"]))
    skipped = read_csv(out["skipped"])
    assert list(skipped[0]) == [
        "ID", "wav", "spk_id", "group", "code", "reason", "detail"]
    assert sorted(r["ID"] for r in skipped) == sorted(
        i for i, r in all_rows.items() if r["status"] != "used")
    reasons = {r["reason"] for r in skipped}
    assert reasons == {"excluded class", "ambiguous below threshold"}
    for r in skipped:
        assert r["reason"] == all_rows[r["ID"]]["status"]


def test_voiced_intervals_match_known_silences(corpus, prepared):
    save, out = prepared
    used = [r for r in read_csv(out["all"]) if r["status"] == "used"]
    assert used
    for row in used:
        u = corpus["utterances"][row["ID"]]
        voiced = parse_intervals(row["voiced"])
        # Exactly what MADD says on the file ...
        wav, _ = sf.read(row["wav"], dtype="float32")
        _, mask = madd(torch.from_numpy(wav))
        assert voiced == mask_to_intervals(mask)
        # ... and that is the known speech, give or take one window.
        assert len(voiced) == len(u["speech"])
        for (vs, ve), (ss, se) in zip(voiced, u["speech"]):
            assert vs <= ss and ve >= se
            assert ss - vs < WINDOW and ve - se < WINDOW


def test_digital_silence_corpus(tmp_path):
    truth = make_iemocap_corpus(tmp_path / "c", utts_per_speaker=4,
                                silence_level=0.0, sessions=(1,), seed=5)
    out = prepare_iemocap(truth["root"], tmp_path / "p", sessions=(1,),
                          num_workers=1)
    for row in read_csv(out["all"]):
        if row["status"] != "used":
            continue
        speech = truth["utterances"][row["ID"]]["speech"]
        voiced = parse_intervals(row["voiced"])
        assert len(voiced) == len(speech)
        for (vs, ve), (ss, se) in zip(voiced, speech):
            assert 0 <= ss - vs < WINDOW and 0 <= ve - se < WINDOW


def test_handwritten_votes_exact_soft_targets(tmp_path):
    truth = make_iemocap_corpus(tmp_path / "c", utts_per_speaker=4,
                                sessions=(1,), dialogs_per_session=1)
    ids = list(truth["utterances"])  # F000 M000 F001 M001 ...
    assert ids[:6] == [f"Ses01F_impro01_{g}{i:03d}"
                       for i in range(3) for g in "FM"]
    blocks = [
        (ids[0], "neu", ["Neutral state", "Neutral; Frustration",
                         "Excited;"], "C-F1:\tSadness;"),
        (ids[1], "exc", ["Excited;", "Happiness", "Happiness; Excited;"],
         None),
        (ids[2], "xxx", ["Anger;", "Sadness;", "Frustration;"], None),
        (ids[3], "xxx", ["Anger; Frustration;", "Surprise;", "Fear;"],
         None),
        (ids[4], "fru", ["Frustration;", "Frustration;", "Anger;"], None),
        (ids[5], "sad", ["Other:pride", "Frustration;", "Fear;"], None),
    ]
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    for k, (utt, code, cats, self_line) in enumerate(blocks):
        lines.append(f"[{k}.0000 - {k}.5000]\t{utt}\t{code}\t[3.0, 3.0, 3.0]")
        lines += [f"C-E{j + 1}:\t{c}\t()" for j, c in enumerate(cats)]
        if self_line:
            lines.append(self_line + "\t()")
        lines += ["A-E1:\tval 3; act 2; dom  2;\t()", ""]
    ann = Path(truth["root"], "Session1", "dialog", "EmoEvaluation",
               "Ses01F_impro01.txt")
    ann.write_text("\n".join(lines))

    def soft_of(**kw):
        out = prepare_iemocap(truth["root"], tmp_path / "p", sessions=(1,),
                              num_workers=1, **kw)
        return by_id(read_csv(out["all"]))

    rows = soft_of()
    assert len(rows) == 6
    expect = {
        ids[0]: ("used", "neu", [0.6, 0.4, 0.0, 0.0], "0"),
        ids[1]: ("used", "hap", [0.0, 1.0, 0.0, 0.0], "0"),
        ids[2]: ("used", "", [0.0, 0.0, 0.5, 0.5], "1"),
        ids[3]: ("ambiguous below threshold", "", [0.0, 0.0, 0.0, 1.0], "1"),
        ids[4]: ("excluded class", "", [0.0, 0.0, 0.0, 1.0], "0"),
        ids[5]: ("used", "sad", [0.0, 0.0, 1.0, 0.0], "0"),  # one-hot
    }
    for utt, (status, emo, soft, amb) in expect.items():
        row = rows[utt]
        assert (row["status"], row["emo"], row["ambiguous"]) == (
            status, emo, amb)
        assert [float(row[c]) for c in SOFT] == pytest.approx(soft)
    # Self-evaluations count only when asked: 1.5 neu, 1 hap, 1 sad.
    rows = soft_of(include_self_evaluation=True)
    assert [float(rows[ids[0]][c]) for c in SOFT] == pytest.approx(
        [1.5 / 3.5, 1 / 3.5, 1 / 3.5, 0.0])
    # A lower threshold keeps the 1/6-mass ambiguous utterance.
    rows = soft_of(ambiguous_min_mass=1 / 6)
    assert rows[ids[3]]["status"] == "used"
    rows = soft_of(use_ambiguous=False)
    assert rows[ids[2]]["status"] == "ambiguous not used"


def test_manifests_load_with_speechbrain(prepared):
    from speechbrain.dataio.dataset import DynamicItemDataset

    save, out = prepared
    assert len(DynamicItemDataset.from_csv(out["all"])) == len(
        read_csv(out["all"]))
    assert out["folder"] == str(save / "speaker")
    fold = out["folds"][0]
    data = DynamicItemDataset.from_csv(fold["train"])
    data.set_output_keys(["id", "duration", "emo", "soft_hap", "voiced"])
    item = data[0]
    assert isinstance(item["duration"], float)
    assert parse_intervals(item["voiced"])
    assert (save / "label_encoder.txt").read_text().splitlines()[:4] == [
        "'neu' => 0", "'hap' => 1", "'sad' => 2", "'ang' => 3"]


# ---------------------------------------------------------------- folds


def test_speaker_protocol_folds(corpus, prepared):
    save, out = prepared
    used = [r for r in read_csv(out["all"]) if r["status"] == "used"]
    assert len(out["folds"]) == 10
    speakers = [f"Ses{s:02d}{g}" for s in range(1, 6) for g in "FM"]
    tested = []
    for k, (paths, spk) in enumerate(zip(out["folds"], speakers), start=1):
        assert paths["test"] == str(save / "speaker" / f"fold_{k}" /
                                    "test.csv")
        split = {s: read_csv(p) for s, p in paths.items()}
        partner = spk[:-1] + ("M" if spk[-1] == "F" else "F")
        assert {r["spk_id"] for r in split["test"]} == {spk}
        assert {r["spk_id"] for r in split["valid"]} == {partner}
        assert spk[:5] not in {r["group"] for r in split["train"]}
        assert sorted(r["ID"] for r in split["train"]) == sorted(
            r["ID"] for r in used if r["group"] != spk[:5])
        assert any(r["ambiguous"] == "1" for r in split["train"])
        for s in ("valid", "test"):
            assert all(r["ambiguous"] == "0" and r["emo"] for r in split[s])
        tested += [r["ID"] for r in split["test"]]
    assert sorted(tested) == sorted(
        r["ID"] for r in used if r["ambiguous"] == "0")


def test_session_protocol_folds(corpus, tmp_path):
    out = prepare_iemocap(corpus["root"], tmp_path, protocol="session",
                          num_workers=1)
    assert len(out["folds"]) == 5
    used = [r for r in read_csv(out["all"]) if r["status"] == "used"]
    for k, paths in enumerate(out["folds"], start=1):
        ses = f"Ses{k:02d}"
        split = {s: read_csv(p) for s, p in paths.items()}
        assert {r["group"] for r in split["test"]} == {ses}
        test_spk = {r["spk_id"] for r in split["test"]}
        for s in ("train", "valid"):
            assert not test_spk & {r["spk_id"] for r in split[s]}
        for s in ("valid", "test"):
            assert all(r["ambiguous"] == "0" for r in split[s])
        assert sorted(r["ID"] for r in split["train"] + split["valid"]) == (
            sorted(r["ID"] for r in used if r["group"] != ses))
        # Stratified: every class validates (>= 2 clear rows per class).
        assert {r["emo"] for r in split["valid"]} == set(IEMOCAP_4.names)


# ---------------------------------------------------------------- idempotency


def snapshot(folder):
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in Path(folder).rglob("*") if p.is_file()
    }


def test_idempotent_rerun_and_rebuilds(tmp_path):
    truth = make_iemocap_corpus(tmp_path / "c", utts_per_speaker=8,
                                sessions=(1, 2), seed=11)
    save = tmp_path / "prep"

    def run(**kw):
        kw.setdefault("sessions", (1, 2))
        return prepare_iemocap(truth["root"], save, num_workers=1, **kw)

    first = run()
    assert not first["skipped_prep"]
    before = snapshot(save)
    again = run()
    assert again["skipped_prep"] and again["folds"] == first["folds"]
    assert snapshot(save) == before  # nothing rewritten

    # Another threshold: manifests rebuilt.
    rebuilt = run(ambiguous_min_mass=0.9)
    assert not rebuilt["skipped_prep"]
    assert "ambiguous below threshold" in {
        r["status"] for r in read_csv(save / "all.csv")}
    n_amb = sum(r["ambiguous"] == "1" and r["status"] == "used"
                for r in read_csv(save / "all.csv"))
    assert n_amb == 0  # the generated ambiguous mass is at most 5/6
    assert run(ambiguous_min_mass=0.9)["skipped_prep"]

    # Another MADD window: voiced intervals change.
    voiced_400 = {r["ID"]: r["voiced"] for r in read_csv(save / "all.csv")}
    assert not run(ambiguous_min_mass=0.9, madd_window=160)["skipped_prep"]
    voiced_160 = {r["ID"]: r["voiced"] for r in read_csv(save / "all.csv")}
    assert voiced_160 != voiced_400

    # Another protocol: built beside; the speaker folds were built from
    # the current manifest, so they stay and are reused.
    run(ambiguous_min_mass=0.9, madd_window=160, protocol="session")
    assert (save / "session" / "fold_2" / "test.csv").is_file()
    assert run(ambiguous_min_mass=0.9, madd_window=160)["skipped_prep"]

    # Changed manifest options make every old protocol folder stale.
    run(protocol="session")
    assert not (save / "speaker").exists()
    stamp = read_stamp(save / "session")
    assert stamp["fingerprint"] == read_stamp(save)["digest"]

    # A touched wav (the corpus changed) rebuilds.
    assert run(protocol="session")["skipped_prep"]
    wav = Path(next(iter(truth["utterances"].values()))["wav"])
    os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 10**9))
    assert not run(protocol="session")["skipped_prep"]

    # Another seed: different valid draw, same test sets.
    valid_a = read_csv(save / "session" / "fold_1" / "valid.csv")
    run(protocol="session", seed=99)
    valid_b = read_csv(save / "session" / "fold_1" / "valid.csv")
    assert valid_a != valid_b


def test_interrupted_run_is_not_reused(tmp_path):
    truth = make_iemocap_corpus(tmp_path / "c", utts_per_speaker=4,
                                sessions=(1,))
    save = tmp_path / "prep"
    prepare_iemocap(truth["root"], save, sessions=(1,), num_workers=1)
    os.remove(save / "speaker" / "fold_1" / "valid.csv")
    out = prepare_iemocap(truth["root"], save, sessions=(1,), num_workers=1)
    assert not out["skipped_prep"]
    assert (save / "speaker" / "fold_1" / "valid.csv").is_file()


# ---------------------------------------------------------------- bad input


def test_missing_session_is_a_clear_error(tmp_path):
    truth = make_iemocap_corpus(tmp_path / "c", utts_per_speaker=2,
                                sessions=(1, 2, 4, 5))
    with pytest.raises(FileNotFoundError, match="Session3") as err:
        prepare_iemocap(truth["root"], tmp_path / "p")
    assert "IEMOCAP_full_release" in str(err.value)


def test_malformed_annotation_is_a_clear_error(tmp_path):
    truth = make_iemocap_corpus(tmp_path / "c", utts_per_speaker=2,
                                sessions=(1,))
    ann = Path(truth["root"], "Session1", "dialog", "EmoEvaluation",
               "Ses01F_impro01.txt")
    text = ann.read_text().replace("C-E1:", "C-E1 ", 1)
    ann.write_text(text)
    with pytest.raises(AnnotationError, match="malformed categorical") as e:
        prepare_iemocap(truth["root"], tmp_path / "p", sessions=(1,))
    assert str(ann) in str(e.value)


def test_bad_wavs_are_logged_skips_naming_the_file(tmp_path, caplog):
    truth = make_iemocap_corpus(tmp_path / "c", utts_per_speaker=8,
                                sessions=(1,), seed=2)
    used = [u for u in truth["utterances"].values()
            if u["kind"] in ("neu", "hap", "sad", "ang", "exc")]
    missing, stereo, rate, garbage = (u["wav"] for u in used[:4])
    os.remove(missing)
    wav, sr = sf.read(stereo, dtype="float32")
    sf.write(stereo, np.stack([wav, wav], axis=1), sr)
    sf.write(rate, sf.read(rate, dtype="float32")[0], 8000)
    Path(garbage).write_bytes(b"RIFF\x00\x00not a wav at all")
    with caplog.at_level(logging.INFO, logger="amser_sb.data.corpora.iemocap"):
        out = prepare_iemocap(truth["root"], tmp_path / "p", sessions=(1,),
                              num_workers=2)
    skipped = by_id(read_csv(out["skipped"]))
    expect = {missing: "missing wav", stereo: "not 16 kHz mono",
              rate: "not 16 kHz mono", garbage: "unreadable audio"}
    for path, reason in expect.items():
        utt = Path(path).stem
        assert skipped[utt]["reason"] == reason
        assert path in skipped[utt]["detail"]
    assert "2 channels" in skipped[Path(stereo).stem]["detail"]
    assert "8000 Hz" in skipped[Path(rate).stem]["detail"]
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING]
    assert any("1 utterances: missing wav" in w for w in warnings)
    assert any("2 utterances: not 16 kHz mono" in w for w in warnings)
    assert any("1 utterances: unreadable audio" in w for w in warnings)
    # None of them reaches a fold.
    for paths in out["folds"]:
        for p in paths.values():
            assert not {Path(x).stem for x in expect} & {
                r["ID"] for r in read_csv(p)}


def test_all_silent_wav_is_kept_with_a_warning(tmp_path, caplog):
    truth = make_iemocap_corpus(tmp_path / "c", utts_per_speaker=4,
                                sessions=(1,), kinds=("neu",))
    u = next(iter(truth["utterances"].values()))
    n = sf.info(u["wav"]).frames  # as long as its annotated turn
    sf.write(u["wav"], np.zeros(n, dtype=np.float32), 16000)
    with caplog.at_level(logging.INFO, logger="amser_sb.data.corpora.iemocap"):
        out = prepare_iemocap(truth["root"], tmp_path / "p", sessions=(1,),
                              num_workers=1)
    row = by_id(read_csv(out["all"]))[u["id"]]
    assert (row["status"], row["voiced"], float(row["duration"])) == (
        "used", "", n / 16000)
    assert any("1 used utterances are all silence" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)


def test_apple_double_and_evaluator_folders_are_ignored(corpus, prepared):
    save, out = prepared
    rows = read_csv(out["all"])
    assert len(rows) == len(corpus["utterances"])
    assert not any(os.path.basename(r["wav"]).startswith("._") for r in rows)
    ann = Path(corpus["root"], "Session1", "dialog", "EmoEvaluation")
    assert (ann / "Categorical").is_dir()
    assert any(p.name.startswith("._") for p in ann.iterdir())


def test_duplicate_utterance_is_an_error(tmp_path):
    truth = make_iemocap_corpus(tmp_path / "c", utts_per_speaker=2,
                                sessions=(1,))
    ann = Path(truth["root"], "Session1", "dialog", "EmoEvaluation")
    shutil.copy(ann / "Ses01F_impro01.txt", ann / "Ses01F_impro01_copy.txt")
    with pytest.raises(AnnotationError, match="already annotated"):
        prepare_iemocap(truth["root"], tmp_path / "p", sessions=(1,))


def test_unknown_protocol(tmp_path):
    with pytest.raises(ValueError, match="unknown protocol"):
        prepare_iemocap(tmp_path, tmp_path, protocol="random")


# ---------------------------------------------------------------- CLI


def test_cli(corpus, tmp_path, capsys):
    script = REPO / "recipes" / "IEMOCAP" / "emotion_recognition" / (
        "iemocap_prepare.py")
    spec = importlib.util.spec_from_file_location("iemocap_prepare", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main([
        "--data_folder", corpus["root"], "--save_folder", str(tmp_path),
        "--protocol", "session", "--num_workers", "1",
    ])
    assert code == 0
    assert "folds: 5" in capsys.readouterr().out
    assert (tmp_path / "session" / "fold_5" / "valid.csv").is_file()
    # The recipe's function, as SpeechBrain recipes offer it: the same
    # preparation (a rerun with the same options is a no-op, same paths).
    out = module.prepare_iemocap(corpus["root"], str(tmp_path),
                                 protocol="session", num_workers=1)
    assert len(out["folds"]) == 5
    assert out["folds"][4]["valid"] == str(
        tmp_path / "session" / "fold_5" / "valid.csv")


def test_truncated_and_cut_wavs_are_skipped(tmp_path, caplog):
    """R6: a wav whose header announces more than it holds, and a wav far
    shorter than its annotated turn, are listed in skipped.csv, never used
    as shorter utterances."""
    truth = make_iemocap_corpus(tmp_path / "c", utts_per_speaker=8,
                                sessions=(1,), seed=3, min_dur=2.0,
                                max_dur=3.0)
    used = [u for u in truth["utterances"].values()
            if u["kind"] in ("neu", "hap", "sad", "ang", "exc")]
    truncated, cut = used[0], used[1]
    # Rewrite as 16-bit PCM (44-byte header), then cut the file's bytes:
    # the header still announces every frame.
    wav, _ = sf.read(truncated["wav"], dtype="float32")
    sf.write(truncated["wav"], wav, 16000, subtype="PCM_16")
    announced = sf.info(truncated["wav"]).frames
    keep = announced * 3 // 10
    with open(truncated["wav"], "r+b") as handle:
        handle.truncate(44 + 2 * keep)
    assert sf.info(truncated["wav"]).frames == keep  # libsndfile is silent
    # A valid wav holding a quarter of its turn.
    wav, _ = sf.read(cut["wav"], dtype="float32")
    sf.write(cut["wav"], wav[: len(wav) // 4], 16000)
    with caplog.at_level(logging.INFO, logger="amser_sb.data.corpora.iemocap"):
        out = prepare_iemocap(truth["root"], tmp_path / "p", sessions=(1,),
                              num_workers=1)
    skipped = by_id(read_csv(out["skipped"]))
    row = skipped[truncated["id"]]
    assert row["reason"] == "truncated audio"
    assert f"announces {announced} frames" in row["detail"]
    assert f"holds {keep}" in row["detail"] and truncated["wav"] in row["detail"]
    row = skipped[cut["id"]]
    assert row["reason"] == "shorter than annotated"
    assert cut["wav"] in row["detail"] and "turn" in row["detail"]
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING]
    assert any("1 utterances: truncated audio" in w for w in warnings)
    assert any("1 utterances: shorter than annotated" in w for w in warnings)
    for paths in out["folds"]:
        for p in paths.values():
            assert not {truncated["id"], cut["id"]} & {
                r["ID"] for r in read_csv(p)}


def test_group_column_holds_the_session(corpus, prepared):
    save, out = prepared
    rows = read_csv(out["all"])
    assert "session" not in rows[0]
    assert {r["group"] for r in rows} == {
        f"Ses{u['session']:02d}" for u in corpus["utterances"].values()}
