"""BERT-style multilingual encoders (Devlin et al. 2019; mBERT = ``bert-base-multilingual-cased``)
through transformers' own ``BertModel`` / ``BertForMaskedLM``.

The layer is XLM-R's (post-LN self-attention and FFN with the same module names), so the packed
forward of ``xlrepro.packing`` runs it unchanged; what differs: positions count from 0 in each
sequence, a pair costs 3 special tokens (``[CLS] q [SEP] c [SEP]``), the LM head is
``BertOnlyMLMHead`` (transform + decoder tied to the input embeddings), and the config's default
``type_vocab_size`` is 2. Inputs are fed with token type 0 throughout (the task adapters give no
segment ids), see docs/models.md.
"""

from __future__ import annotations

from xlrepro.models.base import Family


class BertFamily(Family):
    name = "bert"
    description = (
        "BERT-style (BertModel): google-bert/bert-base-multilingual-cased (mBERT), or a local folder of that type"
    )
    model_types = ("bert",)
    position_offset = 0
    pair_special_tokens = 3
    mlm_body = "bert"
    # config.json of the Hub repository google-bert/bert-base-multilingual-cased (the shape fields)
    published_configs = {
        "bert-base-multilingual-cased": {
            "vocab_size": 119547,
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "max_position_embeddings": 512,
            "type_vocab_size": 2,
            "pad_token_id": 0,
        },
    }

    def classes(self):
        from transformers import BertConfig, BertForMaskedLM, BertModel
        from transformers.models.bert.modeling_bert import BertOnlyMLMHead

        return BertConfig, BertModel, BertForMaskedLM, BertOnlyMLMHead

    def tie_decoder(self, head, weight) -> None:
        head.predictions.decoder.weight = weight


FAMILY = BertFamily()
