"""The T5 tokenizer (SD3 / SD 3.5 and Flux.1's T5-XXL), built offline from the vocabulary shipped in
the package (``nodegen/assets/t5/t5_tokenizer.json.gz``; origin and licence in ``LICENSE.md`` beside
it). The ids equal the hub's ``google/t5-v1_1-xxl`` tokenizer: "a photo of a cat" gives
3, 9, 1202, 13, 3, 9, 1712, 1 (``</s>`` = 1 ends every sequence, ``<pad>`` = 0).
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

from nodegen.compat import torchvision as torchvision_fix

VOCAB_FILE = "t5_tokenizer.json.gz"


@functools.lru_cache(maxsize=1)
def t5_tokenizer_json() -> str:
    data = resources.files("nodegen.assets.t5").joinpath(VOCAB_FILE).read_bytes()
    return gzip.decompress(data).decode("utf-8")


def load_t5_tokenizer(model_max_length: int = 512):
    """A ``transformers`` fast T5 tokenizer with the real vocabulary, built with no network."""
    torchvision_fix.apply()
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    try:
        from transformers import T5TokenizerFast as cls
    except ImportError:  # pragma: no cover - older/newer transformers spell it differently
        cls = PreTrainedTokenizerFast
    tok = Tokenizer.from_str(t5_tokenizer_json())
    extra = [f"<extra_id_{i}>" for i in range(100)]
    try:
        return cls(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                   extra_ids=100, additional_special_tokens=extra, model_max_length=model_max_length)
    except TypeError:  # pragma: no cover
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>",
                                       pad_token="<pad>", model_max_length=model_max_length)
