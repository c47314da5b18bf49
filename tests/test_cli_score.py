"""`w2v score` end to end: JSON report, missing modes, normalisation flags, comparisons, errors."""

import json
import subprocess
import sys

import jiwer
import pytest
from typer.testing import CliRunner

from w2vcli.cli import app
from w2vcli.data.text import normalize_text

REF = {
    "u1": "Hello, World! This is a test.",
    "u2": "The cat sat on the mat.",
    "u3": "東京 は 大きい",
    "u4": "Don't stop",
}
HYP_A = {
    "u1": "hello word this is test",
    "u2": "the cat sat on a mat mat",
    "u3": "東京 が 大きい",
    "u4": "dont stop",
}
HYP_B = {
    "u1": "hello world this is a test",
    "u2": "the cat sat on the mat",
    "u3": "東京 は 大きい",
    "u4": "don't",
}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "wavs").mkdir()
    ref = tmp_path / "test.jsonl"
    ref.write_text(
        "".join(
            json.dumps({"id": k, "audio": f"wavs/{k}.flac", "duration": 1.0, "text": v}, ensure_ascii=False)
            + "\n"
            for k, v in REF.items()
        ),
        encoding="utf-8",
    )
    # transcribe output: no ids, absolute audio paths, reversed order
    hyp_a = tmp_path / "a.jsonl"
    hyp_a.write_text(
        "".join(
            json.dumps({"audio": str(tmp_path / "wavs" / f"{k}.flac"), "text": v}, ensure_ascii=False) + "\n"
            for k, v in reversed(HYP_A.items())
        ),
        encoding="utf-8",
    )
    hyp_b = tmp_path / "b.tsv"
    hyp_b.write_text("".join(f"{k}\t{v}\n" for k, v in HYP_B.items()), encoding="utf-8")
    return tmp_path, str(ref), str(hyp_a), str(hyp_b)


def _score_process(*args):
    """`w2v score ARGS` in a subprocess, as a user runs it (the error handler prints one line)."""
    return subprocess.run(
        [sys.executable, "-m", "w2vcli", "score", *args], capture_output=True, text=True, timeout=60
    )


def _run(*args):
    result = CliRunner().invoke(app, ["score", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_json_stdout_matches_jiwer(files):
    _, ref, hyp_a, _ = files
    result = _run(ref, hyp_a, "--json", "-")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout is the JSON and nothing else
    keys = list(REF)
    refs = [normalize_text(REF[k]) for k in keys]
    hyps = [normalize_text(HYP_A[k]) for k in keys]
    jw, jc = jiwer.process_words(refs, hyps), jiwer.process_characters(refs, hyps)
    assert report["wer"] == pytest.approx(jw.wer) and report["cer"] == pytest.approx(jc.cer)
    assert (report["substitutions"], report["deletions"], report["insertions"]) == (
        jw.substitutions,
        jw.deletions,
        jw.insertions,
    )
    assert report["ref_words"] == sum(len(r.split()) for r in refs)
    assert report["ref_chars"] == sum(len(r) for r in refs)
    assert (report["char_substitutions"], report["char_deletions"], report["char_insertions"]) == (
        jc.substitutions,
        jc.deletions,
        jc.insertions,
    )
    assert report["sentences"] == 4 and report["ser"] == pytest.approx(1.0)
    assert report["joined_on"] == "audio"
    assert report["normalization"]["lowercase"] is True
    assert [u["id"] for u in report["utterances"]] == keys
    u1 = report["utterances"][0]
    assert (u1["ref"], u1["hyp"]) == ("hello world this is a test", "hello word this is test")
    assert (u1["substitutions"], u1["deletions"], u1["insertions"], u1["ref_words"]) == (1, 1, 0, 6)


def test_tables_on_stderr_with_alignment(files):
    _, ref, hyp_a, _ = files
    result = _run(ref, hyp_a, "--align", "2", "--json", "-")
    assert result.exit_code == 0
    err = result.stderr
    for needle in ("words", "chars", "SER", "Top errors", "world", "REF:", "HYP:", "lowercase"):
        assert needle in err, needle
    assert err.count("REF:") == 2  # the two worst utterances only
    json.loads(result.stdout)


def test_no_normalize_and_keep_case(files):
    _, ref, _, hyp_b = files
    default = json.loads(_run(ref, hyp_b, "--json", "-").stdout)
    raw = json.loads(_run(ref, hyp_b, "--no-normalize", "--json", "-").stdout)
    cased = json.loads(_run(ref, hyp_b, "--keep-case", "--json", "-").stdout)
    assert default["wer"] == pytest.approx(1 / 17)  # 17 reference words; only "don't stop" -> "don't"
    assert raw["normalization"] == {
        "unicode": None,
        "lowercase": False,
        "strip_punctuation": False,
        "collapse_whitespace": True,
    }
    raw_refs = [" ".join(REF[k].split()) for k in REF]
    assert raw["wer"] == pytest.approx(jiwer.wer(raw_refs, [HYP_B[k] for k in REF]))
    assert raw["wer"] > default["wer"]
    assert default["wer"] < cased["wer"] < raw["wer"]  # "Hello" and "The" still count, "World!" not
    punct = json.loads(_run(ref, hyp_b, "--keep-punctuation", "--json", "-").stdout)
    assert punct["normalization"]["lowercase"] and not punct["normalization"]["strip_punctuation"]
    assert default["wer"] < punct["wer"] < raw["wer"]  # "world!" and "mat." count, case does not


def test_missing_modes(files, tmp_path):
    _, ref, _, _ = files
    hyp = tmp_path / "partial.jsonl"
    hyp.write_text(
        json.dumps({"id": "u1", "text": "hello world this is a test"})
        + "\n"
        + json.dumps({"id": "u2", "audio": "x.wav", "error": "cannot decode"})
        + "\n"
        + json.dumps({"id": "zz", "text": "extra"})
        + "\n",
        encoding="utf-8",
    )
    fail = _score_process(ref, str(hyp))
    assert fail.returncode == 1
    assert "3 of 4 references have no hypothesis" in fail.stderr and "'u2'" in fail.stderr
    assert len(fail.stderr.strip().splitlines()) == 1 and "Traceback" not in fail.stderr

    skip = json.loads(_run(ref, str(hyp), "--missing", "skip", "--json", "-").stdout)
    assert skip["sentences"] == 1 and skip["wer"] == 0.0
    assert skip["missing"] == ["u2", "u3", "u4"] and skip["failed"] == ["u2"] and skip["extra"] == ["zz"]

    empty = json.loads(_run(ref, str(hyp), "--missing", "empty", "--json", "-").stdout)
    assert empty["sentences"] == 4
    assert empty["deletions"] == sum(len(normalize_text(REF[k]).split()) for k in ("u2", "u3", "u4"))
    assert [u.get("missing", False) for u in empty["utterances"]] == [False, True, True, True]


def test_compare_two_systems_bootstrap(files):
    tmp_path, ref, hyp_a, hyp_b = files
    out = tmp_path / "report.json"
    result = _run(ref, hyp_a, hyp_b, "--bootstrap", "300", "--seed", "3", "--json", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert "P(B better)" in result.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    a, b = report["systems"]
    assert report["bootstrap"] == {"resamples": 300, "seed": 3, "level": 0.95}
    assert b["wer"] < a["wer"]
    for s in (a, b):
        assert s["wer_ci"][0] <= s["wer"] <= s["wer_ci"][1]
        assert s["cer_ci"][0] <= s["cer"] <= s["cer_ci"][1]
    (c,) = report["comparisons"]
    assert c["delta_wer"] == pytest.approx(b["wer"] - a["wer"])
    assert 0.5 < c["p_b_better_wer"] <= 1.0
    again = _run(ref, hyp_a, hyp_b, "--bootstrap", "300", "--seed", "3", "--json", "-")
    assert json.loads(again.stdout)["comparisons"] == report["comparisons"]  # seeded: reproducible


def test_hypothesis_from_stdin(files):
    _, ref, _, _ = files
    lines = "".join(json.dumps({"id": k, "text": v}, ensure_ascii=False) + "\n" for k, v in HYP_B.items())
    result = CliRunner().invoke(app, ["score", ref, "-", "--json", "-"], input=lines)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["sentences"] == 4


@pytest.mark.parametrize(
    "content, args, message, code",
    [
        ("u1\ta\nu1\tb\n", [], "id 'u1' appears more than once (lines 1, 2)", 1),
        (None, [], "cannot read", 1),
        ("u1\ta\n", ["--hyp-format", "csv"], "unknown transcript format", 2),
        ("u1\ta\n", ["--missing", "maybe"], "--missing must be one of", 2),
    ],
)
def test_errors_are_one_line(files, tmp_path, content, args, message, code):
    _, ref, _, _ = files
    hyp = tmp_path / "h.tsv"
    if content is not None:
        hyp.write_text(content, encoding="utf-8")
    proc = _score_process(ref, str(hyp), *args)
    assert proc.returncode == code
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_empty_references_do_not_crash(tmp_path):
    ref = tmp_path / "ref.tsv"
    ref.write_text("u1\t\nu2\t...\n", encoding="utf-8")  # "..." normalises to nothing
    hyp = tmp_path / "hyp.tsv"
    hyp.write_text("u1\tuh huh\nu2\t\n", encoding="utf-8")
    report = json.loads(_run(str(ref), str(hyp), "--json", "-").stdout)
    assert report["ref_words"] == 0 and report["insertions"] == 2
    assert report["wer"] == pytest.approx(
        jiwer.process_words(["", ""], ["uh huh", ""]).wer
    )  # 2 insertions / 1
    assert report["cer"] == pytest.approx(6.0) and report["ser"] == pytest.approx(0.5)


def _grouped_ref(tmp_path):
    """Ids of three speakers, 2 before 10, and one id of no speaker."""
    rows = {
        "spk10-a": "one two",
        "spk2-a": "three four",
        "spk2-b": "five",
        "spk1-a": "six seven",
        "misc": "eight",
    }
    hyps = {"spk10-a": "one", "spk2-a": "three four", "spk2-b": "fife", "spk1-a": "six seven", "misc": ""}
    ref, hyp = tmp_path / "ref.tsv", tmp_path / "hyp.tsv"
    ref.write_text("".join(f"{k}\t{v}\n" for k, v in rows.items()), encoding="utf-8")
    hyp.write_text("".join(f"{k}\t{v}\n" for k, v in hyps.items()), encoding="utf-8")
    return str(ref), str(hyp), rows, hyps


def test_by_breaks_rates_down_by_the_ids_capture_group(tmp_path):
    ref, hyp, rows, hyps = _grouped_ref(tmp_path)
    result = _run(ref, hyp, ref, "--by", r"^spk(\d+)-", "--json", "-", "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["group_by"] == r"^spk(\d+)-"
    groups = report["systems"][0]["groups"]
    assert [g["group"] for g in groups] == ["1", "2", "10", "(other)"]  # numbers in order, the rest last
    members = {"1": ["spk1-a"], "2": ["spk2-a", "spk2-b"], "10": ["spk10-a"], "(other)": ["misc"]}
    for g in groups:
        ids = members[g["group"]]
        assert g["sentences"] == len(ids)
        refs, hs = [rows[i] for i in ids], [hyps[i] for i in ids]
        assert g["wer"] == pytest.approx(jiwer.wer(refs, hs)) and g["cer"] == pytest.approx(
            jiwer.cer(refs, hs)
        )
    for key in ("ref_words", "substitutions", "deletions", "insertions", "char_deletions"):
        assert sum(g[key] for g in groups) == report["systems"][0][key]
    assert report["systems"][1]["groups"][0]["wer"] == 0.0  # the reference scored as a system
    assert "by group" in result.stderr and "A WER" in result.stderr and "B CER" in result.stderr


def test_by_without_a_capture_group_uses_the_whole_match(tmp_path):
    ref, hyp, _, _ = _grouped_ref(tmp_path)
    report = json.loads(_run(ref, hyp, "--by", r"spk\d", "--json", "-").stdout)
    assert [(g["group"], g["sentences"]) for g in report["groups"]] == [
        ("spk1", 2),
        ("spk2", 2),
        ("(other)", 1),
    ]


@pytest.mark.parametrize(
    "pattern, message, code",
    [("spk(", "is not a regular expression", 2), ("^nobody", "matches no utterance id", 1)],
)
def test_by_errors_are_one_line(tmp_path, pattern, message, code):
    ref, hyp, _, _ = _grouped_ref(tmp_path)
    proc = _score_process(ref, hyp, "--by", pattern)
    assert proc.returncode == code
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
