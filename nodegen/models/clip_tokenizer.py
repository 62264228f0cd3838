"""The CLIP BPE tokenizer, built offline from the vocabulary shipped in the package.

The OpenAI CLIP vocabulary (``bpe_simple_vocab_16e6.txt.gz``, MIT licence, as shipped in the
open_clip wheel) lies in ``nodegen/assets/clip``. From its merges we derive the same
vocabulary and merges that the hub's ``openai/clip-vit-large-patch14`` tokenizer files hold,
so no file is ever fetched.

Two tokenizers, the same ids: :class:`ClipTokenizer` (the ``tokenizers`` library only: what the
model loaders give a CLIP, so a run never imports transformers) and :func:`load_clip_tokenizer`
(transformers' ``CLIPTokenizer``, for diffusers pipelines and other transformers code).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
from importlib import resources
from pathlib import Path

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


# ---- nodegen's own tokenizer (no transformers import) ----------------------------------------

#: The normalizer and pre-tokenizer transformers' ``CLIPTokenizer`` builds (transformers 5).
_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


class Encoding(dict):
    """``{"input_ids": ..., "attention_mask": ...}`` that also answers ``.input_ids`` (as
    transformers' ``BatchEncoding``)."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@functools.lru_cache(maxsize=4)
def _backend(pad_token: str):
    """The ``tokenizers`` pipeline of transformers' ``CLIPTokenizer`` for the shipped vocabulary
    (shared: encoding does not change it)."""
    vocab, merges = clip_vocab_and_merges()
    return _build_backend(vocab, merges, pad_token)


def _build_backend(vocab: dict[str, int], merges: list[tuple[str, str]], pad_token: str,
                   bos: str = BOS, eos: str = EOS, unk: str = EOS):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    tok = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                        end_of_word_suffix="</w>", fuse_unk=False, unk_token=unk))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    # transformers registers its special tokens as added tokens matched in the raw text
    specials = dict.fromkeys((unk, bos, eos, pad_token))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False,
                                       single_word=False) for t in specials])
    tok.post_processor = processors.RobertaProcessing((eos, tok.token_to_id(eos)), (bos, tok.token_to_id(bos)),
                                                      trim_offsets=False, add_prefix_space=False)
    return tok


class ClipTokenizer:
    """The CLIP BPE tokenizer on the ``tokenizers`` library: the same ids as transformers'
    ``CLIPTokenizer`` (same vocabulary, merges, normalizer, pre-tokenizer and special tokens),
    without importing transformers. Called like it: ``tok(text, add_special_tokens=False)["input_ids"]``,
    ``tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")``.

    ``pad_token``: ``<|endoftext|>`` (CLIP-L) or ``!`` (OpenCLIP, id 0). As in transformers, the
    special tokens (including the pad token) are matched in the text itself."""

    def __init__(self, backend, pad_token: str = EOS, model_max_length: int = 77,
                 bos_token: str = BOS, eos_token: str = EOS, unk_token: str = EOS) -> None:
        self._tok = backend
        self.bos_token, self.eos_token, self.unk_token, self.pad_token = bos_token, eos_token, unk_token, pad_token
        self.model_max_length = model_max_length
        ids = [backend.token_to_id(t) for t in (bos_token, eos_token, unk_token, pad_token)]
        if None in ids:
            raise ValueError("the CLIP vocabulary lacks one of its special tokens")
        self.bos_token_id, self.eos_token_id, self.unk_token_id, self.pad_token_id = ids

    @classmethod
    def standard(cls, pad_token: str = EOS, model_max_length: int = 77) -> ClipTokenizer:
        """The OpenAI CLIP vocabulary shipped in the package."""
        return cls(_backend(pad_token), pad_token, model_max_length)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> ClipTokenizer | None:
        """A diffusers ``tokenizer`` folder: the vocabulary and merges of its ``tokenizer.json`` (as
        transformers 5 saves it) or ``vocab.json`` + ``merges.txt`` (as the hub's SD folders hold
        them); the special tokens and length from ``tokenizer_config.json`` /
        ``special_tokens_map.json``. None when the folder holds anything this class would not
        reproduce (added tokens, other special tokens): the caller then uses transformers'."""
        folder = Path(folder)
        vocab_merges = _folder_vocab(folder)
        if vocab_merges is None:
            return None
        config = _read_json(folder / "tokenizer_config.json")
        special = {**_read_json(folder / "special_tokens_map.json"), **config}
        names = {k: _token_text(special.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        if (names["bos_token"] or BOS, names["eos_token"] or EOS, names["unk_token"] or EOS) != (BOS, EOS, EOS):
            return None
        pad = names["pad_token"] or EOS
        known = {BOS, EOS, pad}
        added = [_token_text(t) for t in (config.get("added_tokens_decoder") or {}).values()]
        added += [t.get("content") for t in _read_json(folder / "tokenizer.json").get("added_tokens", [])]
        if any(t not in known for t in added) or (folder / "added_tokens.json").is_file():
            return None
        length = config.get("model_max_length", 77)
        length = length if isinstance(length, int) and 0 < length < 10**6 else 77
        return cls(_build_backend(*vocab_merges, pad), pad, length)

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | list[str]):
        if isinstance(tokens, str):
            found = self._tok.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        text = self._tok.decode(ids, skip_special_tokens=skip_special_tokens)
        return text.replace("</w>", " ").strip()

    def __call__(self, text: str | list[str], add_special_tokens: bool = True, truncation: bool = False,
                 padding: bool | str = False, max_length: int | None = None, return_tensors: str | None = None,
                 **_: object) -> Encoding:
        single = isinstance(text, str)
        batch = [text] if single else list(text)
        # one by one: encode_batch would start the library's thread pool for a handful of prompts
        rows = [self._tok.encode(t, add_special_tokens=add_special_tokens).ids for t in batch]
        limit = max_length if max_length is not None else self.model_max_length
        if truncation:
            rows = [self._truncate(r, limit, add_special_tokens) for r in rows]
        if padding == "max_length":
            width = limit
        elif padding is True or padding == "longest":
            width = max((len(r) for r in rows), default=0)
        else:
            width = 0
        masks = [[1] * len(r) + [0] * max(width - len(r), 0) for r in rows]
        rows = [r + [self.pad_token_id] * max(width - len(r), 0) for r in rows]
        if return_tensors == "pt":
            import torch

            if len({len(r) for r in rows}) > 1:
                raise ValueError("prompts of different lengths: pass padding=True or padding='max_length'")
            return Encoding(input_ids=torch.tensor(rows, dtype=torch.long),
                            attention_mask=torch.tensor(masks, dtype=torch.long))
        if return_tensors is not None:
            raise ValueError(f"return_tensors={return_tensors!r} is not supported (use 'pt' or None)")
        if single:
            return Encoding(input_ids=rows[0], attention_mask=masks[0])
        return Encoding(input_ids=rows, attention_mask=masks)

    def _truncate(self, ids: list[int], limit: int, special: bool) -> list[int]:
        """As transformers: keep the first tokens, and the EOS token when special tokens were added."""
        if len(ids) <= limit:
            return ids
        return ids[: limit - 1] + [ids[-1]] if special else ids[:limit]


def folder_tokenizer(folder: Path, fallback):
    """The tokenizer of a diffusers ``tokenizer`` folder (:class:`ClipTokenizer` where it gives the
    same ids, else transformers'), or ``fallback()`` when the folder has none or cannot be read."""
    if not folder.is_dir():
        return fallback()
    own = ClipTokenizer.from_folder(folder)
    if own is not None:
        return own
    torchvision_fix.apply()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError):
        return fallback()


def _folder_vocab(folder: Path) -> tuple[dict[str, int], list[tuple[str, str]]] | None:
    """Vocabulary and merges of a tokenizer folder (None: neither layout, or not a BPE)."""
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        vocab = json.loads((folder / "vocab.json").read_text("utf-8"))
        lines = (folder / "merges.txt").read_text("utf-8").split("\n")
        return vocab, [tuple(line.split()) for line in lines if line.strip() and not line.startswith("#version")]
    model = _read_json(folder / "tokenizer.json").get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        return None
    merges = [tuple(m.split()) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    return model["vocab"], merges


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text("utf-8")) if path.is_file() else {}


def _token_text(value) -> str | None:
    """A special token as the config files spell it: a string or ``{"content": ...}``."""
    if isinstance(value, dict):
        return value.get("content")
    return value
