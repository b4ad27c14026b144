"""results.md / results.json are titled by the protocol actually run."""

import csv
import json
import os

import pytest

from amser_sb.training.results import fold_test_groups, summarize_folds, write_results


def _fold(folder, protocol, k, rows):
    path = os.path.join(folder, protocol, f"fold_{k}")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "test.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["ID", "spk_id", "group"])
        writer.writeheader()
        writer.writerows(rows)


def _per_fold(manifests, protocol):
    return [
        {"fold": k, "test_groups": fold_test_groups(manifests, protocol, k),
         "WA": 50.0 + k, "UA": 40.0 + k, "macro_F1": 30.0, "recall": {},
         "n_utterances": 2, "epoch": 1}
        for k in (1, 2)
    ]


def test_grouped_results_name_groups_not_speakers(tmp_path):
    manifests = str(tmp_path / "m")
    _fold(manifests, "grouped", 1, [
        {"ID": "a", "spk_id": "unknown", "group": "f_ans001"},
        {"ID": "b", "spk_id": "unknown", "group": "m_rab004"}])
    _fold(manifests, "grouped", 2, [
        {"ID": "c", "spk_id": "unknown", "group": "f_gio002"}])
    per_fold = _per_fold(manifests, "grouped")
    assert [f["test_groups"] for f in per_fold] == [
        "f_ans001+m_rab004", "f_gio002"]
    out = str(tmp_path / "out")
    result = write_results(out, per_fold, "ERL", "grouped")
    text = open(os.path.join(out, "results.md")).read()
    assert text.startswith("# ERL: 2 folds, grouped folds")
    assert "leave-one-speaker-out" not in text
    assert "| Test group |" in text and "Test speaker" not in text
    assert "unknown" not in text
    saved = json.load(open(os.path.join(out, "results.json")))
    assert saved["protocol"] == "grouped" and saved["test_unit"] == "group"
    assert saved["protocol_title"].startswith("grouped folds")
    assert result["protocol_title"] == saved["protocol_title"]


@pytest.mark.parametrize("protocol, column, unit, heading", [
    ("speaker", "spk_id", "speaker", "leave-one-speaker-out"),
    ("session", "group", "session", "leave-one-session-out"),
])
def test_iemocap_results_keep_speakers_and_sessions(tmp_path, protocol,
                                                   column, unit, heading):
    manifests = str(tmp_path / "m")
    for k, (spk, ses) in enumerate((("Ses01F", "Ses01"),
                                    ("Ses02M", "Ses02")), start=1):
        _fold(manifests, protocol, k,
              [{"ID": f"u{k}", "spk_id": spk, "group": ses}])
    per_fold = _per_fold(manifests, protocol)
    expected = ["Ses01F", "Ses02M"] if column == "spk_id" else [
        "Ses01", "Ses02"]
    assert [f["test_groups"] for f in per_fold] == expected
    out = str(tmp_path / "out")
    write_results(out, per_fold, "AMSER", protocol)
    text = open(os.path.join(out, "results.md")).read()
    assert text.startswith(f"# AMSER: 2 folds, {heading}")
    assert f"| Test {unit} |" in text


def test_old_manifests_with_a_session_column(tmp_path):
    folder = tmp_path / "m" / "session" / "fold_1"
    folder.mkdir(parents=True)
    (folder / "test.csv").write_text("ID,spk_id,session\nu,Ses01F,Ses01\n")
    assert fold_test_groups(str(tmp_path / "m"), "session", 1) == "Ses01"


def test_mean_std_is_the_sample_standard_deviation():
    import statistics

    values = [61.0, 64.5, 70.25]
    out = summarize_folds([{"WA": v, "UA": v, "macro_F1": v, "recall": {}}
                           for v in values])
    assert out["WA"]["mean"] == pytest.approx(statistics.mean(values))
    assert out["WA"]["std"] == pytest.approx(statistics.stdev(values))
    one = summarize_folds([{"WA": 1.0, "UA": 1.0, "macro_F1": 1.0}])
    assert one["WA"]["mean"] == 1.0 and one["WA"]["std"] != one["WA"]["std"]


@pytest.mark.parametrize("selections, words", [
    (("last", "last"), "with the last epoch's checkpoint."),
    (("best_valid", "best_valid"),
     "with the checkpoint of best validation UA."),
    (("last", None), "with the checkpoint of last (folds 1), an unrecorded "
                     "model_selection (folds 2)."),
])
def test_results_say_which_checkpoint_was_tested(tmp_path, selections,
                                                 words):
    """The table names the checkpoint the folds' ``model_selection`` chose
    (it said "best validation UA" when the recipe tested the last epoch)."""
    manifests = str(tmp_path / "m")
    for k in (1, 2):
        _fold(manifests, "grouped", k,
              [{"ID": f"u{k}", "spk_id": "unknown", "group": f"g{k}"}])
    per_fold = _per_fold(manifests, "grouped")
    for row, selection in zip(per_fold, selections):
        row["model_selection"] = selection
    out = str(tmp_path / "out")
    write_results(out, per_fold, "ERL", "grouped")
    text = " ".join(open(os.path.join(out, "results.md")).read().split())
    assert words in text
    assert "| Tested epoch |" in text
