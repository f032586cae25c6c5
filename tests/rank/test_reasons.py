"""Which reason family each feature speaks for."""

from recsys.rank.features import HISTORY_FEATURES
from recsys.rank.reasons import family, short_title
from recsys.recommender import RecommenderConfig


def test_each_feature_falls_in_the_family_its_sentence_describes():
    models = {name: spec["model"] for name, spec in RecommenderConfig().scorers.items()}
    expected = {
        "sim_last": "similar",
        "sim_history_max": "similar",
        "sim_history_centroid": "similar",
        "text_score": "similar",
        "transition_from_last": "after",
        "transition_from_history": "after",
        "covisit_rank": "after",
        "factor_sim_last": "cf",
        "factor_sim_history_max": "cf",
        "factor_sim_history_centroid": "cf",
        "als_score": "cf",
        "from_seqlinear": "cf",
        "popularity_recent": "popular",
        "category_affinity": "category_affinity",
        # The candidate leading to the user's items names no item the user would recognise as a cause.
        "transition_to_history": "other",
        "history_length": "other",
    }
    assert set(HISTORY_FEATURES) <= set(expected)
    assert {f: family(f, models) for f in expected} == expected


def test_a_long_title_is_cut_at_a_word_and_marked():
    title = "American Terminal E-FMB250N-100 16/14-Gauge Economy Nylon Fully-Insulated Male Quick Disconnect"
    short = short_title(title)
    assert len(short) <= 80 and short.endswith("…")
    assert short == "American Terminal E-FMB250N-100 16/14-Gauge Economy Nylon Fully-Insulated Male…"
    assert title.startswith(short[:-1])
    # A title that fits stays whole; runs of whitespace fold to one space.
    assert short_title("Digital  Caliper\n6 in") == "Digital Caliper 6 in"
    # One long word is cut inside it rather than dropped to nothing.
    assert short_title("x" * 120) == "x" * 79 + "…"
    assert short_title("Kit, " + "y" * 100) == "Kit, " + "y" * 74 + "…"
