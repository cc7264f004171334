"""XLM-R (Conneau et al. 2020): ``XLMRobertaModel`` through transformers, the project's default family.

Positions start after the padding index (``padding_idx + 1``, 2 for XLM-R's ``<pad>`` = 1), so a
model with ``max_position_embeddings`` P takes P - 2 tokens (514 -> 512 for XLM-R Large). A
(question, context) pair costs 4 special tokens: ``<s> q </s></s> c </s>``. The LM head is
``XLMRobertaLMHead`` (dense, GELU, LayerNorm, decoder tied to the input embeddings).
"""

from __future__ import annotations

import torch

from xlrepro.models.base import Family
from xlrepro.packing import packed_position_ids


class XLMRFamily(Family):
    name = "xlmr"
    description = "XLM-R (XLMRobertaModel): FacebookAI/xlm-roberta-large, -base, or a local folder of that type"
    model_types = ("xlm-roberta",)
    position_offset = 2
    pair_special_tokens = 4
    mlm_body = "roberta"
    # config.json of the Hub repositories FacebookAI/xlm-roberta-large and FacebookAI/xlm-roberta-base
    # (the shape fields; fairseq's XLM-R README lists the models as 560M and 270M parameters)
    published_configs = {
        "xlm-roberta-large": {
            "vocab_size": 250002,
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "intermediate_size": 4096,
            "max_position_embeddings": 514,
            "type_vocab_size": 1,
            "pad_token_id": 1,
        },
        "xlm-roberta-base": {
            "vocab_size": 250002,
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "max_position_embeddings": 514,
            "type_vocab_size": 1,
            "pad_token_id": 1,
        },
    }

    def classes(self):
        from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaModel
        from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLMHead

        return XLMRobertaConfig, XLMRobertaModel, XLMRobertaForMaskedLM, XLMRobertaLMHead

    def packed_position_ids(self, encoder, cu_seqlens: torch.Tensor) -> torch.Tensor:
        """Each sequence's positions restart at ``padding_idx + 1``, as the padded model numbers a row."""
        return packed_position_ids(cu_seqlens, encoder.embeddings.padding_idx)


FAMILY = XLMRFamily()
