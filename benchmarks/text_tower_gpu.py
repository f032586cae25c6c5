r"""A text model that reads the user's whole history, fine-tuned end to end on a GPU, on validation.

The encoder the engine trains on the CPU (``recsys.text``, ``user_input = "items"``) keeps the
transformer frozen and learns a projection and a prior per item over its pooled embeddings; the
user is a decayed mean of their last items. This benchmark asks what that leaves on the table: the
same all-MiniLM-L6-v2 reading the user's history as one text (newest item first, each item's
tokens cut to ``item_tokens``, joined by [SEP], cut to ``user_tokens``), every weight fine-tuned,
against the same model fine-tuned with the pooled-items user, over the same steps.

Two steps, so the GPU machine needs torch and transformers alone (not polars or implicit):

    # here: the item texts tokenized, each protocol's histories and targets, the weights in fp16
    .venv/bin/python benchmarks/text_tower_gpu.py export --data-dir ../shared/data/amazon-scientific \
        --out .gpu/text_tower
    # on the GPU machine (carrying .gpu): each setting trained on the first label fold and scored
    python3 benchmarks/text_tower_gpu.py sweep --data .gpu/text_tower --output "$OUT/text_tower_gpu.json" \
        '{"user": "text", "test": true}' '{"user": "items"}'
    # here, with the files copied to artifacts/text_tower/scores_<protocol>.npz
    .venv/bin/python benchmarks/ranker_settings.py --work artifacts/scientific.work \
        --variant texttower --against defaults '{}'

Training: every (history prefix, next item) pair of the split's histories, a full softmax over the
catalogue. Each step re-encodes every item without gradient under the current weights (so no
candidate is stale) and the batch's targets with gradient in their place; logits are cosine over a
temperature plus a learned prior per item (as the engine's encoder). The validation targets are
scored after every epoch as the protocol does (every item ranked, the history excluded); the
validation split here is `recsys train`'s first label fold (each user's validation event, the
histories before it). A setting with ``"test": true`` is then trained for its best number of epochs
on each protocol `recsys train` fits scorers on (every label fold's histories, and the test
split's), scored on that protocol's targets, and every user's best items and their scores are
written beside the results (``<output stem>_<n>_<protocol>.npz``), for a hybrid run to read as one
more scorer (``benchmarks/ranker_variants.py``, variant ``texttower``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

CLS, SEP, PAD = 101, 102, 0  # all-MiniLM-L6-v2's (BERT uncased) special tokens


@dataclass(frozen=True)
class Setting:
    user: str = "text"  # text: the history as one text | items: decayed mean of the last items
    user_tokens: int = 128  # text: tokens of the user's text
    item_tokens: int = 32  # text: tokens of each history item inside it
    n_recent: int = 3  # items: items pooled
    decay: float = 0.7  # items: weight of each older item
    epochs: int = 3
    learning_rate: float = 5e-5  # transformer
    head_learning_rate: float = 1e-3  # projection and item prior
    train_layers: int = 0  # top N layers train (0: all)
    batch_size: int = 128
    temperature: float = 0.05
    warmup: float = 0.05
    seed: int = 0
    test: bool = False  # also train on the test split's histories and score the test targets
    top: int = 200  # items kept per user in the scores files


def export(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from recsys.data import TrainData, load_amazon_scientific
    from recsys.data.split import make_split
    from recsys.rank.training import fold_data
    from recsys.text.encoder import default_model_path

    dataset = load_amazon_scientific(args.data_dir)
    arrays: dict[str, np.ndarray] = {}
    texts: list[str] = []
    # The data `recsys train` fits its scorers on: each label fold's histories before its labels,
    # and the test split's (the user rows and items are those of the scorers' TrainData).
    protocols = {f"fold{f}": fold_data(dataset, f, "auto") for f in range(args.label_folds)}
    test_split = make_split(dataset, "test")
    protocols["test"] = (TrainData.from_split(dataset, test_split), test_split)
    for name, (data, split) in protocols.items():
        users, targets = data.target_pairs(split)
        histories = [data.history(u) for u in range(data.n_users)]
        arrays[f"{name}_history_items"] = np.concatenate(histories).astype(np.int32)
        arrays[f"{name}_history_lengths"] = np.array([len(h) for h in histories], dtype=np.int32)
        arrays[f"{name}_target_users"] = users.astype(np.int32)
        arrays[f"{name}_target_items"] = targets.astype(np.int32)
        texts = data.item_text
    source = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    tokens = tokenizer(texts, truncation=True, max_length=args.max_length, padding="max_length")
    arrays["item_tokens"] = np.asarray(tokens["input_ids"], dtype=np.int32)
    out: Path = args.out
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    weights = {
        k: v.to(torch.float16).contiguous() for k, v in load_file(source / "model.safetensors").items()
    }
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    for name in (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ):
        (model_dir / name).write_bytes((source / name).read_bytes())
    (model_dir / "vocab.txt").write_bytes((source / "vocab.txt").read_bytes())
    tmp = out / f".data.tmp-{os.getpid()}.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out / "data.npz")
    print(
        f"wrote {out}: {len(texts)} items; targets "
        + ", ".join(f"{k} {len(arrays[k + '_target_users'])}" for k in protocols)
    )
    return 0


class Split:
    """One split's histories and targets, and its training pairs (every prefix and the next item)."""

    def __init__(self, z: Any, name: str) -> None:
        lengths = z[f"{name}_history_lengths"].astype(np.int64)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        items = z[f"{name}_history_items"].astype(np.int64)
        self.histories = [items[a:b] for a, b in itertools.pairwise(bounds)]
        self.users = z[f"{name}_target_users"].astype(np.int64)
        self.targets = z[f"{name}_target_items"].astype(np.int64)
        counts = np.maximum(lengths - 1, 0)
        self.pair_users = np.repeat(np.arange(len(lengths)), counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        self.pair_steps = np.arange(int(counts.sum())) - starts + 1  # target index in the history

    @staticmethod
    def everyone(split: Split, limit: int = 0) -> Split:
        """The same histories with every user (the first ``limit``) as a row, for the scores file."""
        out = object.__new__(Split)
        out.histories = split.histories
        out.users = np.arange(min(len(split.histories), limit or len(split.histories)))
        out.targets = np.zeros(len(split.histories), dtype=np.int64)
        out.pair_users, out.pair_steps = split.pair_users, split.pair_steps
        return out


class Tower:
    """all-MiniLM-L6-v2 with a projection (identity at the start) and a prior per item."""

    def __init__(self, folder: Path, n_items: int, setting: Setting, device: Any) -> None:
        import torch
        from transformers import AutoModel

        torch.manual_seed(setting.seed)
        self.bert = AutoModel.from_pretrained(folder, dtype=torch.float32).to(device)
        for module in self.bert.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0  # the bank is encoded without dropout; so are the positives
        layers = self.bert.encoder.layer
        if setting.train_layers:
            for param in self.bert.embeddings.parameters():
                param.requires_grad_(False)
            for layer in layers[: len(layers) - setting.train_layers]:
                for param in layer.parameters():
                    param.requires_grad_(False)
        dim = self.bert.config.hidden_size
        self.head = torch.nn.Linear(dim, dim, bias=False).to(device)
        torch.nn.init.eye_(self.head.weight)
        self.prior = torch.nn.Parameter(torch.zeros(n_items, device=device))

    def encode(self, ids: Any) -> Any:
        import torch

        mask = (ids != PAD).long()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=ids.is_cuda):
            hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden = hidden.float()
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return torch.nn.functional.normalize(self.head(pooled), dim=-1)

    def encode_all(self, ids: Any, chunk: int = 2048) -> Any:
        import torch

        with torch.no_grad():
            return torch.cat([self.encode(ids[s : s + chunk]) for s in range(0, len(ids), chunk)])


def user_tokens(item_tokens: np.ndarray, history: np.ndarray, s: Setting) -> np.ndarray:
    """The history as one token sequence: [CLS] newest item [SEP] older item [SEP] … (cut)."""
    out = [CLS]
    for item in history[::-1]:
        body = item_tokens[item]
        body = body[(body != PAD) & (body != CLS) & (body != SEP)][: s.item_tokens]
        out.extend(body.tolist())
        out.append(SEP)
        if len(out) >= s.user_tokens:
            break
    ids = np.zeros(s.user_tokens, dtype=np.int64)
    seq = [*out[: s.user_tokens - 1], SEP] if len(out) > s.user_tokens else out
    ids[: len(seq)] = seq
    return ids


class Users:
    """Turns (history) into the user's embedding, for either kind of user side."""

    def __init__(self, tower: Tower, item_tokens: np.ndarray, s: Setting, device: Any) -> None:
        self.tower, self.item_tokens, self.s, self.device = tower, item_tokens, s, device

    def embed(self, histories: list[np.ndarray], bank: Any | None = None) -> Any:
        import torch

        s = self.s
        if s.user == "text":
            ids = np.stack([user_tokens(self.item_tokens, h, s) for h in histories])
            return self.tower.encode(torch.as_tensor(ids, device=self.device))
        recent = np.full((len(histories), s.n_recent), -1, dtype=np.int64)
        for r, h in enumerate(histories):
            last = h[-s.n_recent :][::-1]
            recent[r, : len(last)] = last
        weights = torch.as_tensor(
            np.where(recent >= 0, s.decay ** np.arange(s.n_recent)[None, :], 0.0), device=self.device
        ).float()
        rows = torch.as_tensor(np.maximum(recent, 0), device=self.device)
        if bank is None:  # with gradient: encode the distinct recent items
            uniq, inverse = np.unique(np.maximum(recent, 0), return_inverse=True)
            emb = self.tower.encode(torch.as_tensor(self.item_tokens[uniq], device=self.device).long())
            vectors = emb[torch.as_tensor(inverse.reshape(recent.shape), device=self.device)]
        else:
            vectors = bank[rows]
        pooled = (vectors * weights[..., None]).sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)


def train(
    folder: Path, item_tokens: np.ndarray, split: Split, s: Setting, device: Any, eval_split: Split | None
) -> tuple[Tower, list[dict[str, Any]]]:
    """Fine-tune for ``s.epochs``; with ``eval_split``, score its targets after each epoch."""
    import torch

    n_items = len(item_tokens)
    tower = Tower(folder, n_items, s, device)
    users = Users(tower, item_tokens, s, device)
    all_ids = torch.as_tensor(item_tokens, device=device).long()
    params = [p for p in tower.bert.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [
            {"params": params, "lr": s.learning_rate, "weight_decay": 0.01},
            {"params": [tower.head.weight, tower.prior], "lr": s.head_learning_rate, "weight_decay": 0.0},
        ]
    )
    rng = np.random.default_rng(s.seed)
    n_pairs = len(split.pair_users)
    per_epoch = math.ceil(n_pairs / s.batch_size)
    total = per_epoch * s.epochs
    warm = max(1, int(s.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / warm) * max(0.0, (total - step) / max(1, total - warm))
    )
    log: list[dict[str, Any]] = []
    for epoch in range(1, s.epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(n_pairs)
        tower.bert.train()
        losses = []
        for b in range(per_epoch):
            batch = order[b * s.batch_size : (b + 1) * s.batch_size]
            pu, pt = split.pair_users[batch], split.pair_steps[batch]
            hist = [split.histories[u][:t] for u, t in zip(pu, pt, strict=True)]
            target = np.array([split.histories[u][t] for u, t in zip(pu, pt, strict=True)])
            bank = tower.encode_all(all_ids)
            uniq = np.unique(target)
            fresh = tower.encode(all_ids[torch.as_tensor(uniq, device=device)])
            candidates = bank.index_put((torch.as_tensor(uniq, device=device),), fresh)
            logits = users.embed(hist) @ candidates.T / s.temperature + tower.prior[None, :]
            # The user's own earlier items are not negatives (the protocol never ranks them).
            rows = np.repeat(np.arange(len(hist)), [len(h) for h in hist])
            cols = np.concatenate(hist)
            keep = cols != target[rows]
            logits = logits.index_put(
                (torch.as_tensor(rows[keep], device=device), torch.as_tensor(cols[keep], device=device)),
                torch.tensor(-1e4, device=device),
            )
            loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(target, device=device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*params, tower.head.weight], 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
        row: dict[str, Any] = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4)}
        row["train_seconds"] = round(time.perf_counter() - t0, 1)
        if eval_split is not None:
            row.update(evaluate(tower, users, all_ids, eval_split)[0])
        log.append(row)
        print(f"  {json.dumps(row)}", flush=True)
    return tower, log


def scores_for(tower: Tower, users: Users, all_ids: Any, split: Split) -> np.ndarray:
    """(targets, items) scores, the history at -inf."""
    import torch

    tower.bert.eval()
    out = np.empty((len(split.users), len(all_ids)), dtype=np.float32)
    with torch.no_grad():
        bank = tower.encode_all(all_ids)
        for s in range(0, len(split.users), 512):
            hist = [split.histories[int(u)] for u in split.users[s : s + 512]]
            u = users.embed(hist, bank)
            out[s : s + len(hist)] = (
                (u @ bank.T / users.s.temperature + tower.prior[None, :]).float().cpu().numpy()
            )
    for r, u in enumerate(split.users):
        out[r, split.histories[int(u)]] = -np.inf
    return out


def evaluate(tower: Tower, users: Users, all_ids: Any, split: Split) -> tuple[dict[str, float], np.ndarray]:
    from sasrec_gpu import _import_sasrec, _metrics

    _import_sasrec()  # the metrics module without the packages around it
    from recsys.evaluation.metrics import target_ranks

    scores = scores_for(tower, users, all_ids, split)
    ranks = target_ranks(scores, np.arange(len(scores)), split.targets)
    return _metrics(ranks), scores


def top_items(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int32), np.take_along_axis(vals, order, axis=1)


def sweep(args: argparse.Namespace) -> int:
    import torch
    from sasrec_gpu import _write

    sys.path.insert(0, str(ROOT))
    z = np.load(args.data / "data.npz")
    item_tokens = z["item_tokens"].astype(np.int64)
    names = sorted(k[: -len("_target_users")] for k in z.files if k.endswith("_target_users"))
    splits = {name: _limit(Split(z, name), args.limit_pairs, args.limit_targets) for name in names}
    valid = splits["fold0"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else None
    command = "python3 benchmarks/text_tower_gpu.py " + " ".join(sys.argv[1:])
    rows: list[dict[str, Any]] = []
    folder = args.data / "model"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for n, options in enumerate(json.loads(s) for s in args.settings):
        s = Setting(**options)
        print(f"{json.dumps(options)}", flush=True)
        t0 = time.perf_counter()
        tower, log = train(folder, item_tokens, valid, s, device, valid)
        best = max(log, key=lambda r: r["ndcg@10"])
        row: dict[str, Any] = {"settings": asdict(s), "epochs": log, "best": best}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        if s.test:
            # Every protocol's model for the best number of epochs, and its top items per user.
            fitted = Setting(**{**asdict(s), "epochs": best["epoch"]})
            for name, split in splits.items():
                model = tower if name == "fold0" and best["epoch"] == s.epochs else None
                if model is None:
                    model = train(folder, item_tokens, split, fitted, device, None)[0]
                ids = _ids(item_tokens, device)
                metrics, _ = evaluate(model, Users(model, item_tokens, s, device), ids, split)
                row[name] = metrics
                print(f"  {name}: {json.dumps(metrics)}", flush=True)
                full = scores_for(
                    model,
                    Users(model, item_tokens, s, device),
                    ids,
                    Split.everyone(split, args.limit_targets),
                )
                top, top_scores = top_items(full, s.top)
                # One file per protocol: each stays under what a GPU machine's run sends back.
                path = args.output.with_name(f"{args.output.stem}_{n}_{name}.npz")
                tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
                np.savez_compressed(tmp, items=top.astype(np.int16), scores=top_scores.astype(np.float32))
                os.replace(tmp, path)
                del model, full
        rows.append(row)
        payload = {"command": command, "gpu": gpu, "torch": torch.__version__, "runs": rows}
        _write(args.output, payload)
        del tower
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


def _ids(item_tokens: np.ndarray, device: Any) -> Any:
    import torch

    return torch.as_tensor(item_tokens, device=device).long()


def _limit(split: Split, pairs: int, targets: int = 0) -> Split:
    """The split with its training pairs cut to ``pairs`` and its targets to ``targets`` (0: all),
    for a quick check."""
    if pairs:
        split.pair_users, split.pair_steps = split.pair_users[:pairs], split.pair_steps[:pairs]
    if targets:
        split.users, split.targets = split.users[:targets], split.targets[:targets]
    return split


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    ex = sub.add_parser("export", help="write the tokenized items, both splits and the fp16 weights")
    ex.add_argument("--data-dir", type=Path, default=Path("../shared/data/amazon-scientific"))
    ex.add_argument("--out", type=Path, default=Path(".gpu/text_tower"))
    ex.add_argument("--max-length", type=int, default=64, help="tokens per item text")
    ex.add_argument(
        "--label-folds", type=int, default=2, help="label folds of `recsys train` (its default: 2)"
    )
    sw = sub.add_parser("sweep", help="train and score each setting (on CUDA where torch sees it)")
    sw.add_argument("settings", nargs="+", help="JSON objects of Setting's fields")
    sw.add_argument("--data", type=Path, default=Path(".gpu/text_tower"))
    sw.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "text_tower_gpu.json")
    sw.add_argument("--limit-pairs", type=int, default=0, help="train on the first N pairs only (a check)")
    sw.add_argument("--limit-targets", type=int, default=0, help="score the first N targets only (a check)")
    args = ap.parse_args()
    return export(args) if args.step == "export" else sweep(args)


if __name__ == "__main__":
    sys.exit(main())
