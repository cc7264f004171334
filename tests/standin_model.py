"""A small Hugging Face-format stand-in for XLM-R: an ``XLMRobertaForMaskedLM`` saved with
``save_pretrained`` and a SentencePiece-style Unigram tokenizer trained by ``tokenizers`` on
the given text files, loadable by path like ``FacebookAI/xlm-roberta-large``."""

from __future__ import annotations

from pathlib import Path


def build_standin(
    texts: list[Path], out: Path, layers: int = 2, hidden: int = 32, vocab: int = 2000, seed: int = 0
) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab, special_tokens=specials + ["<mask>"], unk_token="<unk>")
    tok.train([str(p) for p in texts], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    fast = XLMRobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    cfg = XLMRobertaConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=514,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        type_vocab_size=1,
    )
    torch.manual_seed(seed)
    XLMRobertaForMaskedLM(cfg).save_pretrained(str(out))
    return out
