"""Decoding: CTC greedy and beam search, word language models, output formats."""
