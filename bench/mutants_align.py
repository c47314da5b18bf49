"""Mutants for `w2v align` and `w2v segment` (issue 26): the new guards (the vocabulary's case, the
fit floors, the silence check, the spoken text written, the output ledger, positive TextGrid
intervals, `--text` typos) and the contracts pinned with exact outputs (the wildcard's cost, the
span trim, the fit of a word, thousands in numbers). Each is one realistic one-line slip.

Fields as bench/mutants.py's Mutant: (name, file, old, new, tests, why).
"""

HOSTILE = ("tests/test_hostile_align.py",)
ALIGN = ("tests/test_align.py", "tests/test_hostile_align.py")
SEGMENT = ("tests/test_hostile_align.py", "tests/test_segment.py")  # the fast file first: -x stops there
FORMATS = ("tests/test_formats.py", "tests/test_hostile_align.py")

MUTANTS = [
    # Text spelling.
    ("align-text-lower-case-only", "w2vcli/decoding/align_text.py",
     "for other in (ch.lower(), ch.upper()):", "for other in (ch.lower(),):",
     ALIGN, "with facebook/wav2vec2-base-960h (capitals only) every word but the first is unaligned"),
    ("align-text-thousands-as-decimals", "w2vcli/decoding/align_text.py",
     'number = number.replace(",", "")', 'number = number.replace(",", ".")',
     ALIGN, '"$1,234" is aligned as "one dollar twenty three cents", and segment writes that'),
    # Alignment costs.
    ("align-wildcard-cheaper", "w2vcli/decoding/align.py",
     "STAR_PENALTY = 2.0  #", "STAR_PENALTY = 1.0  #",
     ALIGN, "the wildcard swallows speech the text does have: words shrink, segments drop as untranscribed"),
    ("align-span-trim-wider", "w2vcli/decoding/align.py",
     "core = np.flatnonzero(lp >= log_probs[a:b, blank] - 2.0)",
     "core = np.flatnonzero(lp >= log_probs[a:b, blank] - 3.0)",
     ALIGN, "a word's end follows the path through the pause after it"),
    ("align-fit-is-the-score", "w2vcli/pipelines/align.py",
     "fit = float(np.exp(sum((s.score - s.best) * (s.end - s.start) for s in got) / frames))",
     "fit = float(np.exp(sum(s.score * (s.end - s.start) for s in got) / frames))",
     HOSTILE, "fit no longer compares with the model's own best reading: a weak model's good speech is refused"),
    # Segment's drop rules and verdict.
    ("segment-fit-floor-off", "w2vcli/pipelines/segment.py",
     "        elif s.fit < options.min_fit:", "        elif s.fit < 0:",
     SEGMENT, "segments whose audio does not say their text become training pairs"),
    ("segment-silence-check-off", "w2vcli/pipelines/segment.py",
     "if loudness is not None and loudness(s.start, s.end) < options.silence_db:",
     "if loudness is not None and loudness(s.start, s.end) < -1000:",
     SEGMENT, "digital silence becomes training pairs when the model hallucinates the text"),
    ("segment-file-median-off", "w2vcli/pipelines/segment.py",
     "    if median < options.min_file_fit:", "    if median < 0:",
     SEGMENT, "a wholly wrong transcript yields training pairs from every segment"),
    ("segment-writes-the-original", "w2vcli/pipelines/segment.py",
     '" ".join(t for t in said if t)', '" ".join(w["word"] for w in part)',
     HOSTILE, 'pairs say "$1,234" where the audio says "one thousand two hundred and thirty four dollars"'),
    ("segment-own-output-refused", "w2vcli/pipelines/segment.py",
     "if p.name != LEDGER_FILE and not ledger.owns(p)", "if p.name != LEDGER_FILE",
     HOSTILE, "a re-run into segment's own folder is refused as 'not written by w2v segment'"),
    # Writers and inputs.
    ("textgrid-empty-interval", "w2vcli/decoding/formats.py",
     "b = max(b, a + TEXTGRID_EPSILON)", "b = max(b, a)",
     FORMATS, "trailing unaligned words get empty intervals: Praat and the textgrid package refuse the file"),
    ("align-text-typo-is-a-transcript", "w2vcli/pipelines/align.py",
     "        if looks_like_a_path(text):", "        if False:",
     HOSTILE, "`--text transcrpt.txt` aligns the word 'transcrpt.txt'; segment writes it as a training pair"),
]  # fmt: skip
