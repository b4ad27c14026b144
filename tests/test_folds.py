"""Cross-validation protocols (amser_sb.data.protocols), on generated rows."""

import os
import random

import pytest

from amser_sb.data.protocols.fold_files import check_fold, write_folds
from amser_sb.data.protocols.splits import (
    Fold,
    grouped_holdout,
    grouped_k_folds,
    leave_one_group_out,
    partner_valid_folds,
    stratified_holdout,
)
from amser_sb.data.manifest import read_manifest
from amser_sb.core.labels import IEMOCAP_4

CLASSES = ("neu", "hap", "sad", "ang")


def make_rows(n_sessions=5, per_speaker=12, amb_every=5, seed=0):
    """IEMOCAP-like rows: 2 speakers a session, some ambiguous."""
    rng = random.Random(seed)
    rows = []
    for s in range(1, n_sessions + 1):
        for g in "FM":
            for i in range(per_speaker):
                amb = int(i % amb_every == amb_every - 1)
                soft = [0.0] * 4
                emo = "" if amb else CLASSES[rng.randrange(4)]
                if emo:
                    soft[CLASSES.index(emo)] = 1.0
                else:
                    soft = [0.5, 0.5, 0.0, 0.0]
                rows.append({
                    "ID": f"Ses{s:02d}{g}_x_{g}{i:03d}",
                    "duration": 1.0,
                    "wav": f"/w/{s}{g}{i}.wav",
                    "spk_id": f"Ses{s:02d}{g}",
                    "group": f"Ses{s:02d}",
                    "emo": emo,
                    "soft_neu": soft[0], "soft_hap": soft[1],
                    "soft_sad": soft[2], "soft_ang": soft[3],
                    "ambiguous": amb,
                    "voiced": "0:10",
                    "rec": f"rec{s}{g}{i // 3}",
                })
    return rows


def ids(rows):
    return sorted(r["ID"] for r in rows)


def test_partner_valid_folds_membership():
    rows = make_rows()
    folds = partner_valid_folds(rows)
    assert [f.test_groups for f in folds] == [
        [f"Ses{s:02d}{g}"] for s in range(1, 6) for g in "FM"
    ]
    for fold in folds:
        (spk,) = fold.test_groups
        partner = spk[:-1] + ("M" if spk[-1] == "F" else "F")
        ses = spk[:5]
        assert ids(fold.test) == ids(
            r for r in rows if r["spk_id"] == spk and not r["ambiguous"]
        )
        assert ids(fold.valid) == ids(
            r for r in rows if r["spk_id"] == partner and not r["ambiguous"]
        )
        assert ids(fold.train) == ids(r for r in rows if r["group"] != ses)
        assert any(r["ambiguous"] for r in fold.train)
        check_fold(fold)
    # Every clear row is tested exactly once over the folds.
    tested = sorted(i for f in folds for i in ids(f.test))
    assert tested == ids(r for r in rows if not r["ambiguous"])


def test_partner_valid_folds_without_ambiguous():
    folds = partner_valid_folds(make_rows(), use_ambiguous=False)
    assert all(not r["ambiguous"] for f in folds for r in f.train)


def test_partner_folds_reject_speaker_in_two_sessions():
    rows = make_rows(n_sessions=2)
    rows[0] = dict(rows[0], group="Ses02")
    with pytest.raises(ValueError, match="spans several group"):
        partner_valid_folds(rows)


def test_leave_one_session_out_is_stratified_and_seeded():
    rows = make_rows(per_speaker=40)
    folds = leave_one_group_out(rows, "group", valid_ratio=0.1, seed=7)
    assert [f.test_groups for f in folds] == [
        [f"Ses{s:02d}"] for s in range(1, 6)
    ]
    for fold in folds:
        (ses,) = fold.test_groups
        rest_clear = [
            r for r in rows if r["group"] != ses and not r["ambiguous"]
        ]
        # Valid + train partition the other sessions (ambiguous in train).
        assert ids(fold.valid + fold.train) == ids(
            r for r in rows if r["group"] != ses
        )
        assert ids(fold.test) == ids(
            r for r in rows if r["group"] == ses and not r["ambiguous"]
        )
        for c in CLASSES:
            n = sum(r["emo"] == c for r in rest_clear)
            assert sum(r["emo"] == c for r in fold.valid) == int(
                0.1 * n + 0.5
            )
        check_fold(fold)
    again = leave_one_group_out(rows, "group", valid_ratio=0.1, seed=7)
    other = leave_one_group_out(rows, "group", valid_ratio=0.1, seed=8)
    assert [ids(f.valid) for f in folds] == [ids(f.valid) for f in again]
    assert [ids(f.valid) for f in folds] != [ids(f.valid) for f in other]


def test_leave_one_group_out_valid_by_groups():
    rows = make_rows(per_speaker=30)
    folds = leave_one_group_out(
        rows, "spk_id", valid_ratio=0.2, valid_group_key="rec"
    )
    assert len(folds) == 10
    for fold in folds:
        valid_recs = {r["rec"] for r in fold.valid}
        assert not valid_recs & {r["rec"] for r in fold.train}
        check_fold(fold)


def test_grouped_k_folds_keep_groups_together():
    rows = make_rows(per_speaker=30)
    folds = grouped_k_folds(rows, "rec", n_folds=5, valid_ratio=0.1, seed=3)
    assert len(folds) == 5
    seen = []
    for fold in folds:
        split_of = {}
        for split, srows in fold.splits().items():
            for r in srows:
                assert split_of.setdefault(r["rec"], split) == split
        seen += fold.test_groups
        check_fold(fold, speaker_key=None)
    all_recs = sorted({r["rec"] for r in rows})
    assert sorted(seen) == all_recs  # each recording tested exactly once
    sizes = [sum(r["rec"] in f.test_groups for r in rows) for f in folds]
    assert max(sizes) - min(sizes) <= 3  # balanced (recordings of <= 3)
    with pytest.raises(ValueError, match="n_folds"):
        grouped_k_folds(rows, "rec", n_folds=10_000)


def test_holdouts():
    rows = [{"ID": f"u{i:02d}", "emo": "ab"[i % 2], "g": i // 4}
            for i in range(40)]
    kept, held = stratified_holdout(rows, 0.25, random.Random(1))
    assert len(held) == 10 and len(kept) == 30
    assert sum(r["emo"] == "a" for r in held) == 5
    assert ids(kept + held) == ids(rows)
    # Tiny classes still validate.
    kept, held = stratified_holdout(rows[:4], 0.1, random.Random(1))
    assert sorted(r["emo"] for r in held) == ["a", "b"]
    kept, held = grouped_holdout(rows, "g", 0.25, random.Random(1))
    assert len(held) >= 10
    assert not {r["g"] for r in held} & {r["g"] for r in kept}
    with pytest.raises(ValueError):
        stratified_holdout(rows, 1.0, random.Random(0))


def test_check_fold_catches_every_violation():
    a = {"ID": "a", "spk_id": "s1", "ambiguous": 0}
    b = {"ID": "b", "spk_id": "s2", "ambiguous": 0}
    amb = {"ID": "c", "spk_id": "s2", "ambiguous": 1}
    check_fold(Fold(["s1"], train=[b, amb], test=[a]))
    with pytest.raises(ValueError, match="ambiguous rows in valid"):
        check_fold(Fold(["s1"], train=[b], valid=[amb], test=[a]))
    with pytest.raises(ValueError, match="ambiguous rows in test"):
        check_fold(Fold(["s1"], train=[b], test=[a, amb]))
    with pytest.raises(ValueError, match="test speakers"):
        check_fold(Fold(["s1"], train=[b, dict(a, ID="a2")], test=[a]))
    with pytest.raises(ValueError, match="both valid and test"):
        check_fold(Fold(["s1"], train=[b], valid=[a], test=[a]))
    check_fold(Fold(["s1"], train=[dict(a, ID="x")], test=[a]),
               speaker_key=None)


def test_property_random_tables_give_clean_folds():
    for seed in range(20):
        rng = random.Random(seed)
        rows = make_rows(
            n_sessions=rng.randint(2, 5), per_speaker=rng.randint(3, 15),
            amb_every=rng.randint(2, 6), seed=seed,
        )
        for folds in (
            partner_valid_folds(rows),
            leave_one_group_out(rows, "group", 0.1, seed),
            leave_one_group_out(rows, "spk_id", 0.1, seed),
        ):
            tested = sorted(i for f in folds for i in ids(f.test))
            assert tested == ids(r for r in rows if not r["ambiguous"])
            for fold in folds:
                check_fold(fold)


def test_write_folds_replaces_stale_folds(tmp_path):
    rows = make_rows()
    folder = tmp_path / "speaker"
    stale = folder / "fold_11"
    stale.mkdir(parents=True)
    (stale / "train.csv").write_text("ID\n")
    paths = write_folds(partner_valid_folds(rows), str(folder), IEMOCAP_4)
    assert len(paths) == 10 and not stale.exists()
    assert paths[0]["test"] == str(folder / "fold_1" / "test.csv")
    test_rows = read_manifest(paths[0]["test"], IEMOCAP_4)
    assert [r["ID"] for r in test_rows] == ids(
        r for r in rows if r["spk_id"] == "Ses01F" and not r["ambiguous"]
    )
    assert "rec" not in test_rows[0]  # only manifest columns are written
    summary = (folder / "folds.csv").read_text().splitlines()
    assert summary[0] == "fold,test_groups,train,valid,test"
    assert summary[1].startswith("fold_1,Ses01F,")
    # Fewer folds later: the extra ones disappear.
    write_folds(partner_valid_folds(make_rows(n_sessions=2)), str(folder),
                IEMOCAP_4)
    assert sorted(os.listdir(folder)) == [
        "fold_1", "fold_2", "fold_3", "fold_4", "folds.csv",
    ]


def test_write_folds_refuses_a_dirty_fold(tmp_path):
    a = {"ID": "a", "spk_id": "s1", "ambiguous": 1}
    with pytest.raises(ValueError, match="ambiguous"):
        write_folds([Fold(["s1"], test=[a])], str(tmp_path), IEMOCAP_4)


def test_manifest_with_the_old_session_column_is_read(tmp_path):
    from amser_sb.data.manifest import manifest_columns

    columns = [c if c != "group" else "session"
               for c in manifest_columns(IEMOCAP_4)]
    path = tmp_path / "old.csv"
    values = {"ID": "u1", "duration": "1.0", "wav": "/x.wav",
              "spk_id": "Ses01F", "session": "Ses01", "emo": "neu",
              "ambiguous": "0", "voiced": ""}
    path.write_text(",".join(columns) + "\n" + ",".join(
        values.get(c, "0.25") for c in columns) + "\n")
    (row,) = read_manifest(path, IEMOCAP_4)
    assert row["group"] == "Ses01" and "session" not in row


def test_speaker_protocol_validates_on_held_out_speakers():
    """Four or more speakers: valid holds whole speakers, none of them in
    train or test (speaker-independent model selection); with three, a
    share of the other speakers' rows as before."""
    from amser_sb.data.protocols.registry import get_protocol

    rows = [{"ID": f"{s}_{i}", "spk_id": s, "group": s, "emo": "ab"[i % 2],
             "ambiguous": 0} for s in "pqrstu" for i in range(10)]
    for fold in get_protocol("speaker").split(rows, valid_ratio=0.2):
        spk = {split: {r["spk_id"] for r in rows_}
               for split, rows_ in fold.splits().items()}
        assert spk["valid"] and not spk["valid"] & spk["train"]
        assert not spk["valid"] & spk["test"]
        assert len(fold.train) + len(fold.valid) + len(fold.test) == 60
    three = [r for r in rows if r["spk_id"] in "pqr"]
    fold = get_protocol("speaker").split(three, valid_ratio=0.2)[0]
    assert {r["spk_id"] for r in fold.valid} <= {r["spk_id"]
                                                   for r in fold.train}
