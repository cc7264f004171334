"""The task-model layer: an encoder with one head per task, and the encoder-only hand-off between phases.

``MultiTaskModel`` = an encoder of one family (``xlrepro.models``: a Hugging Face
``XLMRobertaModel`` or ``BertModel``, no pooler) + ``heads[task]``. The family gives the encoder
body, the sequence vector of the classification heads (its ``pool``: the first token), the MLM
head and the positions of the packed forward. Heads:

  classification   RoBERTa-style: pooled (<s> / [CLS]) vector -> dropout -> dense -> tanh -> dropout -> labels
  multiple_choice  each (context, choice) pair encoded separately; pooled -> dense -> tanh -> 1 score
  span_qa          token vectors -> (start, end) logits
  tagging          token vectors -> dropout -> tag logits (labels on each word's first sub-word)
  mlm              the family's LM head, tied to the input embeddings (pre-training, MLM mixing)

Phase hand-off (``save_encoder`` / ``load_encoder``) keeps the encoder and drops every head;
the next phase attaches fresh heads initialised from a recorded seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from xlrepro.data.types import Format
from xlrepro.models.config_json import model_config_json  # noqa: F401  (its callers import it here)

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def first_token(h: torch.Tensor) -> torch.Tensor:
    return h[:, 0]


class ClassificationHead(nn.Module):
    def __init__(self, hidden: int, n_out: int, dropout: float, pool=None):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, n_out)
        self.pool = pool or first_token  # (B, L, H) -> (B, H): the encoder family's pooling

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (B, L, H)
        x = self.dropout(self.pool(h))
        x = torch.tanh(self.dense(x))
        return self.out(self.dropout(x))


class SpanHead(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.out = nn.Linear(hidden, 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, L, 2)
        return self.out(h)


class TaggingHead(nn.Module):
    def __init__(self, hidden: int, n_tags: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_tags)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(h))


def make_head(fmt: Format, hidden: int, n_labels: int | None, dropout: float, encoder=None) -> nn.Module:
    """A fresh head; ``encoder`` (optional) gives the family whose pooling the classification heads use."""
    pool = None
    if encoder is not None:
        from xlrepro.models import family_of

        pool = family_of(encoder).pool
    if fmt == Format.CLASSIFICATION:
        assert n_labels is not None, "a classification head needs n_labels"
        return ClassificationHead(hidden, n_labels, dropout, pool)
    if fmt == Format.MULTIPLE_CHOICE:
        return ClassificationHead(hidden, 1, dropout, pool)
    if fmt == Format.SPAN_QA:
        return SpanHead(hidden)
    if fmt == Format.TAGGING:
        assert n_labels is not None, "a tagging head needs n_labels"
        return TaggingHead(hidden, n_labels, dropout)
    raise ValueError(f"no head for format {fmt}")


class MultiTaskModel(nn.Module):
    def __init__(self, encoder: PreTrainedModel, packed: bool = False, attention_backend: str = "auto"):
        super().__init__()
        from xlrepro.models import family_of

        self.encoder = encoder
        self.family = family_of(encoder)  # xlrepro.models: pooling, MLM head, packed positions
        self.packed = packed  # model.attention: "packed" (varlen attention on unpadded tokens) or "padded"
        self.attention_backend = attention_backend
        self.heads = nn.ModuleDict()
        self.head_formats: dict[str, Format | None] = {}  # None: the MLM head
        # Set by the DeepSpeed engine: every training forward runs every head once, in a fixed
        # order, so all ranks run the same modules whatever task each one's micro-batch has
        # (ZeRO-3 gathers and all ranks' gradient reductions are collectives over the same parameters).
        self.lockstep_heads = False

    @property
    def hidden_size(self) -> int:
        return self.encoder.config.hidden_size

    def add_head(self, task: str, fmt: Format, n_labels: int | None, dropout: float, seed: int) -> None:
        """Attach a freshly initialised head; its init depends only on ``seed`` (logged)."""
        devices = {p.device for p in self.encoder.parameters()}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = make_head(fmt, self.hidden_size, n_labels, dropout, self.encoder)
            for m in head.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=self.encoder.config.initializer_range)
                    nn.init.zeros_(m.bias)
        self.heads[task] = head.to(next(iter(devices)))
        self.head_formats[task] = fmt

    def add_mlm_head(self, seed: int) -> None:
        """The family's LM head (XLM-R: dense, GELU, LayerNorm, decoder tied to the input embeddings)."""
        self.heads["mlm"] = self.family.mlm_head(self.encoder, seed)
        self.head_formats["mlm"] = None

    def encode(self, input_ids, attention_mask, output_hidden_states: bool = False, **kw):
        """Padded (B, L) in, padded (B, L, H) out. With ``self.packed`` the encoder runs on the
        unpadded tokens (the family's ``packed_forward``: token-wise layers on (T, H), attention per
        sequence through ``xlrepro.ops.varlen_attention``) and the result is scattered back to (B, L, H)."""
        if not self.packed:
            return self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states, **kw
            )
        from types import SimpleNamespace

        from xlrepro.packing import pack_batch, unpack

        B, L = input_ids.shape
        ids, cu, mx, idx = pack_batch(input_ids, attention_mask)
        out = self.family.packed_forward(
            self.encoder,
            ids,
            cu,
            mx,
            output_hidden_states=output_hidden_states,
            attention_backend=self.attention_backend,
        )
        if output_hidden_states:
            h, hs = out
            return SimpleNamespace(
                last_hidden_state=unpack(h, idx, B, L), hidden_states=tuple(unpack(x, idx, B, L) for x in hs)
            )
        return SimpleNamespace(last_hidden_state=unpack(out, idx, B, L), hidden_states=None)

    def _head(self, task: str, h: torch.Tensor) -> torch.Tensor:
        if not (self.lockstep_heads and self.training and len(self.heads) > 1):
            return self.heads[task](h)
        out, touch = None, None
        for name, head in self.heads.items():  # each head once, in the same order on every rank
            if name == task:
                out = head(h)
            else:  # a zero-weighted touch: gradients exactly 0, the same reductions everywhere
                t = head(h[:1, :1]).float().sum() * 0.0
                touch = t if touch is None else touch + t
        assert out is not None and touch is not None  # task is one of several heads
        return out + touch.to(out.dtype)

    def forward(self, task: str, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        fmt = self.head_formats[task]
        if fmt == Format.MULTIPLE_CHOICE:
            B, C, L = input_ids.shape
            h = self.encode(input_ids.reshape(B * C, L), attention_mask.reshape(B * C, L)).last_hidden_state
            return self._head(task, h).view(B, C)
        h = self.encode(input_ids, attention_mask).last_hidden_state
        return self._head(task, h)


def build_encoder(model_cfg, vocab_size: int | None = None, seed: int = 0, revision: str | None = None):
    """The pretrained encoder of ``model_cfg.family`` (Hub id pinned by revision, or a local
    directory), or a fresh encoder of that family built from ``model_cfg.init_config`` (smoke
    world, tests). ``revision``: load this commit instead of ``model_cfg.revision`` (the resolved
    one, ``model_identity``)."""
    from xlrepro.models import resolve_family

    family = resolve_family(model_cfg)
    if model_cfg.init_config is not None:
        return family.build_encoder(model_cfg.init_config, vocab_size, seed)
    return family.load_encoder(model_cfg.name_or_path, revision=revision or model_cfg.revision)


def save_encoder(model: MultiTaskModel, out_dir: str | Path, meta: dict | None = None) -> None:
    """Write the encoder alone (safetensors + config) so the next phase can start from it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(str(out_dir), safe_serialization=True)
    from xlrepro.fsmode import apply_umask_tree

    apply_umask_tree(out_dir)  # transformers writes model.safetensors 0600; results follow the umask
    (out_dir / "handoff.json").write_text(
        json.dumps({"kind": "encoder-only", "dropped_heads": sorted(model.heads), **(meta or {})}, indent=2)
    )


def load_encoder(path: str | Path):
    """An encoder saved by ``save_encoder`` (or any model folder): its family from the folder's config.json."""
    from xlrepro.models import family_of_folder

    return family_of_folder(path).load_encoder(path)


# ---------------------------------------------------------------------- identity

# files of a Hugging Face model folder that define the encoder (weights, its config, the tokenizer)
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")
_DEFINING_FILES = (
    "config.json",
    "tokenizer.json",
    "sentencepiece.bpe.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
_IDENTITY: dict[tuple, dict] = {}


def _hub_cached_commit(repo: str, revision: str) -> str | None:
    """The commit a revision (branch or tag) points to in the local Hugging Face cache, if any."""
    try:
        from huggingface_hub import constants

        ref = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "refs" / revision
        commit = ref.read_text().strip() if ref.is_file() else ""
    except Exception:  # noqa: BLE001 - no cache, no huggingface_hub: nothing to report
        return None
    return commit if len(commit) == 40 else None


def model_identity(model_cfg) -> dict:
    """What the encoder is, by content: part of every run key and recorded in every results file.

    * ``init_config``: a fresh encoder built from that config (smoke world, tests).
    * a local folder: the sha256 of each weight file (``*.safetensors``, ``pytorch_model*.bin`` and
      their indexes), of ``config.json`` and of the tokenizer files; ``weights_sha256`` is one digest
      over the weight files. The folder's path is not part of it.
    * a Hub id: the commit its revision resolves to (a 40-hex revision is its own commit; a branch
      or tag is resolved from the local cache, else by asking the Hub through ``huggingface_hub``).
      ``commit`` is None when neither answers; the requested revision then stands for it.
    Computed once per process for each (path, revision)."""
    import hashlib
    import re

    from xlrepro.data.io import sha256_file as file_sha256

    if model_cfg.init_config is not None:
        return {"kind": "init_config"}
    name, rev = model_cfg.name_or_path, model_cfg.revision
    folder = Path(name)
    if folder.is_dir():
        files = {}
        for pat in _WEIGHT_PATTERNS + _DEFINING_FILES:
            for f in sorted(folder.glob(pat)):
                files[f.name] = file_sha256(f)
        weights = {k: v for k, v in files.items() if k not in _DEFINING_FILES}
        if not weights:
            from xlrepro.errors import ConfigError

            raise ConfigError(
                f"model.name_or_path: {folder} has no weight file (model.safetensors or "
                "pytorch_model.bin); expected a Hugging Face model folder (save_pretrained)"
            )
        digest = hashlib.sha256(json.dumps(sorted(weights.items())).encode()).hexdigest()
        return {"kind": "local", "weights_sha256": digest, "files": files}
    key = (name, rev)
    if key not in _IDENTITY:
        commit, how = None, None
        if rev is not None and re.fullmatch(r"[0-9a-f]{40}", rev):
            commit, how = rev, "pinned"
        else:
            commit = _hub_cached_commit(name, rev or "main")
            how = "local cache" if commit else None
            if commit is None:
                try:
                    from huggingface_hub import HfApi

                    commit = HfApi().model_info(name, revision=rev, timeout=10).sha
                    how = "Hub"
                except Exception as e:  # noqa: BLE001 - offline, unknown repo: recorded, not fatal here
                    how = f"unresolved ({type(e).__name__})"
        _IDENTITY[key] = {"kind": "hub", "repo": name, "revision": rev or "main", "commit": commit, "resolved_by": how}
    return dict(_IDENTITY[key])
