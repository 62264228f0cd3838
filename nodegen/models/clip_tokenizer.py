"""The CLIP BPE tokenizer, built offline from the vocabulary shipped in the package.

The OpenAI CLIP vocabulary (``bpe_simple_vocab_16e6.txt.gz``, MIT licence, as shipped in the
open_clip wheel) lies in ``nodegen/assets/clip``. From its merges we derive the same
vocabulary and merges that the hub's ``openai/clip-vit-large-patch14`` tokenizer files hold,
so no file is ever fetched.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

from nodegen.compat import torchvision as torchvision_fix

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
#: The number of BPE merges CLIP uses (49152 - 256 - 2).
N_MERGES = 49152 - 256 - 2


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


@functools.lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary (token -> id, 49408 entries) and merges of the CLIP tokenizer."""
    data = resources.files("nodegen.assets.clip").joinpath(VOCAB_FILE).read_bytes()
    lines = gzip.decompress(data).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab.extend("".join(m) for m in merges)
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    return {tok: i for i, tok in enumerate(vocab)}, merges


def load_clip_tokenizer(model_max_length: int = 77, pad_token: str = "<|endoftext|>"):
    """A ``transformers.CLIPTokenizer`` with the real CLIP vocabulary, built with no network.

    SD1 uses ``<|endoftext|>`` as padding; SD2 and SDXL's OpenCLIP encoder pad with ``!``
    (id 0), which callers choose through ``pad_token``.
    """
    torchvision_fix.apply()
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        model_max_length=model_max_length,
        pad_token=pad_token,
    )
