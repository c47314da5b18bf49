"""Mutants for the contracts of issue 26's second round: input discovery, prep's handling of an
interrupted output, text normalisation, id pairing in scoring, multi-channel audio, and the CTM and
TextGrid writers. Each is one realistic one-line slip; its tests pin the contract with exact outputs.

Fields as bench/mutants.py's Mutant: (name, file, old, new, tests, why).
"""

INPUTS = ("tests/test_contracts_inputs.py",)
PREP = ("tests/test_contracts_prep.py",)
TEXT_SCORING = ("tests/test_contracts_text_scoring.py",)
AUDIO_FORMATS = ("tests/test_contracts_audio_formats.py",)

MUTANTS = [
    # Input discovery.
    ("inputs-hidden-files-kept", "w2vcli/data/inputs.py",
     'if not name.startswith("."):', 'if not name.startswith("._"):',
     INPUTS, "`.hidden.wav` (editor backups, sync tools' partial files) becomes training data"),
    ("inputs-walk-unsorted", "w2vcli/data/inputs.py",
     "for name in sorted(filenames):", "for name in filenames:",
     INPUTS, "transcribe's output order follows the file system's listing order, not the names"),
    ("inputs-suffix-case-sensitive", "w2vcli/data/inputs.py",
     "    suffix = path.suffix.lower()\n", "    suffix = path.suffix\n",
     INPUTS, "`A.WAV` and `m.Mp3` in a folder are skipped without a word"),
    ("transcribe-stdin-crlf-kept", "w2vcli/pipelines/_transcribe_inputs.py",
     'line.rstrip("\\r\\n")', 'line.rstrip("\\n")',
     INPUTS, "a path list from a Windows tool names `a.wav\\r`: every input 'does not exist'"),
    # Prep re-run after an interrupted run.
    ("prep-journal-not-recognised", "w2vcli/pipelines/prep.py",
     "ours = (out / REPORT_FILE).is_file() or (out / CACHE_FILE).is_file()",
     "ours = (out / REPORT_FILE).is_file()",
     PREP, "after Ctrl-C the re-run refuses its own folder as 'files prep did not write'"),
    ("prep-journal-created-late", "w2vcli/pipelines/_prep_cache.py",
     'self._journal = open(self.path, "a", encoding="utf-8")\n\n    def get',
     "self._journal = None\n\n    def get",
     PREP, "a run killed while writing its first file leaves a folder the re-run refuses"),
    ("prep-torn-journal-line-fatal", "w2vcli/pipelines/_prep_cache.py",
     "except (ValueError, KeyError, TypeError):", "except (KeyError, TypeError):",
     PREP, "a journal line torn by a kill makes every later run crash with a JSON traceback"),
    ("prep-write-failure-remembered", "w2vcli/pipelines/_prep_cache.py",
     "_TRANSIENT = {DECODER_ERROR, WRITE_ERROR, UNREADABLE, COMMAND_FAILED}",
     "_TRANSIENT = {DECODER_ERROR, UNREADABLE, COMMAND_FAILED}",
     PREP, "a file whose write failed (disk full) stays rejected after space is freed"),
    # Text normalisation and transcript matching.
    ("text-nfc-not-nfkc", "w2vcli/data/text.py",
     'unicodedata.normalize("NFKC", text)', 'unicodedata.normalize("NFC", text)',
     TEXT_SCORING, "ligatures and full-width letters reach the vocabulary as characters of their own"),
    ("text-symbols-kept", "w2vcli/data/text.py",
     'unicodedata.category(c).startswith(("P", "S"))', 'unicodedata.category(c).startswith("P")',
     TEXT_SCORING, "`$`, `+`, `=`, `<` stay in transcripts and become letters to learn"),
    ("transcripts-bare-name-shadows-path", "w2vcli/data/transcripts.py",
     "for i in range(1, len(parts)):", "for i in range(len(parts) - 1, 0, -1):",
     TEXT_SCORING, "a bare `a` in a table takes spk1/a.wav's transcript from the `spk1/a` entry"),
    # Pairing references with hypotheses.
    ("pairing-tie-goes-to-paths", "w2vcli/scoring/pairing.py",
     "_matched(by_path) > _matched(by_id)", "_matched(by_path) >= _matched(by_id)",
     TEXT_SCORING, "ids that pair as many utterances as paths do are overruled by the paths"),
    ("pairing-extra-ids-inverted", "w2vcli/scoring/pairing.py",
     "for j, h in enumerate(hyps) if j not in used]", "for j, h in enumerate(hyps) if j in used]",
     TEXT_SCORING, "the report lists the paired hypotheses as extra and hides the ids no reference has"),
    # Multi-channel audio and resampling.
    ("audio-first-channel-only", "w2vcli/data/audio.py",
     "mono = block.mean(axis=1) if info.channels > 1 else block[:, 0]", "mono = block[:, 0]",
     AUDIO_FORMATS, "a stereo file keeps its left channel only: the other speaker is lost"),
    ("audio-resampler-not-flushed", "w2vcli/data/audio.py",
     "pieces.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))", "pass",
     AUDIO_FORMATS, "resampled files lose their last milliseconds (the resampler's delay)"),
    # CTM and TextGrid.
    ("ctm-duration-is-end-time", "w2vcli/decoding/formats.py",
     "{w['end'] - w['start']:.3f}", "{w['end']:.3f}",
     AUDIO_FORMATS, "CTM's fourth column is the end time, not the duration: sclite misplaces words"),
    ("ctm-name-keeps-suffix", "w2vcli/decoding/formats.py",
     "Path(result.audio).with_suffix(\"\").name", "Path(result.audio).name",
     AUDIO_FORMATS, "CTM utterance names end in `.wav` and match no reference id"),
    ("textgrid-quotes-not-doubled", "w2vcli/decoding/formats.py",
     "quoted = text.replace('\"', '\"\"')", "quoted = text",
     AUDIO_FORMATS, "a word with a double quote ends its string early: Praat cannot open the file"),
]  # fmt: skip
