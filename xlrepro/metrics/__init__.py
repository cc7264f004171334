"""Metrics of XTREME / XTREME-R, reproducing google-research/xtreme's scorers at 838c13b6.

Every metric takes ``mode``: ``"official"`` (default) returns the official code's value
wherever the official code returns one, quirks included; where it crashes, the evident intent
is done and a ``"note"`` says so, or a clear error is raised. ``"corrected"`` fixes the
evident bugs and takes the deviations that are better for users. Tagging also accepts
``"seqeval_1x"`` (seqeval 1.2.2 semantics). docs/metrics.md lists what each metric computes,
the official files it follows, and every remaining difference from the official code. Values
are on a 0-100 scale and every returned dict records its ``"mode"``. Only stdlib + numpy are
used, and the task registry (``xlrepro.tasks.registry``) for the facts scoring dispatches on: a
task's ``evaluator``, ``prediction_file``, ``headline`` and ``scoring`` fields (docs/tasks.md).
"""

from ._common import OFFICIAL
from .aggregate import task_average, xtreme_r_category_mean, xtreme_r_script_groups, xtreme_r_task_mean, xtreme_score
from .bucc import bucc_dedup_sentences, bucc_evaluate, bucc_extract, bucc_f1, bucc_optimize
from .classification import accuracy, tatoeba_accuracy
from .evaluate import read_label, read_squad, read_tag, read_xcopa, score_folder, score_language
from .qa import (
    mlqa_mixed_segmentation,
    mlqa_normalize_answer,
    mlqa_scores,
    qa_score,
    squad_normalize_answer,
    squad_scores,
    squad_v2_scores,
)
from .retrieval import (
    average_precision_at_k,
    lareqa_map_at_k,
    mewslix_evaluate_all,
    mewslix_map_at_k,
    mewslix_reciprocal_ranks,
)
from .tagging import get_entities, tagging_f1, token_accuracy

#: The mode the pipeline scores in and records with every score: the phases, early stopping on dev
#: and the item scores of ``xlrepro.items``.
METRIC_MODE = OFFICIAL

__all__ = [
    "METRIC_MODE",
    "accuracy",
    "tatoeba_accuracy",
    "tagging_f1",
    "token_accuracy",
    "get_entities",
    "squad_scores",
    "squad_v2_scores",
    "mlqa_scores",
    "qa_score",
    "squad_normalize_answer",
    "mlqa_normalize_answer",
    "mlqa_mixed_segmentation",
    "bucc_optimize",
    "bucc_extract",
    "bucc_f1",
    "bucc_evaluate",
    "bucc_dedup_sentences",
    "average_precision_at_k",
    "lareqa_map_at_k",
    "mewslix_map_at_k",
    "mewslix_evaluate_all",
    "mewslix_reciprocal_ranks",
    "task_average",
    "xtreme_score",
    "xtreme_r_script_groups",
    "xtreme_r_task_mean",
    "xtreme_r_category_mean",
    "score_folder",
    "score_language",
    "read_label",
    "read_tag",
    "read_squad",
    "read_xcopa",
]
