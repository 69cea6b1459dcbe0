"""The GPU suite's runner and record tools, on the CPU: argument parsing, the dry run's record, stage
timeouts, a suite killed mid-stage, junit/-v parsing, merging split records, targets from bench rows,
the smoke and bench workers' CPU code paths."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
pytestmark = pytest.mark.skipif(not (BENCH / "suite.py").exists(), reason="needs the source tree")
STATUSES = {"passed", "failed", "timed out", "skipped"}


@pytest.fixture(scope="module")
def tools():
    """(the gpu_suite package behind benchmarks/suite.py, merge_records)."""
    sys.path.insert(0, str(BENCH))
    import gpu_suite
    import merge_records

    return gpu_suite, merge_records


@pytest.fixture(autouse=True)
def no_torch_probe(request, monkeypatch):
    """In-process suites skip the torch subprocess (seconds each): the machine has no GPU."""
    if "tools" in request.fixturenames:
        suite, _ = request.getfixturevalue("tools")
        monkeypatch.setattr(suite.Suite, "gpu_info", lambda self: {"torch": "test", "cuda": None, "gpu": None})


def _fake_stage(suite, monkeypatch, name, run):
    """Stage ``name`` of the suite's table runs ``run(suite, deadline)`` instead."""
    monkeypatch.setitem(suite.STAGES, name, suite.STAGES[name]._replace(run=run))


def _row(impl, prec, batch, ms, mem=100.0, h=448, w=1024):
    return {"impl": impl, "precision": prec, "batch": batch, "height": h, "width": w, "median_ms": ms,
            "pairs_per_s": batch * 1e3 / ms, "peak_mem_mb": mem}


def _record(out):
    files = [f for f in os.listdir(out) if f.endswith(".json")]
    assert len(files) == 1, files
    with open(os.path.join(out, files[0])) as f:
        return json.load(f)


def _fake_sanitizer(tmp_path, body):
    """A `compute-sanitizer` on PATH that runs ``body`` (bash) with the tool name in $2."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    f = d / "compute-sanitizer"
    f.write_text("#!/usr/bin/env bash\n" + body + "\n")
    f.chmod(0o755)
    return str(d)


def _sanitizer_stage(suite, tmp_path, monkeypatch, script, tools, budget=120):
    """The sanitizer stage alone, in process, with a fake compute-sanitizer: (exit status, record)."""
    monkeypatch.setenv("PATH", _fake_sanitizer(tmp_path, script) + os.pathsep + os.environ["PATH"])
    out = tmp_path / "out"
    args = suite.parse_args([str(out), "--stages", "sanitizer", "--device", "cuda", "--budget", str(budget),
                             "--sanitizers", tools, "--work", str(tmp_path / "work")])
    return suite.Suite(args).run(), _record(out)


def test_targets(tools):
    _, merge_records = tools
    rows = [_row("fastflow", "fp16", 1, 0.2, 150), _row("torch_compile", "fp16", 1, 0.8), _row("fastflow", "fp16", 16, 2.0),
            _row("fastflow", "tf32", 1, 1.0), _row("reference", "tf32", 1, 2.0), _row("fastflow", "fp32", 1, 3.0),
            _row("reference", "fp32", 1, 2.4), _row("fastflow", "fp16", 1, 9.0, h=384, w=512)]
    t = merge_records.targets(rows)
    assert t["fp16_b1_448x1024_ms"] == 0.2 and t["fp16_b1_vs_torch_compile"] == pytest.approx(4.0)
    assert t["fp16_b16_pairs_per_s"] == pytest.approx(8000.0)
    assert t["tf32_vs_reference_defaults"] == pytest.approx(2.0) and t["fp32_vs_reference_tf32_off"] == pytest.approx(0.8)
    assert t["fp16_b1_peak_mem_mb"] == 150
    assert merge_records.targets([])["fp16_b1_vs_torch_compile"] is None


def _stage(status, **result):
    return {"status": status, "result": result}


def test_merge_split_records(tools):
    _, merge_records = tools
    base = {"gpu": "NVIDIA H200", "csrc_tree": "abc", "commit": "1234", "date": "d"}
    a = dict(base, stages={
        "build": _stage("passed"), "model_tests": _stage("passed", counts={"passed": 9, "failed": 0, "skipped": 1, "errors": 0}),
        "sanitizer": _stage("passed", tools={"memcheck": "clean"}), "bench": {"status": "running"},
        "op_tests": _stage("timed out", counts={"passed": 4, "failed": 1, "skipped": 0, "errors": 0}, failed_tests=["t::x"])})
    b = dict(base, stages={
        "build": _stage("passed", rebuilt=False), "model_tests": {"status": "skipped"}, "sanitizer": {"status": "pending"},
        "bench": _stage("passed", rows=[_row("fastflow", "fp16", 1, 0.5)]), "layers": _stage("passed", rows=[{"layer": "conv1"}])})
    m = merge_records.merge([a, b])
    st = m["stages"]
    assert st["model_tests"]["status"] == "passed" and st["sanitizer"]["status"] == "passed"
    assert st["bench"]["status"] == "passed" and st["build"]["result"] == {"rebuilt": False}  # later wins among equals
    assert m["tests"] == {"passed": 13, "failed": 1, "skipped": 1, "errors": 0} and m["tests_failed"] == ["t::x"]
    assert m["sanitizer"] == {"memcheck": "clean"} and m["layers"] == [{"layer": "conv1"}]
    assert m["bench"][0]["median_ms"] == 0.5 and m["targets"]["fp16_b1_448x1024_ms"] == 0.5
    assert len(m["merged_from"]) == 2
    with pytest.raises(SystemExit, match="different csrc trees"):
        merge_records.merge([a, dict(b, csrc_tree="other")])
    with pytest.raises(SystemExit, match="different GPUs"):
        merge_records.merge([a, dict(b, gpu="H100")])


def test_merge_cli(tmp_path):
    rec = {"gpu": "G", "csrc_tree": "t", "commit": "c", "date": "d", "stages": {"smoke": _stage("passed", passed=3, failed=0)}}
    (tmp_path / "a.json").write_text(json.dumps(rec))
    (tmp_path / "bad.json").write_text("{not json")
    r = subprocess.run([sys.executable, str(BENCH / "merge_records.py"), str(tmp_path / "a.json"), "-o", str(tmp_path / "m.json")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "m.json").read_text())["smoke"] == {"passed": 3, "failed": 0}
    r = subprocess.run([sys.executable, str(BENCH / "merge_records.py"), str(tmp_path / "bad.json")], capture_output=True, text=True)
    assert r.returncode == 1 and "cannot read" in r.stderr and "bad.json" in r.stderr


def test_arguments(tools, monkeypatch):
    suite, _ = tools
    monkeypatch.delenv("OUT", raising=False)
    a = suite.parse_args(["--stages", "smoke,bench", "--budget", "100"])
    assert a.outdir == str(ROOT / "benchmarks" / "results") and a.stage_list == ["smoke", "bench"] and a.budget == 100
    a = suite.parse_args(["/tmp/x", "--quick"])
    assert a.outdir == "/tmp/x" and a.stage_list == list(suite.QUICK) and a.budget == 540 and "compile" not in a.stage_list
    a = suite.parse_args(["--compile", "o"])
    assert a.outdir == "o" and a.stage_list[-1] == "compile"
    monkeypatch.setenv("OUT", "/tmp/device_out")
    assert suite.parse_args([]).outdir == "/tmp/device_out"
    for bad in (["--quick", "--compile"], ["--stages", "smoke,nope"], ["--quick", "--stages", "compile"], ["--budget", "5"],
                ["--repeats", "0"], ["--sanitizer-size", "60x128"], ["--sanitizer-size", "0x64"], ["--sanitizers", "memcheck,x"]):
        with pytest.raises(SystemExit) as e:
            suite.parse_args(bad)
        assert e.value.code == 2


def test_gpu_suite_sh_does_not_take_an_option_for_outdir(tmp_path):
    """`gpu_suite.sh --stages x` is an error about the stage, not a folder named --stages."""
    r = subprocess.run(["bash", str(BENCH / "gpu_suite.sh"), "--stages", "x"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "unknown stage(s) x" in r.stderr
    assert not (tmp_path / "--stages").exists() and not (ROOT / "--stages").exists()


def test_relative_outdir_is_the_callers(tmp_path):
    r = subprocess.run(["bash", str(BENCH / "gpu_suite.sh"), "rel", "--stages", "layers", "--budget", "30", "--device", "cpu",
                        "--work", str(tmp_path / "work")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _record(tmp_path / "rel")["stages"]["layers"] == {"status": "skipped", "note": "no GPU"}
    assert not (ROOT / "rel").exists()


def test_junit_and_verbose_counts(tools, tmp_path):
    suite, _ = tools
    (tmp_path / "j.xml").write_text(
        '<testsuites><testsuite><testcase classname="a" name="t1"/><testcase classname="a" name="t2"><failure/></testcase>'
        '<testcase classname="a" name="t3"><skipped/></testcase><testcase classname="b" name="t4"><error/></testcase>'
        '</testsuite></testsuites>')
    counts, failed = suite.procs.junit_counts(str(tmp_path / "j.xml"))
    assert counts == {"passed": 1, "failed": 1, "skipped": 1, "errors": 1} and failed == ["a::t2", "b::t4"]
    assert suite.procs.junit_counts(str(tmp_path / "missing.xml")) == (None, [])
    (tmp_path / "cut.xml").write_text("<testsuites><testsuite><testcase")
    assert suite.procs.junit_counts(str(tmp_path / "cut.xml")) == (None, [])
    text = ("tests/t.py::test_a[fp16-(1, 3, 5)] PASSED    [ 10%]\ntests/t.py::test_b FAILED  [ 20%]\n"
            "tests/t.py::test_c SKIPPED (needs a CUDA GPU)  [ 30%]\n")
    counts, failed = suite.procs.verbose_counts(text)
    assert counts == {"passed": 1, "failed": 1, "skipped": 1, "errors": 0} and failed == ["tests/t.py::test_b"]


def test_dry_run_tiny_budget(tmp_path):
    """No GPU, a budget too small for any stage: every stage recorded as skipped, exit 0, one record
    for the current csrc tree, the log archive beside it."""
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(BENCH / "gpu_suite.sh"), str(out), "--quick", "--budget", "30", "--device", "cpu",
                        "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    rec = _record(out)
    sys.path.insert(0, str(BENCH))
    from treehash import tree_hash

    assert rec["gpu"] == "no GPU" and rec["suite"]["dry_run"] and rec["csrc_tree"] == tree_hash(str(ROOT / "csrc"))
    assert list(rec["stages"]) == ["build", "smoke", "model_tests", "sanitizer", "op_tests", "bench", "layers"]
    assert all(e["status"] == "skipped" and e["note"] for e in rec["stages"].values())
    assert rec["stages"]["build"]["note"] == "no GPU" and rec["stages"]["smoke"]["note"].startswith("budget")
    assert rec["tests"] == {"passed": 0, "failed": 0, "skipped": 0, "errors": 0} and rec["suite"]["finished"]
    assert set(os.listdir(out)) == {f"{rec['date']}-no-GPU-{rec['commit'][:8]}.json", "suite_logs.tar.gz"}
    assert "record: " in r.stdout


def test_stage_timeout_recorded(tools, tmp_path, monkeypatch):
    """A sanitizer tool that hangs is killed at the stage deadline and recorded as timed out; the other
    tool's result stays; the record parses."""
    suite, _ = tools
    monkeypatch.setitem(suite.LIMITS, "sanitizer", (3, 1))
    rc, rec = _sanitizer_stage(suite, tmp_path, monkeypatch, 'if [ "$2" = racecheck ]; then sleep 300; fi\n'
                               'echo "sanitize_forward: done"; echo "========= ERROR SUMMARY: 0 errors"', "memcheck,racecheck", 60)
    out = tmp_path / "out"
    st = rec["stages"]["sanitizer"]
    assert rc == 1 and st["status"] == "timed out" and st["timeout_s"] == 3
    assert rec["sanitizer"]["memcheck"] == "clean" and rec["sanitizer"]["memcheck_errors"] == 0
    assert rec["sanitizer"]["racecheck"].startswith("timed out")
    assert not [f for f in os.listdir(out) if f.endswith(".log")]  # finished stages' logs moved into the archive


def test_sanitizer_error_is_reported(tools, tmp_path, monkeypatch):
    suite, _ = tools
    rc, rec = _sanitizer_stage(suite, tmp_path, monkeypatch, 'echo "========= Invalid __global__ read of size 4 bytes"\n'
                               'echo "=========     at conv_kernel"; echo "========= ERROR SUMMARY: 2 errors"; exit 3', "memcheck")
    assert rc == 1 and rec["stages"]["sanitizer"]["status"] == "failed"
    assert rec["sanitizer"]["memcheck"] == "Invalid __global__ read of size 4 bytes at conv_kernel"
    assert rec["sanitizer"]["memcheck_errors"] == 2


def test_extra_sanitizer_findings_fail_the_stage(tools, tmp_path, monkeypatch):
    """initcheck (run beside memcheck and racecheck) finding errors fails the stage, and the note
    names the report, not compute-sanitizer's banner (the first H200 record said 'passed' with
    444640 initcheck errors and the verdict '========= COMPUTE-SANITIZER')."""
    suite, _ = tools
    rc, rec = _sanitizer_stage(suite, tmp_path, monkeypatch,
                               'echo "========= COMPUTE-SANITIZER"\n'
                               'if [ "$2" = initcheck ]; then\n'
                               '  echo "========= Uninitialized __global__ memory read of size 2 bytes"\n'
                               '  echo "=========     at elementwise_kernel+0x13b0"\n'
                               '  echo "sanitize_forward: done"; echo "========= ERROR SUMMARY: 7 errors"; exit 3\n'
                               'fi\n'
                               'echo "sanitize_forward: done"; echo "========= ERROR SUMMARY: 0 errors"',
                               "memcheck,racecheck,initcheck", 600)
    st = rec["stages"]["sanitizer"]
    assert rc == 1 and st["status"] == "failed"
    assert rec["sanitizer"]["memcheck"] == "clean" and rec["sanitizer"]["racecheck"] == "clean"
    assert rec["sanitizer"]["initcheck"] == "Uninitialized __global__ memory read of size 2 bytes at elementwise_kernel+0x13b0"
    assert rec["sanitizer"]["initcheck_errors"] == 7


def test_killed_suite_leaves_a_usable_record(tmp_path):
    """The whole call killed in the middle of a stage: the record parses and names the stage that was
    running; that stage's live log is in OUTDIR."""
    path = _fake_sanitizer(tmp_path, "echo started; sleep 300")
    out = tmp_path / "out"
    env = dict(os.environ, PATH=path + os.pathsep + os.environ["PATH"])
    p = subprocess.Popen(["bash", str(BENCH / "gpu_suite.sh"), str(out), "--stages", "sanitizer,bench", "--device", "cuda",
                          "--budget", "300", "--sanitizers", "memcheck", "--work", str(tmp_path / "work")],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(600):  # wait (at most ~60 s) until the sanitizer stage is under way
            recs = [f for f in os.listdir(out) if f.endswith(".json")] if out.exists() else []
            if recs and (out / "sanitizer_memcheck.log").exists():
                if json.loads((out / recs[0]).read_text())["stages"]["sanitizer"]["status"] == "running":
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the suite never reached its sanitizer stage")
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    rec = _record(out)
    assert rec["stages"]["sanitizer"]["status"] == "running" and rec["stages"]["bench"]["status"] == "pending"
    assert "compute-sanitizer --tool memcheck" in (out / "sanitizer_memcheck.log").read_text()


def test_smoke_cpu_paths(tmp_path):
    """smoke_cuda.py's op cases through the CPU versions of the ops: one line per case, all ok."""
    r = subprocess.run([sys.executable, str(BENCH / "smoke_cuda.py"), "--device", "cpu", "--tiny", "--only", "io,flow_head"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    cases = [ln for ln in r.stdout.splitlines() if ln.startswith("CASE ")]
    assert len(cases) == 3 * 3 + 2 + 15 and all(": ok " in c for c in cases)
    assert "CASE flow_head predict_flow2 bf16: ok" in r.stdout
    r = subprocess.run([sys.executable, str(BENCH / "smoke_cuda.py"), "--only", "io,bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown group(s) bogus" in r.stderr


def test_smoke_case_failure_is_one_line(capsys):
    sys.path.insert(0, str(BENCH))
    import smoke_cuda

    s = smoke_cuda.Smoke()
    s.case("bad bound", lambda: (1e-2, 1e-3))
    s.case("nan", lambda: (float("nan"), 1.0))
    s.case("raises", lambda: 1 / 0)
    s.case("fine", lambda: (1e-7, 1e-6))
    lines = capsys.readouterr().out.splitlines()
    assert s.failed == 3 and s.cases == 4
    assert lines[0].startswith("CASE bad bound: FAIL AssertionError: rel err 1.000e-02 > bound")
    assert lines[1].startswith("CASE nan: FAIL") and lines[2].startswith("CASE raises: FAIL ZeroDivisionError")
    assert lines[3] == "CASE fine: ok 1.000e-07 (bound 1.0e-06)"


def test_bench_worker_cpu(tmp_path):
    """One row per candidate in JSON lines; a candidate the device does not have gets an error line."""
    jsonl = tmp_path / "rows.jsonl"
    r = subprocess.run([sys.executable, str(BENCH / "bench_worker.py"), "--batch", "1", "--size", "64x64", "--device", "cpu",
                        "--repeats", "1", "--warmup", "1", "--candidates", "fastflow:fp32,nosuch:fp32", "--jsonl", str(jsonl)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [json.loads(ln) for ln in jsonl.read_text().splitlines()]
    assert [d["candidate"] for d in rows] == ["fastflow:fp32", "nosuch:fp32"]
    assert rows[0]["median_ms"] > 0 and rows[0]["rel_diff"] < 1e-5 and (rows[0]["height"], rows[0]["width"]) == (64, 64)
    assert "error" in rows[1] and "median_ms" not in rows[1]
    r = subprocess.run([sys.executable, str(BENCH / "bench_worker.py"), "--batch", "1", "--size", "64by64", "--candidates",
                        "a:b", "--jsonl", str(jsonl)], capture_output=True, text=True)
    assert r.returncode == 2 and "--size must be HxW" in r.stderr


def test_cuda_marker_selects_exactly_the_gpu_tests():
    """Every test that skips without a GPU carries the `cuda` marker, no other test does, and
    `pytest -m cuda` selects exactly the marked ones (the marking runs before -m deselects)."""
    code = (
        "import json, sys, pytest\n"
        "class P:\n"
        "    def pytest_collection_finish(self, session):\n"
        "        self.items = [(i.nodeid, i.get_closest_marker('cuda') is not None,\n"
        "                       any('GPU' in str(m.kwargs.get('reason', '')) for m in i.iter_markers('skipif')))\n"
        "                      for i in session.items]\n"
        "p, q = P(), P()\n"
        "pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', sys.argv[1]], plugins=[p])\n"
        "pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', '-m', 'cuda', sys.argv[1]], plugins=[q])\n"
        "print('ITEMS ' + json.dumps(p.items))\n"
        "print('SELECTED ' + json.dumps([n for n, _, _ in q.items]))\n")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT / "tests")], capture_output=True, text=True, cwd="/tmp", timeout=300)
    items = json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("ITEMS "))[6:])
    selected = json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("SELECTED "))[9:])
    marked = {n for n, cuda, _ in items if cuda}
    assert len(items) > 500 and marked and set(selected) == marked  # `-m cuda` sees the marker
    assert all(cuda == gpu_skip for _, cuda, gpu_skip in items), [n for n, c, g in items if c != g][:5]
    assert all(n in marked for n, _, _ in items if "test_model_cuda.py::" in n or "[cuda" in n)
    assert not any("[cpu" in n or "-cpu" in n for n in marked)


def test_redo_runs_only_what_the_last_call_did_not_finish(tools, tmp_path, monkeypatch):
    """A second call with --redo on the same machine carries the finished stages over and reruns the
    one that timed out; its record is the whole picture."""
    suite, _ = tools
    monkeypatch.setitem(suite.LIMITS, "sanitizer", (3, 1))
    common = ["--device", "cuda", "--budget", "60", "--sanitizers", "memcheck", "--work", str(tmp_path / "work")]
    hang = _fake_sanitizer(tmp_path, 'if [ ! -e "$MARK" ]; then sleep 300; fi\n'
                                     'echo "sanitize_forward: done"; echo "========= ERROR SUMMARY: 0 errors"')
    monkeypatch.setenv("PATH", hang + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("MARK", str(tmp_path / "fixed"))
    layers = {"status": "passed", "note": "12 layer rows", "result": {"rows": [{"layer": "conv1"}]}}
    _fake_stage(suite, monkeypatch, "layers", lambda s, deadline: ("passed", layers["note"], layers["result"]))

    assert suite.Suite(suite.parse_args([str(tmp_path / "a"), "--stages", "layers,sanitizer", *common])).run() == 1
    assert _record(tmp_path / "a")["stages"]["sanitizer"]["status"] == "timed out"
    (tmp_path / "fixed").touch()
    _fake_stage(suite, monkeypatch, "layers", lambda s, deadline: pytest.fail("layers ran again"))
    assert suite.Suite(suite.parse_args([str(tmp_path / "b"), "--stages", "layers,sanitizer", "--redo", *common])).run() == 0
    rec = _record(tmp_path / "b")
    assert rec["stages"]["layers"]["carried_over"] and rec["layers"] == [{"layer": "conv1"}]
    assert rec["stages"]["sanitizer"]["status"] == "passed" and rec["sanitizer"]["memcheck"] == "clean"
    assert rec["suite"]["redo_of"]


def test_later_stages_keep_their_floor(tools, tmp_path, monkeypatch):
    """A stage's timeout leaves the floors of the stages after it in the budget."""
    suite, _ = tools
    seen = {}

    def fake(name):
        def stage(s, deadline):
            seen[name] = deadline - time.time()
            return "passed", "", {}
        return stage

    for name in ("sanitizer", "layers"):
        _fake_stage(suite, monkeypatch, name, fake(name))
    args = suite.parse_args([str(tmp_path / "o"), "--stages", "sanitizer,layers", "--device", "cuda", "--budget", "100",
                             "--work", str(tmp_path / "work")])
    assert suite.Suite(args).run() == 0
    floor = suite.LIMITS["layers"][1]
    assert seen["sanitizer"] <= 100 - suite.MARGIN - floor + 1 and seen["layers"] >= floor - 1


def test_sigterm_records_the_stage_and_kills_its_processes(tmp_path):
    """`timeout` (or the device tool) terminating the suite: the running stage becomes timed out,
    its process group is gone, the record and archive are written once more."""
    path = _fake_sanitizer(tmp_path, 'echo $$ > "$PIDFILE"; sleep 300')
    out = tmp_path / "out"
    env = dict(os.environ, PATH=path + os.pathsep + os.environ["PATH"], PIDFILE=str(tmp_path / "pid"))
    p = subprocess.Popen([sys.executable, str(BENCH / "suite.py"), str(out), "--stages", "sanitizer", "--device", "cuda",
                          "--budget", "300", "--sanitizers", "memcheck", "--work", str(tmp_path / "work")],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(600):
        if (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip():
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    stdout, _ = p.communicate(timeout=60)
    assert p.returncode == 1 and "terminated" in stdout
    rec = _record(out)
    assert rec["stages"]["sanitizer"]["status"] == "timed out" and "SIGTERM" in rec["stages"]["sanitizer"]["note"]
    assert (out / "suite_logs.tar.gz").exists()
    child = int((tmp_path / "pid").read_text())
    for _ in range(50):  # the fake sanitizer's process is gone (reaped) shortly after
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the stage's process survived the suite")


def test_smoke_through_simt(tmp_path):
    """With the SIMT host runtime in the build, the smoke cases run the CUDA kernels on the CPU."""
    import fastflow
    from fastflow import ops

    if not (fastflow.build_info().get("simt") and hasattr(ops, "simt")):
        r = subprocess.run([sys.executable, str(BENCH / "smoke_cuda.py"), "--simt", "--tiny", "--only", "io"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 2 and "SIMT host runtime" in r.stdout
        pytest.skip("this build has no fastflow._simt")
    r = subprocess.run([sys.executable, str(BENCH / "smoke_cuda.py"), "--simt", "--tiny", "--only", "io"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    cases = [ln for ln in r.stdout.splitlines() if ln.startswith("CASE ")]
    assert len(cases) == 11 and all(c.endswith(")") and " simt: ok " in c for c in cases)


def test_smoke_runs_without_pytest(tmp_path):
    """The GPU machine may lack pytest (no network): smoke_cuda.py still runs its cases."""
    code = ("import builtins, sys\n"
            "real = builtins.__import__\n"
            "def fake(name, *a, **k):\n"
            "    if name.split('.')[0] in ('pytest', '_pytest') and 'pytest' not in sys.modules:\n"
            "        raise ImportError('no pytest here')\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = fake\n"
            f"sys.path.insert(0, {str(BENCH)!r})\n"
            "import smoke_cuda\n"
            "rc = smoke_cuda.main(['--device', 'cpu', '--tiny', '--only', 'io'])\n"
            "print('stub', type(sys.modules['pytest']).__name__)\n"
            "sys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stub _NoPytest" in r.stdout and r.stdout.count(": ok ") == 11


def test_sanitizer_refused_by_the_machine_is_a_skip(tools, tmp_path, monkeypatch):
    """compute-sanitizer refusing the device (gVisor GPU machines) is not a finding about fastflow."""
    suite, _ = tools
    rc, rec = _sanitizer_stage(suite, tmp_path, monkeypatch, 'echo "========= Error: Device not supported"\n'
                               'echo "Traceback: CUDA error 999"; exit 1', "memcheck,racecheck")
    assert rc == 0 and rec["stages"]["sanitizer"]["status"] == "skipped"
    assert rec["sanitizer"]["memcheck"].startswith("not run: compute-sanitizer cannot use this machine's GPU")


def test_op_tests_per_file_and_redo(tools, tmp_path, monkeypatch):
    """Each op-test file's outcome is kept; a --redo call runs only the file that timed out."""
    suite, _ = tools
    calls = []

    class Done:
        def __init__(self, timed_out):
            self.timed_out, self.rc, self.seconds = timed_out, 124 if timed_out else 0, 1.0

    def fake_pytest(s, name, files, deadline, marker="cuda", extra=()):
        f = name[len("op_tests_"):]
        calls.append(f)
        hang = f == "conv_lrelu" and not (tmp_path / "fixed").exists()
        counts = {"passed": 0 if hang else 2, "failed": 0, "skipped": 1, "errors": 0}
        return Done(hang), counts, [], []

    monkeypatch.setattr(suite.stages.tests, "run_pytest", fake_pytest)
    common = ["--stages", "op_tests", "--device", "cuda", "--budget", "100", "--work", str(tmp_path / "work")]
    assert suite.Suite(suite.parse_args([str(tmp_path / "a"), *common])).run() == 1
    rec = _record(tmp_path / "a")
    assert calls == list(suite.stages.tests.OP_TEST_FILES) + ["fuzz"] and rec["stages"]["op_tests"]["status"] == "timed out"
    assert rec["stages"]["op_tests"]["result"]["files"]["conv_lrelu"]["status"] == "timed out"
    assert rec["tests"]["passed"] == 2 * (len(calls) - 1) and rec["tests"]["skipped"] == len(calls)
    calls.clear()
    (tmp_path / "fixed").touch()
    assert suite.Suite(suite.parse_args([str(tmp_path / "b"), "--redo", *common])).run() == 0
    rec = _record(tmp_path / "b")
    assert calls == ["conv_lrelu"] and rec["stages"]["op_tests"]["status"] == "passed"
    assert rec["tests"]["passed"] == 2 * (len(suite.stages.tests.OP_TEST_FILES) + 1)


def test_build_leaves_an_editable_install_alone(tools, tmp_path, monkeypatch):
    """On a developer's machine (fastflow imported from this tree) the build stage installs nothing."""
    suite, _ = tools
    fake = {"file": str(ROOT / "fastflow" / "_C.so"), "mtime": 1.0, "info": {"cuda_compiled": False}}
    monkeypatch.setattr(suite.stages.build, "installed", lambda s: fake)
    monkeypatch.setattr(suite.stages.build, "Proc", lambda *a, **k: pytest.fail("the build stage started a process"))
    args = suite.parse_args([str(tmp_path / "o"), "--stages", "build", "--device", "cuda", "--budget", "100",
                             "--work", str(tmp_path / "work")])
    assert suite.Suite(args).run() == 0
    st = _record(tmp_path / "o")["stages"]["build"]
    assert st["status"] == "skipped" and "installed editable from this tree" in st["note"]
