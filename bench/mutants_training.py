"""Mutants for training runs and their messages (issue 26): `--init` on resume, a preset that
contradicts `--init`'s model, the recipe's objective fields, the tri-stage schedule, a resume under
a longer budget, audio piped where paths are read, a run with no checkpoint yet, and export's MODEL.
Each is one realistic one-line slip; its tests pin the contract with exact outputs.

Fields as bench/mutants.py's Mutant: (name, file, old, new, tests, why).
"""

T = "tests/test_hostile_train.py::"

MUTANTS = [
    ("resume-ignores-another-init", "w2vcli/pipelines/_training.py",
     "    if init is None or _same_start(init, started, run):\n", "    if True:\n",
     (T + "test_resuming_finetuning_with_another_init_is_refused",),
     "finetune --init B on a run started from A resumes A without a word"),
    ("resume-rewrites-init", "w2vcli/pipelines/finetune.py",
     '"init": started or init,', '"init": init,',
     (T + "test_resuming_finetuning_with_another_init_is_refused",),
     "train.json's `init` names what the last invocation was given, not what the run was started from"),
    ("preset-contradicting-init-allowed", "w2vcli/training/recipes.py",
     "    if preset != own:\n", "    if False:\n",
     (T + "test_a_preset_that_contradicts_the_init_model_is_refused",),
     "`--init tiny --preset base` trains the tiny model with base's recipe, no notice"),
    ("objective-field-taken-for-architecture", "w2vcli/training/recipes.py",
     '        "num_negatives",\n        "diversity_loss_weight",', '        "diversity_loss_weight",',
     (T + "test_recipe_and_model_flags_with_init_exact",),
     "--num-negatives with --init is refused as if it changed the architecture"),
    ("tri-stage-warmup-from-zero", "w2vcli/training/schedule.py",
     "return init_scale + (1.0 - init_scale) * (update + 1) / warmup", "return (update + 1) / warmup",
     (T + "test_tri_stage_schedule_exact",),
     "fine-tuning's warm-up starts from 0 instead of 0.01x the peak lr"),
    ("tri-stage-decay-counts-warmup", "w2vcli/training/schedule.py",
     "decay = max(total - warmup - hold, 1)", "decay = max(total - hold, 1)",
     (T + "test_tri_stage_schedule_exact",),
     "the decay never reaches 0.05x the peak by the end of the budget"),
    ("resume-schedule-restarts", "w2vcli/training/loop.py",
     'self.stretch = stretch(self.spent, state.get("schedule"))', "self.stretch = None",
     (T + "test_resuming_a_finished_finetuning_run_with_more_minutes_keeps_the_final_lr",),
     "resuming with a longer --max-minutes sends the lr from 1e-4 back up to its peak"),
    ("stdin-audio-read-as-paths", "w2vcli/cli/transcribe.py",
     'io.BytesIO(check_path_list(sys.stdin.buffer.read(), "transcribe"))', "io.BytesIO(sys.stdin.buffer.read())",
     (T + "test_audio_on_stdin_is_refused_in_one_line",),
     "`cat a.wav | w2v transcribe -` reads the audio's bytes as hundreds of paths"),
    ("stopped-run-called-in-progress", "w2vcli/training/rundir.py",
     "    pid = run.holder()\n    if pid is not None:\n", "    pid = run.holder()\n    if pid is None:\n",
     (T + "test_a_run_with_no_checkpoint_yet_is_named_as_such",),
     "a run killed before its first checkpoint is said to be training, and a running one stopped"),
    ("export-blames-model-flag", "w2vcli/cli/export.py",
     'resolve_model(model, given_as="MODEL")', "resolve_model(model)",
     (T + "test_export_names_its_model_argument_not_a_flag",),
     "`w2v export notes.txt m.onnx` blames --model, a flag export does not have"),
]  # fmt: skip
