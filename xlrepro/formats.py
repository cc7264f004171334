"""Per-format featurisation, batching, loss, prediction and scoring.

One ``FormatAdapter`` per task format turns examples into model features, batches them with
dynamic padding, computes the training loss, decodes predictions back to the examples' own
terms (label strings, choice indices, answer text, word-level tags), and scores them with the
task's metric from ``xlrepro.metrics``. Adding a task of an existing format needs none of this
code: the registry entry names the format.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from xlrepro.data.types import Format, ReadResult, qa_ids
from xlrepro.metrics import accuracy, qa_score, tagging_f1, token_accuracy

IGNORE = -100


def pad_sequences(seqs, value):
    """Right-pad lists of token ids with ``value`` into one LongTensor."""
    L = max(len(s) for s in seqs)
    return torch.tensor([list(s) + [value] * (L - len(s)) for s in seqs], dtype=torch.long)


@dataclass
class Batch:
    inputs: dict  # tensors for the model: input_ids, attention_mask
    targets: dict  # tensors for the loss
    meta: list  # per-feature metadata for decoding


class FormatAdapter:
    fmt: Format

    def __init__(self, task, tokenizer, max_len: int, train_cfg=None):
        self.task, self.tok, self.max_len, self.cfg = task, tokenizer, max_len, train_cfg
        self.labels = list(task.labels) if task.labels else None

    # subclasses implement these
    def featurize(self, examples: list, train: bool) -> list[dict]:
        raise NotImplementedError

    def collate(self, feats: list[dict]) -> Batch:
        raise NotImplementedError

    def loss(self, logits, targets) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, logits_per_feature: list, feats: list[dict], examples: list) -> list:
        raise NotImplementedError

    def score(self, predictions: list, examples: list, result: ReadResult, lang: str, mode: str) -> dict:
        raise NotImplementedError

    def label_of(self, example): ...
    def with_label(self, example, label): ...

    def shuffled(self, examples: list, rng) -> list | None:
        """``examples`` with their labels permuted among them (the negative control's training
        data: labels that carry no information but keep their distribution); None for a format
        without labels to permute (span QA)."""
        labels = [self.label_of(e) for e in examples]
        if all(l is None for l in labels):
            return None
        rng.shuffle(labels)
        return [self.with_label(e, l) for e, l in zip(examples, labels)]

    def n_labels(self) -> int | None:
        return len(self.labels) if self.labels else None


class ClassificationAdapter(FormatAdapter):
    fmt = Format.CLASSIFICATION

    def featurize(self, examples, train):
        out = []
        for i, ex in enumerate(examples):
            enc = self.tok(ex.text_a, ex.text_b, truncation=True, max_length=self.max_len)
            label = self.labels.index(ex.label) if ex.label is not None else IGNORE
            out.append({"ex": i, "input_ids": enc["input_ids"], "label": label})
        return out

    def collate(self, feats):
        ids = pad_sequences([f["input_ids"] for f in feats], self.tok.pad_token_id)
        return Batch(
            {"input_ids": ids, "attention_mask": (ids != self.tok.pad_token_id).long()},
            {"labels": torch.tensor([f["label"] for f in feats])},
            [f["ex"] for f in feats],
        )

    def loss(self, logits, targets):
        return F.cross_entropy(logits.float(), targets["labels"], ignore_index=IGNORE)

    def predict(self, logits, feats, examples):
        return [self.labels[int(l.argmax())] for l in logits]

    def score(self, predictions, examples, result, lang, mode):
        return accuracy(predictions, [ex.label for ex in examples], mode=mode)

    def label_of(self, ex):
        return ex.label

    def with_label(self, ex, label):
        return type(ex)(ex.guid, ex.text_a, ex.text_b, label)


class MultipleChoiceAdapter(FormatAdapter):
    fmt = Format.MULTIPLE_CHOICE

    def _context(self, ex):
        if ex.question in ("cause", "effect"):  # COPA: the relation is part of the first segment
            return f"{ex.context} {'What was the cause?' if ex.question == 'cause' else 'What happened as a result?'}"
        return f"{ex.context} {ex.question}" if ex.question else ex.context

    def featurize(self, examples, train):
        out = []
        for i, ex in enumerate(examples):
            ctx = self._context(ex)
            encs = [self.tok(ctx, c, truncation=True, max_length=self.max_len)["input_ids"] for c in ex.choices]
            out.append({"ex": i, "input_ids": encs, "label": ex.label if ex.label is not None else IGNORE})
        return out

    def collate(self, feats):
        C = max(len(f["input_ids"]) for f in feats)
        L = max(len(s) for f in feats for s in f["input_ids"])
        pad = self.tok.pad_token_id
        ids = torch.full((len(feats), C, L), pad, dtype=torch.long)
        for b, f in enumerate(feats):
            for c, s in enumerate(f["input_ids"]):
                ids[b, c, : len(s)] = torch.tensor(s)
        mask = (ids != pad).long()
        mask[:, :, 0] = 1  # a missing choice still has one visible token (its logit is masked below)
        n_choices = torch.tensor([len(f["input_ids"]) for f in feats])
        return Batch(
            {"input_ids": ids, "attention_mask": mask},
            {"labels": torch.tensor([f["label"] for f in feats]), "n_choices": n_choices},
            [f["ex"] for f in feats],
        )

    def loss(self, logits, targets):
        return F.cross_entropy(self._mask(logits, targets).float(), targets["labels"], ignore_index=IGNORE)

    @staticmethod
    def _mask(logits, targets):
        C = logits.shape[1]
        valid = torch.arange(C, device=logits.device)[None, :] < targets["n_choices"].to(logits.device)[:, None]
        return logits.masked_fill(~valid, float("-inf"))

    def predict(self, logits, feats, examples):
        return [int(torch.as_tensor(l)[: len(f["input_ids"])].argmax()) for l, f in zip(logits, feats)]

    def score(self, predictions, examples, result, lang, mode):
        return accuracy(predictions, [ex.label for ex in examples], mode=mode)

    def n_labels(self):
        return None

    def label_of(self, ex):
        return ex.label

    def with_label(self, ex, label):
        return type(ex)(ex.guid, ex.context, ex.choices, label, ex.question)


class SpanQAAdapter(FormatAdapter):
    """SQuAD-style windows: question + a doc-stride window of the context; answers decoded back to text."""

    fmt = Format.SPAN_QA

    def featurize(self, examples, train):
        cfg = self.cfg
        out = []
        for i, ex in enumerate(examples):
            q_ids = self.tok(ex.question, add_special_tokens=False)["input_ids"][: cfg.max_query_length]
            question = self.tok.decode(q_ids) if len(q_ids) == cfg.max_query_length else ex.question
            enc = self.tok(
                question,
                ex.context,
                truncation="only_second",
                max_length=self.max_len,
                stride=cfg.doc_stride,
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
            )
            for w in range(len(enc["input_ids"])):
                seq_ids = enc.sequence_ids(w)
                offsets = [o if s == 1 else None for o, s in zip(enc["offset_mapping"][w], seq_ids)]
                start = end = 0
                if train and ex.answers:
                    a = ex.answers[0]
                    s_char, e_char = a.start, a.start + len(a.text)
                    ctx_tok = [k for k, o in enumerate(offsets) if o is not None]
                    if offsets[ctx_tok[0]][0] <= s_char and offsets[ctx_tok[-1]][1] >= e_char:
                        start = next(k for k in ctx_tok if offsets[k][1] > s_char)
                        end = max(k for k in ctx_tok if offsets[k][0] < e_char)
                out.append({"ex": i, "input_ids": enc["input_ids"][w], "offsets": offsets, "start": start, "end": end})
        return out

    def collate(self, feats):
        ids = pad_sequences([f["input_ids"] for f in feats], self.tok.pad_token_id)
        return Batch(
            {"input_ids": ids, "attention_mask": (ids != self.tok.pad_token_id).long()},
            {"start": torch.tensor([f["start"] for f in feats]), "end": torch.tensor([f["end"] for f in feats])},
            [f["ex"] for f in feats],
        )

    def loss(self, logits, targets):
        s, e = logits.float().unbind(-1)
        return (F.cross_entropy(s, targets["start"]) + F.cross_entropy(e, targets["end"])) / 2

    @property
    def allows_no_answer(self) -> bool:
        """SQuAD v2.0-style tasks may answer "" (no answer): predicted when the null score
        (start and end on <s>, the minimum over the example's windows) beats every span."""
        return self.task.evaluator == "qa_squad_v2"

    def predict(self, logits, feats, examples, n_best: int = 20):
        best: dict[int, tuple[float, int, int]] = {}
        null: dict[int, float] = {}
        for l, f in zip(logits, feats):
            l = torch.as_tensor(l).float()
            s_log, e_log = l[:, 0].numpy(), l[:, 1].numpy()
            null[f["ex"]] = min(null.get(f["ex"], float("inf")), float(s_log[0] + e_log[0]))
            offs = f["offsets"]
            s_idx = np.argsort(-s_log)[:n_best]
            e_idx = np.argsort(-e_log)[:n_best]
            for s in s_idx:
                for e in e_idx:
                    if s >= len(offs) or e >= len(offs) or offs[s] is None or offs[e] is None:
                        continue
                    if e < s or e - s + 1 > self.cfg.max_answer_length:
                        continue
                    score = float(s_log[s] + e_log[e])
                    if f["ex"] not in best or score > best[f["ex"]][0]:
                        best[f["ex"]] = (score, offs[s][0], offs[e][1])
        preds = []
        for i, ex in enumerate(examples):
            if i not in best or (self.allows_no_answer and null.get(i, float("-inf")) > best[i][0]):
                preds.append("")
            else:
                preds.append(ex.context[best[i][1] : best[i][2]])
        return preds

    def score(self, predictions, examples, result, lang, mode):
        raw = result.raw if result is not None else None
        # keyed by the file's own question ids (TyDiQA's guids are file positions, not its ids)
        pred = dict(zip(qa_ids(examples, raw), predictions))
        dataset = raw if raw is not None else squad_data(examples)
        return qa_score(pred, dataset, task=self.task.name, lang=lang, mode=mode)

    def n_labels(self):
        return None

    def label_of(self, ex):
        return None  # no label shuffling for span QA

    def with_label(self, ex, label):
        return ex


def squad_data(examples):
    """SQuAD-format ``data`` (one article per example) for the scorer when the reader kept no raw file."""
    return [
        {
            "title": "",
            "paragraphs": [
                {
                    "context": ex.context,
                    "qas": [
                        {
                            "id": ex.guid,
                            "question": ex.question,
                            "answers": [{"text": a.text, "answer_start": a.start} for a in ex.answers],
                        }
                    ],
                }
            ],
        }
        for ex in examples
    ]


class TaggingAdapter(FormatAdapter):
    """Labels on the first sub-word of each word; sentences longer than the budget are split
    at word boundaries (as XTREME does) and their predictions stitched back."""

    fmt = Format.TAGGING

    def featurize(self, examples, train):
        budget = self.max_len - 2
        out = []
        for i, ex in enumerate(examples):
            pieces = [self.tok(w, add_special_tokens=False)["input_ids"] or [self.tok.unk_token_id] for w in ex.words]
            chunk, start = [], 0
            for j, p in enumerate(pieces + [None]):
                if p is None or (chunk and sum(len(x) for x in chunk) + len(p) > budget):
                    ids, labels, firsts = [self.tok.cls_token_id], [IGNORE], []
                    for k, wp in enumerate(chunk):
                        wp = wp[:budget]
                        firsts.append(len(ids))
                        ids += wp
                        tag = ex.tags[start + k] if ex.tags is not None else None
                        lab = self.labels.index(tag) if tag in (self.labels or []) else IGNORE
                        labels += [lab] + [IGNORE] * (len(wp) - 1)
                    ids.append(self.tok.sep_token_id)
                    labels.append(IGNORE)
                    out.append({"ex": i, "word_start": start, "firsts": firsts, "input_ids": ids, "labels": labels})
                    start, chunk = j, []
                if p is not None:
                    chunk.append(p)
        return out

    def collate(self, feats):
        ids = pad_sequences([f["input_ids"] for f in feats], self.tok.pad_token_id)
        labels = pad_sequences([f["labels"] for f in feats], IGNORE)
        return Batch(
            {"input_ids": ids, "attention_mask": (ids != self.tok.pad_token_id).long()},
            {"labels": labels},
            [f["ex"] for f in feats],
        )

    def loss(self, logits, targets):
        return F.cross_entropy(logits.float().flatten(0, 1), targets["labels"].flatten(), ignore_index=IGNORE)

    def predict(self, logits, feats, examples):
        words = collections.defaultdict(dict)
        for l, f in zip(logits, feats):
            l = torch.as_tensor(l)
            for k, p in enumerate(f["firsts"]):  # each word's first sub-word
                words[f["ex"]][f["word_start"] + k] = self.labels[int(l[p].argmax())]
        return [[words[i][j] for j in range(len(ex.words))] for i, ex in enumerate(examples)]

    def score(self, predictions, examples, result, lang, mode):
        gold = [ex.tags for ex in examples]
        out = dict(tagging_f1(predictions, gold, mode=mode))
        out["token_accuracy"] = token_accuracy(predictions, gold)["accuracy"]
        return out

    def label_of(self, ex):
        return None

    def with_label(self, ex, label):
        return ex

    def shuffled(self, examples: list, rng) -> list | None:
        """Tags permuted across every token of ``examples`` (sentence lengths differ, so whole tag
        sequences cannot be swapped): each word keeps a tag drawn from the corpus' tag distribution
        and loses its relation to the word."""
        tags = [t for e in examples for t in (e.tags or [])]
        if not tags:
            return None
        rng.shuffle(tags)
        out, k = [], 0
        for e in examples:
            n = len(e.tags or [])
            out.append(type(e)(e.guid, e.words, tags[k : k + n] if e.tags is not None else None))
            k += n
        return out


ADAPTERS = {
    Format.CLASSIFICATION: ClassificationAdapter,
    Format.MULTIPLE_CHOICE: MultipleChoiceAdapter,
    Format.SPAN_QA: SpanQAAdapter,
    Format.TAGGING: TaggingAdapter,
}


def adapter_for(task, tokenizer, max_len, train_cfg) -> FormatAdapter:
    if task.format not in ADAPTERS:
        raise ValueError(f"task {task.name}: format {task.format.value} has no trainable head")
    return ADAPTERS[task.format](task, tokenizer, max_len, train_cfg)


# the old private names, still imported by xlrepro.mlm and xlrepro.items
