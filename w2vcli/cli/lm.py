"""`w2v lm`: a word n-gram language model from text, for `w2v transcribe --lm`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def lm(
    text: Annotated[
        list[str],
        typer.Argument(
            help="Text files (a sentence per line), .jsonl manifests, `w2v prep` outputs, or - (stdin)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The ARPA file to write (.arpa).")],
    order: Annotated[int, typer.Option("--order", min=1, max=6, help="n of the n-grams.")] = 3,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Sentences to leave out, e.g. the test set's manifest (repeatable)."),
    ] = None,
    keep_case: Annotated[
        bool, typer.Option("--keep-case", help="Do not lowercase (as `w2v prep --keep-case`).")
    ] = False,
    keep_punctuation: Annotated[
        bool, typer.Option("--keep-punctuation", help="Keep punctuation (as `w2v prep --keep-punctuation`).")
    ] = False,
) -> None:
    """Build an interpolated modified Kneser-Ney n-gram LM (ARPA), normalising text as `w2v prep` does."""
    from w2vcli.console import err
    from w2vcli.decoding.ngram import estimate, read_sentences, write_arpa

    norm = {"lowercase": not keep_case, "strip_punctuation": not keep_punctuation}
    sentences = read_sentences(text, **norm)
    left_out = {tuple(s) for s in read_sentences(exclude, **norm)} if exclude else set()
    kept = [s for s in sentences if tuple(s) not in left_out]
    model = estimate(kept, order)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_arpa(model, out)
    counts = ", ".join(f"{len(p) + (n == 1):,} {n}-grams" for n, p in enumerate(model.probs, 1))  # + <s>
    dropped = f" ({len(sentences) - len(kept):,} excluded)" if exclude else ""
    err.print(
        f"[green]wrote[/] {out}: {len(kept):,} sentences{dropped}, {sum(map(len, kept)):,} words, {counts}"
    )
