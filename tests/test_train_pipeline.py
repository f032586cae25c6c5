"""What `recsys train` trains its encoder and SASRec on, per purpose: never a label, and as close to
each label as the test and serving models are to their targets."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.train import encoder_run_dir, purpose_data, sasrec_checkpoint
from recsys.data import label_split, leave_one_out

KIND = "leave-one-out"


def _events_per_user(frame: pl.DataFrame) -> dict:
    return dict(frame.group_by("user_id").len().iter_rows())


def test_sasrec_for_the_labels_learns_up_to_each_folds_labels(synthetic):
    folds = 2
    full = _events_per_user(synthetic.interactions)
    encoders, per_fold = purpose_data(synthetic, "labels", folds, KIND)
    assert len(per_fold) == folds and len(encoders) == folds
    for fold, data in enumerate(per_fold):
        _, split = label_split(synthetic, fold, KIND)
        learned = _events_per_user(data.train_frame)
        label_seq = dict(split.targets.select("user_id", "seq").iter_rows())
        # Every event before the fold's label, and nothing from the label on: one step from the
        # label, as the test split's SASRec is from the test target.
        assert all(learned[u] == label_seq[u] for u in label_seq)
        assert all(learned[u] == full[u] - fold - 2 for u in label_seq)
        # Without a holdout of its own the encoder learns the same events as SASRec.
        assert _events_per_user(encoders[fold].interactions) == learned
    # An encoder with a holdout (to stop early) is trained once, before both folds' labels: its
    # own holdout (its last two events) then ends where fold 1's label begins.
    (shared,), _ = purpose_data(synthetic, "labels", folds, KIND, encoder_holdout=True)
    shared_events = _events_per_user(shared.interactions)
    assert all(shared_events[u] == full[u] - folds for u in shared_events)


def test_sasrec_for_the_test_split_learns_up_to_the_test_target(synthetic):
    full = _events_per_user(synthetic.interactions)
    (encoder,), (data,) = purpose_data(synthetic, "test", 2, KIND)
    learned = _events_per_user(data.train_frame)
    test = leave_one_out(synthetic, "test")
    assert test.targets.height > 0
    assert all(learned[u] == full[u] - 1 for u in test.targets["user_id"])
    assert _events_per_user(encoder.interactions) == learned
    _, (serve,) = purpose_data(synthetic, "serve", 2, KIND)
    assert np.array_equal(serve.history_lengths(), np.array([full[u] for u in serve.users.ids]))


def test_checkpoint_names(tmp_path):
    assert encoder_run_dir(tmp_path, "labels", 1).name == "encoder_fold1"
    assert encoder_run_dir(tmp_path, "test").name == "encoder"
    assert sasrec_checkpoint(tmp_path, "labels", 1).name == "sasrec_fold1.pt"
    assert sasrec_checkpoint(tmp_path, "test", 0).name == "sasrec.pt"
    assert sasrec_checkpoint(tmp_path, "serve", 0, stem="sasrec_seed1").name == "sasrec_seed1.pt"
