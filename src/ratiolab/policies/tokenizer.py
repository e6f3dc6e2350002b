"""Character-level tokenizer over a fixed alphabet, saved as a Hugging Face ``PreTrainedTokenizerFast``.

Ids: ``<pad>=0, <bos>=1, <eos>=2, <unk>=3``, then printable ASCII and ``\\n``. Encoding adds
``<bos>`` in front (``add_special_tokens=True``); decoding concatenates characters.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
ALPHABET = "\n" + "".join(c for c in string.printable if c not in "\t\r\x0b\x0c\n")


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Return the character tokenizer (vocabulary: 4 specials + 96 characters)."""
    vocab = {tok: i for i, tok in enumerate((*SPECIALS, *ALPHABET))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
