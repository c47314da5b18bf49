"""Hostile pass over the ONNX cache and `--model X.onnx` (issue 26: D1-D6, D14-D17, D19).

The cache's contract (w2vcli/checkpoints/onnx_cache.py) is pinned with known inputs and exact outcomes:
which entries remain after each export, that a user's file is never deleted, that a damaged entry is
exported again, that a read-only or full cache degrades to one line. Most tests replace the exporter
by a copy of one real export made once for the module, so they take milliseconds; the few that need
a process of their own (Ctrl-C, kill -9, telemetry) start one each.
"""

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
import torch

from w2vcli.checkpoints import engine_choice, onnx_cache, resolve
from w2vcli.checkpoints import onnx as w2v_onnx
from w2vcli.checkpoints.onnx_cache import CACHE_ENTRIES, CacheUnwritable, cached_export, evict
from w2vcli.checkpoints.resolve import load_ctc, load_model
from w2vcli.errors import UsageError, W2VError

os.environ["HF_HUB_OFFLINE"] = "1"
pytest.importorskip("transformers")
from test_transcribe import babble, make_hf_model, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny Hugging Face CTC model, one real export of it, and a clip to transcribe."""
    d = tmp_path_factory.mktemp("hf")
    make_hf_model(d / "hf", "group", seed=3)
    ckpt, vocab = load_ctc(d / "hf")
    exported = w2v_onnx.export(ckpt.model, ckpt.config, vocab, d / "model.onnx")
    clip = write(d / "clip.wav", babble(1.0, 7))
    return SimpleNamespace(dir=d / "hf", onnx=exported, clip=clip)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("W2V_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


@pytest.fixture
def exports(model, monkeypatch):
    """Replace the exporter by a copy of the real export; the list records each export's target."""
    made = []

    def copy(ckpt_model, config, vocab, out, int8=False):
        made.append(Path(out))
        shutil.copyfile(model.onnx, out)
        return Path(out)

    monkeypatch.setattr(w2v_onnx, "export", copy)
    return made


def entry(key: int, int8: bool = False) -> str:
    return f"{key:032x}{'-int8' if int8 else ''}.onnx"


def put(root: Path, name: str, age_s: float, data: bytes = b"x") -> Path:
    """A file `age_s` seconds old."""
    root.mkdir(parents=True, exist_ok=True)
    p = root / name
    p.write_bytes(data)
    t = time.time_ns() - int(age_s * 1e9)
    os.utime(p, ns=(t, t))
    return p


def in_ledger(root: Path, *names: str) -> None:
    with open(root / onnx_cache.LEDGER_FILE, "a") as f:
        f.writelines(n + "\n" for n in names)


# D1 and the eviction contract: known folders, exact survivors.

USER = ["mine.onnx", "final.onnx", "a.onnx", f"{99:032x}.onnx", ".entries.onnx"]  # never the cache's


@pytest.mark.parametrize(
    "ages, keep, survivors",
    [
        ({1: 60, 2: 50, 3: 40, 4: 30, 5: 20, 6: 10}, 4, [6, 5, 4, 3]),  # the 4 most recently used
        ({1: 10, 2: 50, 3: 20, 4: 60, 5: 30, 6: 40}, 4, [1, 3, 5, 6]),  # by use, not by ledger order
        ({1: 30, 2: 20, 3: 10}, 4, [3, 2, 1]),  # fewer than keep: nothing goes
        ({1: 30, 2: 20, 3: 10}, 1, [3]),
        ({1: 10, 2: 10, 3: 10}, 2, [3, 2]),  # equal times: by name, so the outcome is fixed
    ],
)
def test_eviction_keeps_the_most_recently_used_of_its_own_entries(tmp_path, ages, keep, survivors):
    root = tmp_path / "onnx"
    for name in USER:
        put(root, name, age_s=3600)  # older than every entry: first to go if they counted
    t = time.time_ns()
    for key, age in ages.items():
        p = put(root, entry(key), 0)
        os.utime(p, ns=(t - age * 10**9, t - age * 10**9))
    in_ledger(root, *(entry(k) for k in ages), "mine.onnx", "../escape.onnx")
    gone = evict(root, keep)
    assert sorted(p.name for p in gone) == sorted(entry(k) for k in ages if k not in survivors)
    expected = {entry(k) for k in survivors} | set(USER) | {onnx_cache.LEDGER_FILE}
    assert {p.name for p in root.iterdir()} == expected
    assert onnx_cache.ledger(root) == [entry(k) for k in survivors]  # newest first


def test_exports_evict_the_least_recently_used_and_never_a_users_file(tmp_path, cache, monkeypatch):
    """The report of D1: five user models in W2V_CACHE/onnx; then CACHE_ENTRIES + 2 exports and a use."""
    for i in range(5):
        put(cache, f"user{i}.onnx", age_s=7200, data=b"mine")
    clock = [time.time_ns() - 1000 * 10**9]

    def fake_export(ckpt_model, config, vocab, out, int8=False):
        Path(out).write_bytes(b"export")
        clock[0] += 10**9  # each export one second after the previous, all in the past
        os.utime(out, ns=(clock[0], clock[0]))

    monkeypatch.setattr(w2v_onnx, "export", fake_export)
    monkeypatch.setattr(resolve, "load_ctc", lambda d: (SimpleNamespace(model=None, config=None), None))
    dirs = []
    for i in range(CACHE_ENTRIES + 3):
        (tmp_path / f"m{i}").mkdir()
        (tmp_path / f"m{i}" / "weights").write_text(str(i))
        dirs.append(tmp_path / f"m{i}")

    def export(i):
        return cached_export(dirs[i], False, open_entry=lambda p: p).name

    names = [export(i) for i in range(CACHE_ENTRIES + 2)]  # 0..5: 0 and 1 evicted
    assert sorted(p.name for p in cache.glob("*.onnx")) == sorted(
        [f"user{i}.onnx" for i in range(5)] + names[2:]
    )
    assert export(2) == names[2]  # a use: 2 becomes the most recent
    names.append(export(CACHE_ENTRIES + 2))  # 6: evicts 3, the least recently used now
    assert set(onnx_cache.ledger(cache)) == {names[i] for i in (2, 4, 5, 6)}
    assert {p.name for p in cache.glob("*.onnx")} == {f"user{i}.onnx" for i in range(5)} | set(
        onnx_cache.ledger(cache)
    )
    assert all((cache / f"user{i}.onnx").read_bytes() == b"mine" for i in range(5))


# D3: a damaged entry is exported again.


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "no metadata"])
def test_a_damaged_cached_export_is_exported_again(model, cache, exports, damage):
    raw = model.onnx.read_bytes()
    data = {
        "empty": b"",
        "truncated": raw[: len(raw) // 2],
        "garbage": b"\x00\xffnot a model" * 10,
        "no metadata": raw[: raw.rfind(w2v_onnx.META.encode()) - 4],  # the metadata is the file's tail
    }[damage]
    bad = put(cache, f"{onnx_cache.cache_key(model.dir, False)}.onnx", 0, data)
    notes = []
    loaded = load_model(str(model.dir), engine="onnx", announce=notes.append)
    assert exports == [bad] and loaded.engine == "onnx" and loaded.model.path == bad
    assert any("damaged; exporting it again" in n for n in notes), notes
    logits, _, _ = loaded.model(torch.zeros(1, 4000))
    assert logits.shape[-1] == len(loaded.vocab)


# D2, D4, D5: a cache that cannot be written.


def _read_only(monkeypatch):
    """What a read-only file system answers to every write in the cache (root ignores chmod)."""

    def refuse(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(onnx_cache, "flocked", refuse)
    monkeypatch.setattr(engine_choice, "flocked", refuse)
    monkeypatch.setattr(os, "utime", refuse)


def test_a_read_only_warm_cache_serves_its_export(model, cache, exports, monkeypatch):
    first = load_model(str(model.dir), engine="onnx")
    _read_only(monkeypatch)
    again = load_model(str(model.dir), engine="onnx")
    assert again.engine == "onnx" and again.model.path == first.model.path and len(exports) == 1
    notes = []  # a long job calibrates on the warm export; the record cannot be kept, the job runs
    auto = load_model(str(model.dir), engine="auto", audio_seconds=math.inf, announce=notes.append)
    assert auto.engine in ("onnx", "torch") and len(exports) == 1
    assert "could not keep the measurement" in notes[-1], notes


@pytest.mark.parametrize("where", ["read-only cache", "cache under a file", "HOME a file"])
def test_an_unwritable_cache_falls_back_to_torch_or_names_the_way_out(
    model, tmp_path, monkeypatch, exports, where
):
    root = tmp_path / "cache"
    if where == "read-only cache":
        root.mkdir()
        _read_only(monkeypatch)
    elif where == "cache under a file":
        (tmp_path / "file").write_text("")
        root = tmp_path / "file" / "cache"
    else:
        (tmp_path / "home").write_text("")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        root = tmp_path / "home" / ".cache" / "w2vcli"
    if where != "HOME a file":
        monkeypatch.setenv("W2V_CACHE", str(root))
    else:
        monkeypatch.delenv("W2V_CACHE")
    notes = []  # a short job never touches the cache; a long one calibrates, which needs an export
    assert (
        load_model(str(model.dir), engine="auto", audio_seconds=1.0, announce=notes.append).engine == "torch"
    )
    assert notes == []
    loaded = load_model(str(model.dir), engine="auto", audio_seconds=math.inf, announce=notes.append)
    assert (
        loaded.engine == "torch" and exports == [] and "auto: the ONNX cache cannot be written" in loaded.why
    )
    assert len(notes) == 2 and notes[0].startswith("measuring"), notes
    assert f"{root / 'onnx'}" in notes[1] and "running on PyTorch" in notes[1]
    with pytest.raises(CacheUnwritable) as e:
        load_model(str(model.dir), engine="onnx")
    message = str(e.value)
    assert str(root / "onnx") in message and "W2V_CACHE" in message and "--engine torch" in message


def _cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`w2v ARGS` in this process: (exit code, stdout, stderr)."""
    import w2vcli.cli as cli

    monkeypatch.setattr(sys, "argv", ["w2v", *map(str, args)])
    monkeypatch.delenv("W2V_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:
        cli.main()
    out, err = capsys.readouterr()
    return e.value.code or 0, out, err


def test_the_cli_on_an_unwritable_cache(model, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("W2V_CACHE", str(tmp_path / "file" / "cache"))
    monkeypatch.delenv("W2V_ENGINE")
    code, out, err = _cli(monkeypatch, capsys, "transcribe", model.clip, "--model", model.dir)
    assert code == 0 and json.loads(out)["text"] and "engine torch fp32" in err, err  # short: no export
    code, out, err = _cli(
        monkeypatch, capsys, "transcribe", model.clip, "--model", model.dir, "--engine", "onnx"
    )
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 1 and "W2V_CACHE" in lines[0], err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_a_chmod_read_only_cache_falls_back_to_torch(model, cache, exports):
    cache.mkdir(parents=True)
    cache.chmod(0o555)
    try:
        loaded = load_model(str(model.dir), engine="auto", audio_seconds=math.inf, announce=lambda m: None)
    finally:
        cache.chmod(0o755)
    assert loaded.engine == "torch"


@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("write: No space left on device")],
)
def test_a_full_disk_names_the_cache_and_the_way_out(model, cache, monkeypatch, error):
    def full(*a, **k):
        raise error

    monkeypatch.setattr(w2v_onnx, "export", full)
    with pytest.raises(CacheUnwritable) as e:
        load_model(str(model.dir), engine="onnx")
    message = str(e.value)
    assert "no space left" in message and str(cache) in message
    assert "W2V_CACHE" in message and "another disk" in message and "--engine torch" in message
    notes = []
    assert (
        load_model(str(model.dir), engine="auto", audio_seconds=math.inf, announce=notes.append).engine
        == "torch"
    )
    assert "no space left" in notes[-1]


# D16: two processes, one export.


def test_a_second_loader_waits_for_the_first_export_and_reuses_it(model, cache, exports, monkeypatch):
    copy = w2v_onnx.export
    second_waits = threading.Event()

    def slow(*a, **k):
        assert second_waits.wait(20), "the second loader never waited on the lock"
        return copy(*a, **k)

    monkeypatch.setattr(w2v_onnx, "export", slow)
    notes, results = [], []

    def run():
        results.append(load_model(str(model.dir), engine="onnx", announce=notes.append).model.path)

    def note(message):
        notes.append(message)
        if message.startswith("waiting for another"):
            second_waits.set()

    threads = [threading.Thread(target=run)]
    threads[0].start()
    deadline = time.monotonic() + 30
    while not any(n.startswith("exporting") for n in notes) and time.monotonic() < deadline:
        time.sleep(0.01)
    threads.append(
        threading.Thread(
            target=lambda: results.append(load_model(str(model.dir), engine="onnx", announce=note).model.path)
        )
    )
    threads[1].start()
    for t in threads:
        t.join(30)
    assert len(exports) == 1 and len(results) == 2 and results[0] == results[1] == exports[0]
    assert sum(n.startswith("waiting for another") for n in notes) == 1


# D14 and D15: Ctrl-C and kill -9 in the middle of an export, in a process of its own.

TRIPWIRE = """
import importlib.abc, os, signal, sys
from w2vcli.checkpoints import onnx as w2v_onnx
armed, sig = [], getattr(signal, sys.argv[1])
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whoever started this

class Tripwire(importlib.abc.MetaPathFinder):
    # torch.export imports its compiler on first use; a signal that lands while these two modules
    # load leaves torch._dynamo half-initialised (what a user's Ctrl-C in the first seconds meets)
    def find_spec(self, name, path=None, target=None):
        if armed and name in ("torch._dynamo.variables", "torch._inductor"):
            armed.clear()
            os.kill(os.getpid(), sig)
        return None

sys.meta_path.insert(0, Tripwire())
inner = w2v_onnx._export
w2v_onnx._export = lambda *a, **k: (armed.append(1), inner(*a, **k))[1]
sys.argv = ["w2v", *sys.argv[2:]]
from w2vcli.cli import main
main()
"""


def _interrupted(model, cache, sig):
    env = {**os.environ, "W2V_CACHE": str(cache.parent), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("W2V_DEBUG", None)
    args = ["transcribe", model.clip, "--model", model.dir, "--engine", "onnx"]
    return subprocess.run(
        [sys.executable, "-c", TRIPWIRE, sig, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_ctrl_c_during_an_export_exits_130_quietly(model, cache):
    r = _interrupted(model, cache, "SIGINT")
    assert r.returncode == 130 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stdout == "" and r.stderr.startswith("exporting the model") and "rror" not in r.stderr
    assert not [p for p in cache.iterdir() if p.name.endswith(".onnx") or ".onnx." in p.name]


@pytest.mark.parametrize("exporter_then", ["raises its own error", "goes on and returns"])
def test_an_interrupted_export_ends_in_the_interrupt(monkeypatch, exporter_then):
    """What torch.export does with a KeyboardInterrupt inside its imports, in miniature."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with w2v_onnx._interruptible():
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(5)
                except KeyboardInterrupt:
                    if exporter_then == "raises its own error":
                        raise AttributeError("partially initialized module 'torch._dynamo'") from None
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_next_export_sweeps_what_a_killed_export_left(model, cache, exports):
    r = _interrupted(model, cache, "SIGKILL")
    assert r.returncode == -signal.SIGKILL
    left = [p for p in cache.iterdir() if p.name.startswith(".") and ".onnx." in p.name]
    assert len(left) == 1 and left[0].is_dir()  # export()'s temporary folder, as the kill left it
    put(cache, f".{entry(7, int8=True)}.x1y2", 3600)  # another killed export, an older version's file
    put(cache, ".notes.onnx.bak", 3600)  # not an entry's name: the user's
    load_model(str(model.dir), engine="onnx")  # the lock the killed process held is free again
    assert len(exports) == 1
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == [
        ".entries",
        ".lock",
        ".notes.onnx.bak",
    ]


# D17: no telemetry files.


def test_onnx_runtime_writes_nothing_under_home(model, tmp_path):
    env = {**os.environ, "HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for var in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY", "W2V_DEBUG"):
        env.pop(var, None)
    (tmp_path / "home").mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "w2vcli", "transcribe", model.clip, "--model", model.onnx],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert r.returncode == 0 and json.loads(r.stdout)["text"], r.stderr
    assert list((tmp_path / "home").rglob("*")) == []


# D6: hostile `--model X.onnx`, for `w2v transcribe` and `w2v info`.


def _hostile(src: Path, dst: Path, edit) -> Path:
    proto = onnx.load(str(src))
    meta = json.loads(proto.metadata_props[0].value)
    raw = edit(proto, meta)  # the metadata's new text, else None: `meta` as edited
    proto.metadata_props[0].value = raw if raw is not None else json.dumps(meta)
    onnx.save(proto, str(dst))
    return dst


def _set_meta(text):
    def edit(proto, meta):
        return text

    return edit


def _rename_input(proto, meta):
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name == "wav":
                node.input[i] = "audio"
    proto.graph.input[0].name = "audio"


def _short_vocab(consistent_config: bool, dynamic_width: bool = False):
    def edit(proto, meta):
        meta["vocab"]["tokens"] = meta["vocab"]["tokens"][:-3]
        if consistent_config:
            meta["config"]["vocab_size"] = len(meta["vocab"]["tokens"])
        if dynamic_width:
            proto.graph.output[0].type.tensor_type.shape.dim[-1].dim_param = "V"

    return edit


HOSTILE = [
    ("not json", _set_meta("{config: 1"), "metadata is not JSON", True),
    ("a list", _set_meta("[1, 2]"), "not a JSON object", True),
    ("no config", lambda p, m: m.pop("config") and None, "lacks the model's config", True),
    (
        "config not valid",
        lambda p, m: m["config"].update(hidden_size=-4),
        "config in its metadata is invalid",
        True,
    ),
    ("tokens a string", lambda p, m: m["vocab"].update(tokens="abc"), "vocabulary in its metadata", True),
    (
        "spm garbage",
        lambda p, m: m.update(vocab={"kind": "sentencepiece", "model": "@@"}),
        "vocabulary",
        True,
    ),
    ("input not wav", _rename_input, "takes ['audio']", True),
    ("vocab shorter than config", _short_vocab(False), "its config gives 22", True),
    ("vocab shorter than graph", _short_vocab(True), "the graph outputs 22", True),
    ("width known at run time", _short_vocab(True, dynamic_width=True), "not (batch, frames, 19)", False),
]


@pytest.mark.parametrize("name, edit, message, on_load", HOSTILE, ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("command", ["transcribe", "info"])
def test_a_hostile_onnx_model_is_one_line(
    model, tmp_path, monkeypatch, capsys, name, edit, message, on_load, command
):
    bad = _hostile(model.onnx, tmp_path / "bad.onnx", edit)
    args = ["transcribe", model.clip, "--model", bad] if command == "transcribe" else ["info", bad]
    code, _, err = _cli(monkeypatch, capsys, *args)
    if command == "info" and not on_load:  # a width only the graph's run can tell: info reads it as written
        assert code == 0, err
        return
    if command == "transcribe" and not on_load:  # ONNX Runtime's shape inference knows it when loading
        message = "the graph outputs 22"
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0] and str(bad) in lines[0], err
    assert "Traceback" not in err


# D19: $W2V_ENGINE is named as such, and any case is understood.


@pytest.mark.parametrize(
    "flag, env, device, outcome",
    [
        (None, "jax", "cpu", "W2V_ENGINE=jax: expected one of auto, onnx, torch"),
        ("jax", "torch", "cpu", "--engine jax: expected one of auto, onnx, torch"),
        (None, "ONNX", "cuda", "W2V_ENGINE=ONNX runs on the CPU"),
        ("Onnx", None, "cuda", "--engine Onnx runs on the CPU"),
        (None, " Torch ", "cpu", "torch"),
        ("TORCH", "jax", "cpu", "torch"),
        (None, "Auto", "cpu", "torch"),  # auto, not yet calibrated for this model: PyTorch
    ],
)
def test_the_engine_comes_from_the_flag_or_the_variable_in_any_case(
    model, cache, exports, monkeypatch, flag, env, device, outcome
):
    if env is None:
        monkeypatch.delenv("W2V_ENGINE", raising=False)
    else:
        monkeypatch.setenv("W2V_ENGINE", env)
    if outcome in ("onnx", "torch"):
        assert load_model(str(model.dir), device=device, engine=flag).engine == outcome
        return
    with pytest.raises(UsageError) as e:
        load_model(str(model.dir), device=device, engine=flag)
    assert str(e.value).startswith(outcome)


def test_an_onnx_file_keeps_its_messages(model):
    with pytest.raises(UsageError, match="runs on --engine onnx"):
        load_model(str(model.onnx), engine="Torch")
    with pytest.raises(W2VError, match="--engine cuda: expected one of"):
        load_model(str(model.onnx), engine="cuda")
