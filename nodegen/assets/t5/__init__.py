"""The T5 (v1.1) SentencePiece unigram vocabulary as a ``tokenizers`` JSON file (gzip)."""
