"""Mutants for the ONNX cache and `--model X.onnx` (issue 26: D1-D6, D14-D17, D19): the eviction
contract (which entries remain after each export, never a user's file) and each new guard. Each is one
realistic one-line slip; tests/test_hostile_onnx.py pins the contract with exact outcomes.

Fields as bench/mutants.py's Mutant: (name, file, old, new, tests, why).
"""

T = "tests/test_hostile_onnx.py::"
EVICTION = (
    T + "test_eviction_keeps_the_most_recently_used_of_its_own_entries",
    T + "test_exports_evict_the_least_recently_used_and_never_a_users_file",
)
CACHE = "w2vcli/checkpoints/onnx_cache.py"
ONNX = "w2vcli/checkpoints/onnx.py"
RESOLVE = "w2vcli/checkpoints/resolve.py"

MUTANTS = [
    # The eviction contract.
    ("cache-evicts-one-too-many", CACHE,
     "kept, gone = entries[:keep], entries[keep:]", "kept, gone = entries[: keep - 1], entries[keep - 1 :]",
     EVICTION, "the cache keeps 3 exports, not 4: a fourth model is exported again on every switch"),
    ("cache-evicts-the-newest", CACHE,
     "reverse=True)  # newest first", "reverse=False)  # newest first",
     EVICTION, "each export deletes the models used last and keeps the stale ones"),
    ("cache-evicts-any-onnx", CACHE,
     "entries = [root / n for n in ledger(root) if (root / n).is_file() and not (root / n).is_symlink()]",
     'entries = [p for p in root.glob("*.onnx") if p.is_file()]',
     EVICTION, "D1: user models kept in W2V_CACHE/onnx are deleted by a transcription"),
    ("cache-ledger-trusts-any-name", CACHE,
     "if _ENTRY.match(n)]", "if n]",
     EVICTION, "D1: a ledger naming `mine.onnx` or `../x.onnx` deletes a file the cache never wrote"),
    ("cache-evicts-by-ledger-order", CACHE,
     "entries.sort(key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)",
     "entries.reverse()",
     EVICTION, "the most recently *exported* are kept, not the most recently used"),
    # The guards.
    ("cache-damaged-entry-fatal", CACHE,
     "        except W2VError:\n            say(", "        except ImportError:\n            say(",
     (T + "test_a_damaged_cached_export_is_exported_again",),
     "D3: an empty or truncated cached export fails every run with a message about a file the user never made"),
    ("cache-touch-failure-fatal", CACHE,
     "    except OSError:\n        pass", "    except FileNotFoundError:\n        pass",
     (T + "test_a_read_only_warm_cache_serves_its_export",),
     "D2: a read-only warm cache ends in a traceback from os.utime"),
    ("cache-auto-no-fallback", RESOLVE,
     "            if not auto:\n                raise", "            if True:\n                raise",
     (T + "test_an_unwritable_cache_falls_back_to_torch_or_names_the_way_out",
      T + "test_a_full_disk_names_the_cache_and_the_way_out"),
     "D4: a read-only HOME makes the default engine unusable"),
    ("cache-no-recheck-under-lock", CACHE,
     "    root = path.parent\n    if path.is_file():", "    root = path.parent\n    if False:",
     (T + "test_a_second_loader_waits_for_the_first_export_and_reuses_it",),
     "D16: two transcriptions of a new model both export it (twice the CPU)"),
    ("cache-sweeps-nothing", CACHE,
     "stale = [p for p in root.iterdir() if _PARTIAL.match(p.name)]", "stale = []",
     (T + "test_the_next_export_sweeps_what_a_killed_export_left",),
     "D15: kill -9 during an export leaves a temporary folder (~380 MB for base) forever"),
    ("onnx-interrupt-reported-as-export-error", ONNX,
     "    except Exception:\n        if interrupted:", "    except Exception:\n        if False:",
     (T + "test_an_interrupted_export_ends_in_the_interrupt",),
     "D14: Ctrl-C in the first seconds of an export prints a 100-line traceback, exit 1"),
    ("onnx-interrupt-forgotten", ONNX,
     "        interrupted.append(signum)\n", "        interrupted.clear()\n",
     (T + "test_ctrl_c_during_an_export_exits_130_quietly",),
     "D14: Ctrl-C during an export ends in the exporter's traceback, or is ignored while it goes on"),
    ("onnx-graph-width-unchecked", ONNX,
     '(config.vocab_size, "its config gives"), (width, "the graph outputs")',
     '(config.vocab_size, "its config gives"), (None, "the graph outputs")',
     (T + "test_a_hostile_onnx_model_is_one_line",),
     "D6: a vocabulary shorter than the logits ends in an IndexError in ctc.py"),
    ("onnx-telemetry-on", ONNX,
     'os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")', 'os.environ.setdefault("ORT_DISABLE_TELEMETRY", "0")',
     (T + "test_onnx_runtime_writes_nothing_under_home",),
     "D17: ONNX Runtime writes a device id and an event database under ~/.cache/Microsoft"),
    ("engine-env-case-sensitive", RESOLVE,
     "choice = engine.strip().lower()", "choice = engine.strip()",
     (T + "test_the_engine_comes_from_the_flag_or_the_variable_in_any_case",),
     "D19: W2V_ENGINE=ONNX is refused"),
]  # fmt: skip
