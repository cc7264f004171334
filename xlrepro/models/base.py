"""What an encoder family provides, and the shared code of BERT-style (post-LN) families.

A family is an object with the attributes and methods of ``Family`` below; ``xlrepro.models``
keeps one instance per family module (``xlmr``, ``bert``). ``xlrepro.model`` (task heads, the
multi-task wrapper), ``xlrepro.mlm``, ``xlrepro.retrieval`` and ``xlrepro.dual_encoder`` ask the
family for everything that differs between encoders: the encoder body, its MLM model and head, the positions of packed
tokens, the sentence vector of the classification heads, and the parameter count of a config.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from xlrepro.packing import packed_encoder_forward, restarting_positions

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class Family:
    """A BERT-style encoder family: a Hugging Face config class, a bare encoder class (built
    without pooler), a masked-LM class whose encoder is ``<mlm_body>``, and an LM-head class.

    Subclasses set the class attributes and override what differs (``packed_position_ids``).
    """

    name: str = ""
    description: str = ""
    model_types: tuple[str, ...] = ()  # config.json ``model_type`` values of this family
    # A model with max_position_embeddings P takes at most P - position_offset tokens.
    position_offset: int = 0
    # special tokens around a (question, context) pair: XLM-R <s> q </s></s> c </s>, BERT [CLS] q [SEP] c [SEP]
    pair_special_tokens: int = 3
    mlm_body: str = ""  # attribute of the masked-LM model that holds the encoder
    # The published config.json of Hub ids the family knows, for parameter counts without a download.
    published_configs: dict[str, dict] = {}

    # ------------------------------------------------------------------ classes (lazy imports)
    def classes(self):
        """(config class, encoder class, masked-LM class, LM-head class)."""
        raise NotImplementedError

    def config(self, init_config: dict, vocab_size: int | None = None):
        cfg_cls = self.classes()[0]
        return cfg_cls(**{**init_config, **({"vocab_size": vocab_size} if vocab_size else {})})

    # ------------------------------------------------------------------ build and load
    def build_encoder(self, init_config: dict, vocab_size: int | None = None, seed: int = 0) -> PreTrainedModel:
        """A freshly initialised encoder (no pooler) from ``init_config``; its init depends on ``seed`` only."""
        cfg = self.config(init_config, vocab_size)
        torch.manual_seed(seed)
        return self.classes()[1](cfg, add_pooling_layer=False)

    def load_encoder(self, name_or_path: str | Path, revision: str | None = None) -> PreTrainedModel:
        """The pretrained encoder without pooler, from a local folder or a Hub id (pinned by revision)."""
        kw = {"revision": revision} if revision is not None else {}
        return self.classes()[1].from_pretrained(str(name_or_path), add_pooling_layer=False, **kw)

    def build_mlm(self, init_config: dict, vocab_size: int | None = None, seed: int = 0) -> nn.Module:
        """A freshly initialised masked-LM model (encoder + tied LM head) for pre-training."""
        cfg = self.config(init_config, vocab_size)
        torch.manual_seed(seed)
        return self.classes()[2](cfg)

    def mlm_encoder(self, mlm_model: nn.Module) -> PreTrainedModel:
        """The encoder inside a masked-LM model (what pre-training hands on)."""
        return getattr(mlm_model, self.mlm_body)

    def mlm_head(self, encoder: PreTrainedModel, seed: int) -> nn.Module:
        """The family's LM head, initialised from ``seed``, its decoder tied to the input embeddings.
        Maps (..., H) hidden states to (..., vocab) logits."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = self.classes()[3](encoder.config)
        # torch's stubs type a submodule reached by attribute as Tensor | Module (Module.__getattr__)
        word: nn.Parameter = encoder.embeddings.word_embeddings.weight  # type: ignore[union-attr, assignment]
        self.tie_decoder(head, word)
        return head.to(word.device)

    def tie_decoder(self, head: nn.Module, weight: nn.Parameter) -> None:
        head.decoder.weight = weight  # type: ignore[union-attr]  # (as above: decoder is an nn.Linear)

    # ------------------------------------------------------------------ forward pieces
    def packed_position_ids(self, encoder: nn.Module, cu_seqlens: torch.Tensor) -> torch.Tensor:
        """(T,) position ids of packed sequences, numbered as the padded model numbers each row's
        real tokens (right padding)."""
        return restarting_positions(cu_seqlens, self.position_offset)

    def packed_forward(
        self,
        encoder: nn.Module,
        input_ids_packed: torch.Tensor,
        cu_seqlens: torch.Tensor,
        max_seqlen: int,
        position_ids: torch.Tensor | None = None,
        **kw,
    ):
        """The encoder on packed (unpadded) sequences: ``xlrepro.packing.packed_encoder_forward``,
        which runs the post-LN embedding and layer modules that XLM-R and BERT share, with this
        family's ``packed_position_ids`` unless ``position_ids`` are given. A family with another
        layer overrides this."""
        if position_ids is None:
            position_ids = self.packed_position_ids(encoder, cu_seqlens)
        return packed_encoder_forward(
            encoder, input_ids_packed, cu_seqlens, max_seqlen, position_ids=position_ids, **kw
        )

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """The sequence vector the classification heads read: the first token (<s> / [CLS])."""
        return h[:, 0]

    # ------------------------------------------------------------------ sizes
    def param_count(self, config: dict, where: str = "config.json") -> tuple[int, int]:
        """(parameters of the encoder without pooler, largest single tensor) from a config dict:
        embeddings (word, position, token type, LayerNorm) + layers (attention q/k/v/output,
        LayerNorm, FFN, LayerNorm). Keys the config leaves out take the family's config defaults, as
        when the model is built, so the count equals ``sum(p.numel())`` of the built encoder."""
        need = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        )
        config = {**self.default_config(), **config}
        missing = [k for k in need if isinstance(config.get(k), bool) or not isinstance(config.get(k), int)]
        if missing:
            from xlrepro.errors import ConfigError

            raise ConfigError(
                f"{where}: missing or non-integer {missing}; expected a {self.name} model config ({', '.join(need)})"
            )
        V, H, L, I, P, T = (config[k] for k in need)
        emb = (V + P + T) * H + 2 * H
        layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
        return emb + L * layer, max(V * H, H * I)

    def default_config(self) -> dict:
        """The family's config class defaults, as a dict (what ``init_config`` is laid over)."""
        return self.classes()[0]().to_dict()
