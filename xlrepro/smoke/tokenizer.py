"""Build an XLM-R tokenizer for the smoke world (trained here, offline).

XLM-R's tokenizer is a SentencePiece Unigram model behind ``XLMRobertaTokenizer``. The
``tokenizers`` Unigram trainer collapses to a character-level vocabulary on the tiny smoke
corpus (seen with tokenizers 0.23), so the pieces are learnt by BPE and then used as a Unigram
vocabulary: piece score = -1 - rank/|V| (fewest pieces first, then the more frequent merges).
The result is a real ``XLMRobertaTokenizer``: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3,
``<mask>`` last, pairs encoded ``<s> A </s></s> B </s>``, Metaspace (``▁``) pre-tokenisation.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

SPECIAL = ["<s>", "<pad>", "</s>", "<unk>"]


def build_tokenizer(corpus_files: list[str | Path], vocab_size: int, out_dir: str | Path):
    from transformers import XLMRobertaTokenizer

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    bpe.train(
        [str(f) for f in corpus_files],
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False),
    )
    pieces = [p for p, _ in sorted(bpe.get_vocab().items(), key=lambda kv: kv[1]) if p not in SPECIAL]
    n = len(pieces)
    vocab = [(t, 0.0) for t in SPECIAL] + [(p, -1.0 - r / n) for r, p in enumerate(pieces)] + [("<mask>", 0.0)]
    tok = XLMRobertaTokenizer(vocab=vocab, model_max_length=512)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out_dir))
    return tok
