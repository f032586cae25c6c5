"""SASRec settings swept on a GPU: many sizes and lengths of training in minutes, on validation.

Two steps, so the GPU machine needs torch, numpy and scipy alone (not polars, implicit or the
text encoder's weights):

    # here: the validation split's histories, targets, frozen text embeddings and word weights
    .venv/bin/python benchmarks/sasrec_gpu.py export --data-dir ../shared/data/amazon-scientific \
        --out .gpu/scientific_valid.npz
    # on the GPU machine: each setting trained there and scored over the whole catalogue
    python3 benchmarks/sasrec_gpu.py sweep --data .gpu/scientific_valid.npz \
        --settings-file benchmarks/sasrec_gpu_grid.json --output "$OUT/sasrec_gpu.json"

Each setting is a JSON object of SASRec's options (``recsys.scorers.sasrec.SASRecConfig``),
trained with the scorer's own ``train_model`` and scored as the evaluation protocol does: every
item ranked, the user's history excluded, ties broken by item row. The results file is rewritten
after every setting, so a run stopped early keeps what it measured.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def export(args: argparse.Namespace) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from recsys.data import TrainData, load_amazon_scientific
    from recsys.data.split import make_split
    from recsys.scorers import LexicalScorer
    from recsys.text.cache import cached_embeddings
    from recsys.text.encoder import EncoderConfig, TextEncoder

    dataset = load_amazon_scientific(args.data_dir)
    split = make_split(dataset, "valid")
    data = TrainData.from_split(dataset, split)
    users, targets = data.target_pairs(split)
    histories = [data.history(u) for u in range(data.n_users)]
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    text, _ = cached_embeddings(TextEncoder(EncoderConfig()), data.item_text)
    words = LexicalScorer().fit(data).vectors.tocsr()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}.npz")
    np.savez_compressed(
        tmp,
        n_items=data.n_items,
        history_items=np.concatenate(histories).astype(np.int64),
        history_lengths=lengths,
        target_users=users.astype(np.int64),
        target_items=targets.astype(np.int64),
        text=np.asarray(text, dtype=np.float32),
        words_data=words.data.astype(np.float32),
        words_indices=words.indices.astype(np.int64),
        words_indptr=words.indptr.astype(np.int64),
        words_shape=np.array(words.shape),
    )
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {data.n_users} users, {data.n_items} items, {len(targets)} targets")
    return 0


def _import_sasrec() -> types.ModuleType:
    """``recsys.scorers.sasrec`` (and ``recsys.evaluation.metrics``) without the packages around
    them: their ``__init__`` modules import polars and implicit, which a bare GPU machine lacks and
    this sweep does not use."""
    try:
        import polars  # noqa: F401

        import recsys.scorers.sasrec as sasrec

        return sasrec
    except ImportError:
        pass
    packages = (
        ("recsys.data", "recsys/data"),
        ("recsys.scorers", "recsys/scorers"),
        ("recsys.evaluation", "recsys/evaluation"),
    )
    for name, folder in packages:
        package = types.ModuleType(name)
        package.__path__ = [str(ROOT / folder)]
        sys.modules[name] = package
    train_data = types.ModuleType("recsys.data.train_data")
    train_data.TrainData = object  # type: ignore[attr-defined]  # only named in annotations
    sys.modules["recsys.data.train_data"] = train_data
    import recsys.scorers.sasrec as sasrec

    return sasrec


def sweep(args: argparse.Namespace) -> int:
    import scipy.sparse as sp
    import torch

    sys.path.insert(0, str(ROOT))
    sasrec = _import_sasrec()
    z = np.load(args.data)
    n_items = int(z["n_items"])
    bounds = np.concatenate([[0], np.cumsum(z["history_lengths"])])
    histories = [z["history_items"][a:b] for a, b in itertools.pairwise(bounds)]
    users, targets = z["target_users"], z["target_items"]
    text = torch.from_numpy(z["text"])
    words = sp.csr_matrix(
        (z["words_data"], z["words_indices"], z["words_indptr"]), shape=tuple(z["words_shape"])
    )
    trainable = [h for h in histories if len(h) >= 2]
    settings: list[dict[str, Any]] = []
    if args.settings_file:
        settings += json.loads(args.settings_file.read_text())
    settings += [json.loads(s) for s in args.settings]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else None
    command = "python3 benchmarks/sasrec_gpu.py " + " ".join(sys.argv[1:])
    rows: list[dict[str, Any]] = []
    for options in settings:
        cfg = sasrec.SASRecConfig(**{"device": device.type, **options})
        t0 = time.perf_counter()
        model, info = sasrec.train_model(
            trainable, n_items, cfg, text if cfg.text else None, words if cfg.words else None
        )
        seconds = time.perf_counter() - t0
        ranks = _ranks(model.to(device), histories, users, targets, cfg.max_length, device)
        row = {"settings": options, "seconds": round(seconds, 1), **_metrics(ranks)}
        row["loss"] = info["final_loss"]
        rows.append(row)
        print(
            f"{json.dumps(options)}: Recall@10 {row['recall@10']:.4f} NDCG@10 {row['ndcg@10']:.4f} "
            f"Recall@50 {row['recall@50']:.4f} ({seconds:.0f} s)",
            flush=True,
        )
        payload = {"command": command, "gpu": gpu, "torch": torch.__version__, "split": "valid", "runs": rows}
        _write(args.output, payload)
    return 0


def _ranks(
    model: Any,
    histories: list[np.ndarray],
    users: np.ndarray,
    targets: np.ndarray,
    length: int,
    device: Any,
) -> np.ndarray:
    """0-based rank of each target among all items, the user's history excluded (the protocol's
    ``target_ranks``: ties broken by item row)."""
    import torch

    from recsys.evaluation.metrics import target_ranks
    from recsys.scorers.sasrec import _windows

    model.eval()
    out = np.empty(len(users), dtype=np.int64)
    with torch.inference_mode():
        table = model.item_table()
        for s in range(0, len(users), 1024):
            hist = [histories[int(u)] for u in users[s : s + 1024]]
            seq = torch.as_tensor(_windows(hist, length), device=device)
            scores = model.logits(model(seq, table)[:, -1], table).cpu().numpy()
            for r, h in enumerate(hist):
                scores[r, h] = -np.inf
            out[s : s + len(hist)] = target_ranks(scores, np.arange(len(hist)), targets[s : s + 1024])
    model.cpu()
    return out


def _metrics(ranks: np.ndarray) -> dict[str, float]:
    from recsys.evaluation.metrics import ranking_metrics

    per_user = ranking_metrics(ranks, np.arange(len(ranks)), len(ranks), (10, 50))  # one target each
    return {
        k: round(float(per_user[k].mean()), 4)
        for k in ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr")
    }


def _write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    ex = sub.add_parser("export", help="write the validation split's arrays (needs the project's stack)")
    ex.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    ex.add_argument("--out", type=Path, default=Path(".gpu/scientific_valid.npz"))
    sw = sub.add_parser("sweep", help="train and score each setting (on CUDA where torch sees it)")
    sw.add_argument("settings", nargs="*", help="JSON objects of SASRec's options")
    sw.add_argument("--data", type=Path, default=Path(".gpu/scientific_valid.npz"))
    sw.add_argument("--settings-file", type=Path, help="a JSON list of settings, run before the arguments")
    sw.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "sasrec_gpu.json")
    args = ap.parse_args()
    return export(args) if args.step == "export" else sweep(args)


if __name__ == "__main__":
    sys.exit(main())
