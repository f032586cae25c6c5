"""SASRec (Kang & McAuley 2018) trained with a full softmax: the sequence-aware scorer.

A causal transformer reads the user's last ``max_length`` items and predicts the next one at every
position; item embeddings are shared between input and output. Training uses cross-entropy over
the whole catalogue instead of the original sampled binary loss, which is both simpler and much
stronger (Klenitskiy & Vasilev, RecSys 2023). The catalogue here is a few thousand items, so the
full softmax is cheap.

``text``: each item's vector is its ID embedding plus a learned projection of its frozen text
embedding (the zero-shot encoder's, cached like the text scorer's), in the input and in the output
layer alike, so items with few events borrow from what their descriptions share with others.

``words``: each item's vector also gets the sum of learned vectors of the words in its text, weighted
by their TF-IDF (the lexical scorer's vectors over the catalogue: a sparse items × words matrix
travelling with the weights). A sentence encoder blurs what words keep exact: model numbers, grits,
sizes, a product line. Learned per word, the sequence model can follow "this line, the next size".

``architecture = "gru"``: the same item vectors, loss and training read by a GRU instead of the
transformer (GRU4Rec, Hidasi et al. 2016, trained with the full softmax as above): a recurrent
model keeps a running summary where attention looks back at each item, so the two make different
mistakes, and the ranker can weigh one against the other.

New items (``with_items``, a shop's catalogue growing between trainings): with ``text``, an item
added or edited after training gets its text's projection as its vector (a new item's ID
embedding is zero: nothing learned of it yet), so the model ranks it by what its description shares
with the items it knows instead of leaving it out; its words (``words``) count once it is retrained.

``checkpoint``: a file written by ``save_checkpoint`` (``recsys train`` trains one model on the
histories before every ranker label and shares it across folds). ``fit`` then loads it instead of
training, and scores whatever histories the data holds.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recsys.config import make_config
from recsys.data.train_data import TrainData
from recsys.devices import check_device, torch_device
from recsys.errors import ArtifactError, ConfigError
from recsys.scorers.base import Scorer

log = logging.getLogger(__name__)


ARCHITECTURES = ("transformer", "gru")


@dataclass(frozen=True)
class SASRecConfig:
    architecture: str = "transformer"  # transformer (SASRec) | gru (GRU4Rec)
    dim: int = 64
    layers: int = 2
    heads: int = 2
    max_length: int = 20  # most recent items read (Scientific: 7 per user on average)
    # Chosen on the validation split of Amazon Scientific (benchmarks/RESULTS.md): with the full
    # softmax, dropout 0.5 (0.2 overfits); with the item text, 20 epochs (Recall@10 0.1334 against
    # 0.1322, 0.1272 and 0.1250 for 30, 50 and 100; the ID-only model needed 100 for 0.1194).
    dropout: float = 0.5
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    # Share of the input items hidden at each training step (each enters as padding, a zero vector;
    # every next-item target is kept): the model learns not to lean on any one past item. Off:
    # alone on Amazon Scientific's validation split NDCG@10 0.0874 / 0.0869 / 0.0861 at 0.1 / 0.2 /
    # 0.3 against 0.0862 (seed 0), about the spread of two seeds; 0.1 in the hybrid: validation event
    # −0.0003, test −0.0007, both intervals across zero (benchmarks/RESULTS.md, issue 4).
    item_mask: float = 0.0
    seed: int = 0
    threads: int = 0  # torch threads while training (0: leave as is)
    # Where the model trains: auto (a CUDA GPU where torch sees one, else the CPU), cpu, cuda or
    # cuda:N. It always scores on the CPU, so a model trained on a GPU serves where none is.
    device: str = "auto"
    text: bool = True  # add a projection of each item's frozen text embedding to its ID embedding
    text_model_path: str | None = None  # None: the packaged all-MiniLM-L6-v2
    # Add a learned vector per word of the item's text, TF-IDF weighted (the lexical scorer's
    # vocabulary). Alone on Amazon Scientific's validation split NDCG@10 0.0901 / 0.0879 against
    # 0.0865 / 0.0869 (seeds 0 / 1); in the hybrid level: the validation event +0.0005 (95% interval
    # −0.0007 to +0.0018), the labels out of fold 0.1062 against 0.1068 (benchmarks/RESULTS.md,
    # issue 4). Off: the ranker already reads the words through seqlinear's text prior.
    words: bool = False
    cache_dir: str | None = None  # text embedding cache; None: $RECSYS_CACHE_DIR or ~/.cache/recsys
    checkpoint: str | None = None  # load this trained model instead of training
    progress: bool = False

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"sasrec: architecture must be one of {', '.join(ARCHITECTURES)}, not {self.architecture!r}"
            )
        if self.dim < 1 or self.layers < 1 or self.max_length < 2:
            raise ConfigError("sasrec: dim and layers must be positive, max_length at least 2")
        if self.architecture == "transformer" and (self.heads < 1 or self.dim % self.heads):
            # attention splits dim among the heads; a GRU has no heads, so any dim suits it
            raise ConfigError(f"sasrec: dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if not 0.0 <= self.item_mask < 1.0:
            raise ConfigError(f"sasrec: item_mask must be in [0, 1), not {self.item_mask}")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ConfigError("sasrec: epochs, batch_size and learning_rate must be positive")
        check_device(self.device, "sasrec")


class SASRecModel(nn.Module):
    def __init__(
        self,
        n_items: int,
        cfg: SASRecConfig,
        text: torch.Tensor | None = None,
        words: sp.spmatrix | None = None,
    ) -> None:
        """``text``: (n_items, d) frozen text embeddings, projected and added to the ID embeddings;
        ``words``: (n_items, vocabulary) word weights, each word a learned vector added likewise."""
        super().__init__()
        self.items = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)  # row 0 = padding, item r = row r+1
        self.text_proj: nn.Linear | None = None
        if text is not None:
            if text.shape[0] != n_items:
                raise ConfigError(f"sasrec: {text.shape[0]} text embeddings for {n_items} items")
            padded = torch.cat([torch.zeros(1, text.shape[1]), text.float()])
            self.register_buffer("text", padded)
            self.text_proj = nn.Linear(text.shape[1], cfg.dim, bias=False)
        self.word_vectors: nn.Parameter | None = None
        if words is not None:
            if words.shape[0] != n_items:
                raise ConfigError(f"sasrec: word weights for {words.shape[0]} items, not {n_items}")
            coo = sp.coo_matrix(words)
            coo.sum_duplicates()
            order = np.lexsort((coo.col, coo.row))  # row-major, as a coalesced torch tensor
            # Item r is token r + 1 (0 is the padding token).
            index = torch.as_tensor(np.vstack([coo.row[order] + 1, coo.col[order]]), dtype=torch.long)
            weight = torch.as_tensor(coo.data[order], dtype=torch.float32)
            self.init_words(index, weight, words.shape[1])
        self.positions = nn.Embedding(cfg.max_length, cfg.dim)
        self.blocks: nn.Module
        self.recurrent = cfg.architecture == "gru"
        if self.recurrent:
            self.blocks = nn.GRU(
                cfg.dim, cfg.dim, cfg.layers, batch_first=True, dropout=cfg.dropout if cfg.layers > 1 else 0.0
            )
        else:
            layer = nn.TransformerEncoderLayer(
                cfg.dim, cfg.heads, 2 * cfg.dim, cfg.dropout, batch_first=True, norm_first=True
            )
            self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        # Small item vectors: the output logits are dot products with them, and unit-variance
        # vectors would start the softmax far from uniform.
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()
        causal = torch.triu(torch.ones(cfg.max_length, cfg.max_length, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal", causal, persistent=False)

    def init_words(self, index: torch.Tensor, weight: torch.Tensor, vocabulary: int) -> None:
        """The word weights as (2, nnz) token and word indices and nnz weights, sorted as a
        coalesced sparse matrix: plain buffers, so they save and load as any other tensor; and a
        learned vector per word."""
        self.register_buffer("word_index", index)
        self.register_buffer("word_weight", weight)
        self.word_vectors = nn.Parameter(torch.randn(vocabulary, self.items.embedding_dim) * 0.02)

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, dim) every token's vector: ID embedding, plus the projected text and the
        weighted word vectors where the model has them."""
        table = self.items.weight
        if self.text_proj is not None:
            text: torch.Tensor = self.text  # type: ignore[assignment]
            table = table + self.text_proj(text)
        if self.word_vectors is not None:
            index: torch.Tensor = self.word_index  # type: ignore[assignment]
            weight: torch.Tensor = self.word_weight  # type: ignore[assignment]
            shape = (self.items.num_embeddings, self.word_vectors.shape[0])
            words = torch.sparse_coo_tensor(index, weight, shape, is_coalesced=True, check_invariants=False)
            table = table + torch.sparse.mm(words, self.word_vectors)
        return table

    def forward(self, seq: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) item tokens (0 = padding, left-padded) → (B, L, dim) states."""
        length = seq.shape[1]
        table = self.item_table() if table is None else table
        x = table[seq] * self.items.embedding_dim**0.5 + self.positions.weight[:length][None]
        x = self.dropout(x) * (seq > 0)[..., None]  # padding enters as zero vectors
        if self.recurrent:
            return self.norm(self.blocks(x)[0])  # a GRU is causal by construction
        # Causal mask only: a padding-key mask would leave the leading padding rows with nothing to
        # attend to (NaN), and 0 x NaN poisons the real rows in the next layer.
        causal: torch.Tensor = self.causal  # type: ignore[assignment]
        x = self.blocks(x, mask=causal[:length, :length])
        return self.norm(x)

    def logits(self, states: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """(..., dim) → (..., n_items) scores of every real item."""
        table = self.item_table() if table is None else table
        return states @ table[1:].T


def _windows(histories: list[np.ndarray], length: int) -> np.ndarray:
    """(n, length) the last ``length`` items of each history as tokens (row + 1), left-padded with 0."""
    out = np.zeros((len(histories), length), dtype=np.int64)
    for r, h in enumerate(histories):
        tail = h[-length:]
        if len(tail):
            out[r, -len(tail) :] = tail + 1
    return out


def train_model(
    histories: list[np.ndarray],
    n_items: int,
    cfg: SASRecConfig,
    text: torch.Tensor | None = None,
    words: sp.spmatrix | None = None,
) -> tuple[SASRecModel, dict[str, Any]]:
    """A model trained on ``histories`` (item rows in time order, two or more each) to predict
    every next item over the whole catalogue; returned on the CPU with its training figures."""
    from tqdm.auto import tqdm

    device = torch_device(cfg.device, "sasrec")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    # Input: every item but the last; target: every item but the first (next item at each step).
    tokens = torch.as_tensor(_windows(histories, cfg.max_length + 1), device=device)  # (n, L + 1)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    model = SASRecModel(n_items, cfg, text, words).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(range(cfg.epochs), desc="sasrec", unit="epoch", disable=not cfg.progress)
    loss = torch.zeros(())
    for _ in bar:
        order = torch.as_tensor(rng.permutation(len(histories)), device=device)
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            seq, tgt = inputs[idx], targets[idx]
            keep = tgt > 0  # (B, L) positions with a next item
            if cfg.item_mask:
                hidden = torch.rand(seq.shape, device=device) < cfg.item_mask
                seq = seq.masked_fill(hidden, 0)
            table = model.item_table()
            states = model(seq, table)[keep]  # (positions, dim)
            loss = nn.functional.cross_entropy(model.logits(states, table), tgt[keep] - 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")  # one device sync an epoch, not a step
    seconds = time.perf_counter() - t0
    loss_value = float(loss.detach())
    log.info("sasrec trained in %.0fs on %s, final loss %.3f", seconds, device, loss_value)
    info = {"seconds": round(seconds, 1), "sequences": len(histories), "final_loss": round(loss_value, 4)}
    return model.cpu(), info


class SASRecScorer(Scorer):
    name = "sasrec"

    def __init__(self, config: SASRecConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = make_config(SASRecConfig, config, options)
        self.model: SASRecModel | None = None
        self._table = torch.zeros(0)  # the model's item table, set with the model
        self.train_info: dict[str, Any] = {}

    # ----- training ---------------------------------------------------------------------------
    def fit(self, data: TrainData) -> SASRecScorer:
        cfg = self.config
        if cfg.checkpoint:
            self._load(Path(cfg.checkpoint), data.n_items)
        else:
            self._train(data)
        self._data = data
        return self

    def _train(self, data: TrainData) -> None:
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        histories = [data.history(u) for u in range(data.n_users) if len(data.history(u)) >= 2]
        if not histories:
            raise ConfigError("sasrec: no user has two or more training events")
        model, self.train_info = train_model(
            histories, data.n_items, cfg, self._text_embeddings(data), self._word_weights(data)
        )
        self._set_model(model)

    def _text_embeddings(self, data: TrainData) -> torch.Tensor | None:
        if not self.config.text:
            return None
        from recsys.text.cache import cached_embeddings

        emb, _ = cached_embeddings(
            self._encoder(), data.item_text, self.config.cache_dir, progress=self.config.progress
        )
        return torch.from_numpy(np.array(emb, dtype=np.float32))  # a writable copy of the cached array

    def _encoder(self) -> Any:
        """The frozen text encoder whose embeddings the model projects (its weights load once per
        process, shared with every encoder of the same folder: ``recsys.text.encoder``)."""
        from recsys.text.encoder import EncoderConfig, TextEncoder

        return TextEncoder(EncoderConfig(model_path=self.config.text_model_path))

    def with_items(self, data: TrainData, rows: np.ndarray) -> SASRecScorer:
        """A copy over ``data``'s grown or changed catalogue: ``rows`` (new or edited items) get
        their text's embedding, new items a zero ID embedding; edited items keep theirs, and lose
        their word weights (their old words) until retrained. A model without text has nothing
        to read a new item by: it stays as fitted (new items score ``-inf``)."""
        if self.model is None or self.model.text_proj is None:
            return self  # as ``Scorer.with_items``
        rows = np.asarray(rows, dtype=np.int64)
        old, n = self.n_items, data.n_items
        if n < old:
            raise ConfigError(f"sasrec: the catalogue shrank from {old} to {n} items")
        # A new model over the old one's tensors: the transformer's weights are shared (neither
        # model trains again), only the item tables are grown, so an upsert copies no weights.
        state = dict(self.model.state_dict())
        grown_ids = torch.zeros(n + 1, state["items.weight"].shape[1])
        grown_ids[: old + 1] = state["items.weight"]
        text: torch.Tensor = state["text"]
        grown = torch.zeros(n + 1, text.shape[1])
        grown[: old + 1] = text
        if len(rows):
            embedded = self._encoder().encode([data.item_text[int(r)] for r in rows])
            grown[torch.as_tensor(rows + 1)] = torch.as_tensor(embedded, dtype=torch.float32)
        state["items.weight"], state["text"] = grown_ids, grown
        words = "word_vectors" in state
        if words:
            keep = ~torch.isin(state["word_index"][0], torch.as_tensor(rows + 1))
            state["word_index"] = state["word_index"][:, keep].contiguous()
            state["word_weight"] = state["word_weight"][keep].contiguous()
        with torch.device("meta"):  # shapes only: every tensor comes from ``state``
            model = SASRecModel(n, self.config, torch.zeros(n, text.shape[1]))
            if words:
                nnz, vocabulary = len(state["word_weight"]), len(state["word_vectors"])
                model.init_words(torch.zeros(2, nnz, dtype=torch.long), torch.zeros(nnz), vocabulary)
        model.load_state_dict(state, assign=True)
        model.causal = self.model.causal  # not in the state (not persistent)
        out = copy.copy(self)
        out._set_model(model)
        out._data = data
        return out

    def _word_weights(self, data: TrainData) -> sp.csr_matrix | None:
        if not self.config.words:
            return None
        from recsys.scorers.lexical import LexicalScorer

        return sp.csr_matrix(LexicalScorer().fit(data).vectors)

    # ----- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the trained model (weights, config, catalogue size) atomically to ``path``."""
        if self.model is None:
            raise ConfigError("sasrec: nothing to save, the model is not trained")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        skip = ("checkpoint", "progress", "cache_dir")
        config = {k: v for k, v in asdict(self.config).items() if k not in skip}
        torch.save(
            {
                "state": self.model.state_dict(),
                "config": config,
                "n_items": self.n_items,
                "info": self.train_info,
            },
            tmp,
        )
        os.replace(tmp, path)
        return path

    @property
    def n_items(self) -> int:
        if self.model is None:
            return 0
        return int(self.model.items.num_embeddings - 1)

    def _load(self, path: Path, n_items: int) -> None:
        if not path.is_file():
            raise ArtifactError(f"sasrec checkpoint {path} not found")
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if int(saved["n_items"]) != n_items:
            raise ArtifactError(
                f"sasrec checkpoint {path} was trained on {saved['n_items']} items, not {n_items}"
            )
        self._build(saved["state"], saved["config"], n_items)
        self.train_info = dict(saved.get("info", {}))

    def _build(self, state: dict[str, Any], config: dict[str, Any], n_items: int) -> None:
        arch = {k: config[k] for k in ("dim", "layers", "heads", "max_length")}
        arch["architecture"] = config.get("architecture", "transformer")  # older checkpoints: SASRec
        arch["text"] = "text" in state  # the frozen text embeddings travel with the weights
        arch["words"] = "word_vectors" in state  # and the word weights, as (index, weight) buffers
        self.config = make_config(SASRecConfig, None, {**asdict(self.config), **arch})
        text = torch.zeros(n_items, state["text"].shape[1]) if "text" in state else None
        model = SASRecModel(n_items, self.config, text)
        if arch["words"]:  # buffers of the saved shapes, which load_state_dict then fills
            nnz, vocabulary = len(state["word_weight"]), state["word_vectors"].shape[0]
            model.init_words(torch.zeros(2, nnz, dtype=torch.long), torch.zeros(nnz), vocabulary)
        model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
        if arch["words"]:
            # The sparse product trusts its indices (no invariant checks): a damaged file must
            # fail here, not read out of bounds.
            rows, cols = model.word_index  # type: ignore[misc]
            inside = bool(((rows >= 1) & (rows <= n_items) & (cols >= 0) & (cols < vocabulary)).all())
            if not inside or not bool((torch.diff(rows * vocabulary + cols) > 0).all()):
                raise ArtifactError("sasrec: the saved word weights do not index its items and words")
        self._set_model(model)

    def _set_model(self, model: SASRecModel) -> None:
        """Keep ``model`` for scoring, with its item table computed once (ID + projected text: a
        4,385 x 384 x 64 product, milliseconds a request if redone per call)."""
        model.eval()
        with torch.inference_mode():
            self._table = model.item_table().clone()
        self.model = model

    def get_state(self) -> dict[str, np.ndarray]:
        if self.model is None:
            raise ConfigError("sasrec: not trained")
        arch = np.array(
            [
                self.config.dim,
                self.config.layers,
                self.config.heads,
                self.config.max_length,
                ARCHITECTURES.index(self.config.architecture),
            ]
        )
        return {"arch": arch, **{f"w:{k}": v.numpy() for k, v in self.model.state_dict().items()}}

    def set_state(self, state: dict[str, np.ndarray], data: TrainData) -> SASRecScorer:
        dim, layers, heads, max_length, *kind = (int(x) for x in state["arch"])
        weights = {k[2:]: v for k, v in state.items() if k.startswith("w:")}
        arch: dict[str, Any] = {"dim": dim, "layers": layers, "heads": heads, "max_length": max_length}
        arch["architecture"] = ARCHITECTURES[kind[0] if kind else 0]  # older artifacts: SASRec
        self._build(weights, arch, data.n_items)
        self._data = data
        return self

    # ----- scoring ----------------------------------------------------------------------------
    def _score_histories(self, histories: list[np.ndarray], items: np.ndarray | None) -> np.ndarray:
        if self.model is None:
            raise ConfigError("sasrec: not trained")
        out = np.zeros((len(histories), self.data.n_items), dtype=np.float32)
        table = self._table
        with torch.inference_mode():
            for s in range(0, len(histories), 512):
                seq = torch.as_tensor(_windows(histories[s : s + 512], self.config.max_length))
                last = self.model(seq, table)[:, -1]  # (B, dim): the state after the newest item
                out[s : s + len(seq)] = self.model.logits(last, table).numpy()
        empty = np.array([len(h) == 0 for h in histories], dtype=bool)
        out[empty] = 0.0  # no history, no opinion
        return out if items is None else out[:, items]

    def _score(self, users: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        return self._score_histories([self.data.history(int(u)) for u in users], items)
