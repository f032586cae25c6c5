"""Full-ranking evaluation: metrics, the chunked protocol, and reports."""

from recsys.evaluation.metrics import UndefinedMetricWarning, ranking_metrics, target_ranks, top_k
from recsys.evaluation.protocol import EvalResult, evaluate

__all__ = ["EvalResult", "UndefinedMetricWarning", "evaluate", "ranking_metrics", "target_ranks", "top_k"]
