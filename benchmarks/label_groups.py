"""Label groups: do the ranker's labels gain from scorers that have learned from the other users'
later events, as the scorers at test time have?

    .venv/bin/python benchmarks/label_groups.py --work artifacts/scientific.work --shift 1 --groups 1 2
    .venv/bin/python benchmarks/label_groups.py --work artifacts/scientific.work --shift 0 --groups 1 2

With `recommender.label_groups = G` the labelled users fall into G groups; a group's candidates
and features come from collaborative scorers fitted on its own histories before the labels and on
every other user's history but the last event (the encoder and SASRec keep their per-fold
checkpoints). G = 1 is `recsys train`'s scheme: every user's features from scorers fitted on all
histories before the labels, which have seen about one event per user fewer than at test time.

`--shift 0` learns the ranker from label folds 0 and 1 and scores the test split (each user's last
event). `--shift 1` is the same experiment one event earlier, so that it can choose: every user's
last event is dropped, the ranker learns from the events two and three before the end (label
folds 1 and 2) and is judged on the validation event, whose features come from scorers fitted on
everything before it (fold 0 of `recsys train`: the regime the test split's scorers are in, one
event earlier). The checkpoints are those `recsys train` left in `--work`; fold 2's, which it does
not train, are trained on first use.

Per group count: Recall@10, NDCG@10, Recall@50, NDCG@50 over every user of the judged split,
full ranking (a target outside the candidates is a miss), the NDCG@10 gain over the first group
count with a paired bootstrap 95% interval, and the out-of-fold NDCG@10 per labelled user. Frames
and results are kept under `<work>/frames/groups/`, so a repeated run reads them back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

from _machine import machine
from ranker_settings import METRICS, run_setting, shifted_frames

from pipelines.train import TrainJob
from recsys.data import load_amazon_scientific
from recsys.evaluation.report import write_json
from recsys.evaluation.stats import paired_bootstrap


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="the <out>.work folder of a recsys train")
    ap.add_argument("--shift", type=int, choices=(0, 1), default=1, help="1: judge on validation, 0: on test")
    ap.add_argument("--groups", type=int, nargs="+", default=[1, 2], help="group counts to compare")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    ap.add_argument("--output", type=Path, default=None, help="default: results/label_groups_shift{S}.json")
    args = ap.parse_args()
    if any(g < 1 for g in args.groups):
        raise SystemExit("--groups: every group count must be at least 1")
    output = args.output or Path(__file__).parent / "results" / f"label_groups_shift{args.shift}.json"
    dataset = load_amazon_scientific(args.data_dir)
    job = TrainJob.from_config({}, args.work)
    results: dict[str, Any] = {}
    first = None
    for groups in args.groups:
        judged, config, labels, test, folder = shifted_frames(dataset, job, args.work, args.shift, groups)
        kept, per_user = run_setting(judged, config, {}, labels, test, folder)
        # run_setting's "test" is the judged split (validation at shift 1); its "validation" the
        # ranker's out-of-fold figures over the label folds
        row: dict[str, Any] = {
            "judged": kept["test"],
            "labels_out_of_fold": kept["validation"],
            "seconds": kept["seconds"],
        }
        if first is None:
            first = per_user
        else:
            gain = paired_bootstrap(per_user["ndcg@10"], first["ndcg@10"])
            row["ndcg@10_gain_over_first"] = [round(gain[k], 4) for k in ("mean_difference", "low", "high")]
        results[f"groups {groups}"] = row
        print(f"groups {groups}: {json.dumps(row)}", flush=True)
    command = "python benchmarks/label_groups.py " + " ".join(sys.argv[1:])
    judged_split = "validation (every user's second-to-last event)" if args.shift else "test"
    write_json(
        output,
        {
            "command": command,
            "machine": machine(),
            "judged": judged_split,
            "metrics": list(METRICS),
            "results": results,
        },
    )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
