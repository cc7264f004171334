"""The phases of the recipe, one module each, and the run graph that chains them.

  (0) pretrain       smoke world only: multilingual MLM, the stand-in for XLM-R's pre-training
  (1) intermediate   fine-tune the encoder on English intermediate task(s); keep the encoder
      chain          earlier English stages of a target's training chain (XTREME-R XCOPA)
  (2) target         fresh head; fine-tune on the target's English data with early stopping on an
                     English dev subset; (3) zero-shot evaluation on every language and split
  (3') retrieval     BUCC/Tatoeba from an encoder layer; its encoder may be a SQuAD-fine-tuned one
      squad_mrc      (XTREME-R Tatoeba); LAReQA/Mewsli-X: a dual_encoder run, then ranking

``graph.build_graph`` turns a resolved config into nodes (phase, spec, key, upstream);
``orchestrator`` runs them (docs/architecture.md).
"""

from xlrepro.phases.base import Node, Outcome, Phase
from xlrepro.phases.context import METRIC_MODE, Context

__all__ = ["Context", "METRIC_MODE", "Node", "Outcome", "Phase"]
