"""Class sets, category mapping and soft targets (amser_sb.core.labels)."""

import random

import pytest

from amser_sb.core.labels import (
    IEMOCAP_4,
    ClassSet,
    normalize_category,
    soft_targets,
    vote_mass,
)


def test_iemocap_class_order_is_fixed():
    assert IEMOCAP_4.names == ("neu", "hap", "sad", "ang")
    assert IEMOCAP_4.soft_columns == [
        "soft_neu", "soft_hap", "soft_sad", "soft_ang",
    ]
    assert [IEMOCAP_4.index(n) for n in ("neu", "hap", "sad", "ang")] == [
        0, 1, 2, 3,
    ]


@pytest.mark.parametrize(
    "code, expected",
    [("neu", "neu"), ("hap", "hap"), ("exc", "hap"), ("sad", "sad"),
     ("ang", "ang"), ("fru", None), ("sur", None), ("fea", None),
     ("dis", None), ("oth", None), ("xxx", None)],
)
def test_iemocap_codes(code, expected):
    assert IEMOCAP_4.code_to_class(code) == expected
    assert IEMOCAP_4.is_ambiguous(code) == (code == "xxx")


@pytest.mark.parametrize(
    "category, expected",
    [("Neutral", "neu"), ("Neutral state", "neu"), ("neutral  STATE", "neu"),
     ("Happiness", "hap"), ("Excited", "hap"), ("Sadness", "sad"),
     ("Anger", "ang"), ("Frustration", None), ("Surprise", None),
     ("Fear", None), ("Disgust", None), ("Other", None),
     ("Other:pride", None), ("Other: not sure", None)],
)
def test_iemocap_categories(category, expected):
    assert IEMOCAP_4.category_to_class(category) == expected


def test_normalize_category():
    assert normalize_category(" Neutral\tstate ") == "neutral state"
    assert normalize_category("Other:Amused") == "other"
    assert normalize_category("OTHER") == "other"
    assert normalize_category("") == ""


def test_vote_mass_splits_each_vote_equally():
    votes = [
        ["Neutral"],
        ["Neutral state", "Frustration"],
        ["Excited", "Happiness", "Anger", "Other:pride"],
        [],  # no vote cast
        ["Sadness", "Sadness"],  # repeated name counts once
    ]
    mass, total = vote_mass(votes, IEMOCAP_4)
    assert total == 4.0
    assert mass == [1.5, 0.5, 1.0, 0.25]


def test_soft_targets_normalise_and_fall_back():
    assert soft_targets([1.5, 0.5, 1.0, 0.0]) == [0.5, 0.5 / 3, 1 / 3, 0.0]
    assert soft_targets([0.0] * 4) is None
    assert soft_targets([0.0] * 4, "ang", IEMOCAP_4) == [0.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="class_set"):
        soft_targets([0.0] * 4, "ang")


def test_soft_targets_property_random_votes():
    """Soft targets sum to 1, mass never exceeds the number of voters."""
    rng = random.Random(0)
    pool = ["Neutral", "Neutral state", "Happiness", "Excited", "Sadness",
            "Anger", "Frustration", "Surprise", "Other:x", "Fear"]
    for _ in range(500):
        votes = [rng.sample(pool, rng.randint(0, 3))
                 for _ in range(rng.randint(0, 6))]
        mass, total = vote_mass(votes, IEMOCAP_4)
        assert total == sum(1 for v in votes if v)
        assert sum(mass) <= total + 1e-9
        assert all(m >= 0 for m in mass)
        soft = soft_targets(mass)
        if sum(mass) == 0:
            assert soft is None
        else:
            assert sum(soft) == pytest.approx(1.0)
            # Same ranking as the mass.
            assert soft.index(max(soft)) == mass.index(max(mass))


def test_custom_class_set_and_validation():
    cs = ClassSet(["pos", "neg", "neu"], {"p": "pos"}, {"Good": "pos"})
    assert cs.soft_columns == ["soft_pos", "soft_neg", "soft_neu"]
    assert vote_mass([["good"], ["bad"]], cs) == ([1.0, 0.0, 0.0], 2.0)
    assert cs.one_hot("neu") == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="unique"):
        ClassSet(["a", "a"], {}, {})
    with pytest.raises(ValueError, match="not in the classes"):
        ClassSet(["a"], {"x": "b"}, {})
    with pytest.raises(ValueError, match="not in the classes"):
        ClassSet(["a"], {}, {"X": "b"})


def test_describe_is_stable_and_json_able():
    import json

    text = json.dumps(IEMOCAP_4.describe(), sort_keys=True)
    assert json.loads(text)["names"] == ["neu", "hap", "sad", "ang"]
    assert json.loads(text)["code_map"]["exc"] == "hap"


def test_label_encoder_loads_in_speechbrain(tmp_path):
    from speechbrain.dataio.encoder import CategoricalEncoder

    path = tmp_path / "label_encoder.txt"
    IEMOCAP_4.write_label_encoder(path)
    enc = CategoricalEncoder()
    enc.expect_len(4)
    assert enc.load_if_possible(path)
    assert enc.lab2ind == {"neu": 0, "hap": 1, "sad": 2, "ang": 3}
    # Byte-identical to SpeechBrain's own writer.
    ref = CategoricalEncoder()
    ref.update_from_iterable(["neu", "hap", "sad", "ang"])
    ref.save(tmp_path / "ref.txt")
    assert path.read_text() == (tmp_path / "ref.txt").read_text()
