"""Attestation benchmark: Vigil's verifier against Keylime's, in one process, on the same
inputs.

    .venv/bin/python benchmarks/attest_bench.py [--json] [--json-out FILE] [--quiet]
    .venv/bin/python -m benchmarks.attest_bench …          (the same)

Three parts (targets from issue 3, reported as pass/fail, never asserted):

1. **Event log parse + replay** over every binary log in ``../shared/data/tpm/eventlogs``
   that Vigil parses (a log Vigil rejects is listed with its reason, not timed). Both
   sides get the same base64 string of the log (Keylime's verifier receives it so).

   * Vigil: ``engine.attest.eventlog.parse(base64.b64decode(b64)).replay()``: every
     event with every bank's digests, then every bank's PCRs.
   * Keylime 7.14.3: ``keylime.mba.mba.bootlog_parse(b64, bank)`` after
     ``load_imports(skip_custom_policies=True)``, which dispatches to
     ``keylime.mba.elparsing.tpm2_tools_elparser.bootlog_parse``: base64 decode, write
     a temp file, run ``tpm2_eventlog --eventlog-version=2`` (C; parses and replays),
     load its YAML (``yaml.CSafeLoader``), ``tpm_bootlog_enrich.enrich`` (decodes
     device paths and GUIDs through libefivar, UEFI variables, Secure Boot signature
     lists), stringify PCR keys, compute boot aggregates, unescape strings. Keylime
     7.14.3 has no pure-Python event-log parser: the wheel's ``keylime.mba.elparsing``
     holds only that module and ``tpm_bootlog_enrich``. ``bank`` is sha256 where the log
     has it, else its first bank (sha1 for TCG 1.2 logs).
   * Also timed, for reference: the ``tpm2_eventlog`` subprocess alone, through
     Keylime's ``cmd_exec.run`` on a file written once.

   Keylime's PCR values are compared with Vigil's replay on the same bank; a log where
   Keylime's parse fails is reported with its failure and left out of the ratios.
   Target: Vigil's median <= 2 ms on every ~100-event log (90-125 events).

2. **Quote verification** on the real quotes of ``../shared/data/tpm/quotes`` (the cases
   and loader of ``engine/attest/lab.py``) that Keylime's ``checkquote`` accepts.

   * Keylime: ``keylime.tpm.tpm_util.checkquote(ak_pem, nonce, sigblob, quoteblob,
     pcrblob, hash_alg)``: load the PEM AK, verify the signature, unmarshal TPMS_ATTEST,
     compare extraData with the nonce, read the tpm2-tools PCR file, recompute pcrDigest.
   * Vigil, same work (the figure the target uses): ``load_public_key(ak_pem)``, the
     engine's reader of the tpm2-tools PCR file, then ``verify_quote(attest, signature,
     ak, pcrs=..., expected_nonce=...)`` (steps 1-3 of issue 3).
   * Vigil, ``verify_quote`` alone: AK and PCR values prepared once, as a verifier
     holding the enrolled AK and the evidence's PCR map calls it.

   Target: Vigil (same work) at least as fast as ``checkquote`` on every case.

3. **Full appraisal** as ``benchmarks/appraisal_timing.py`` does it: swtpm, AK enrolled
   by MakeCredential/ActivateCredential, a ~100-event log booted into the TPM, a signed
   reference manifest, then ``Verifier.appraise`` timed (quote signature, nonce
   consumption in SQLite, PCR digest, log parse + replay + match, reference match,
   ES256-signed EAR); evidence collection (the TPM's work) is not. Target: p50 <= 3 ms.

Keylime is set up by ``attest_keylime.py`` in a venv of its own (see there). Every figure
is a median (or p50/p90) of ``time.perf_counter`` wall times over repeated runs; the
functions of each comparison are called in alternation, after one untimed warm-up call.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cryptography
from cryptography.hazmat.backends.openssl import backend as openssl_backend

try:  # run as a script (benchmarks/ on sys.path) or as ``python -m benchmarks.attest_bench``
    import attest_keylime
except ImportError:  # pragma: no cover - depends on how the script is started
    from benchmarks import attest_keylime

from engine.attest.errors import AttestError
from engine.attest.eventlog import EventLog, parse
from engine.attest.lab import QUOTE_CASES, load_quote_case
from engine.attest.pcrfile import load_tpm2_tools_pcrs as tpm2_tools_pcrs
from engine.attest.quote import load_public_key, parse_signature, verify_quote

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("VIGIL_SHARED_DATA", ROOT.parent / "shared" / "data"))

EVENTLOGS = SHARED_DATA / "tpm" / "eventlogs"
QUOTES = SHARED_DATA / "tpm" / "quotes"
VERIFIER_CONF = SHARED_DATA / "keylime" / "verifier.conf"
TARGET_LOG_MS = 2.0
TARGET_LOG_EVENTS = (90, 125)
"""A "~100-event log" for the parse target: the real logs with this many events."""
TARGET_APPRAISAL_P50_MS = 3.0


def _log(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


def p90(values: Sequence[float]) -> float:
    """As benchmarks/appraisal_timing.py: the value at index int(0.9 * (n - 1))."""
    ordered = sorted(values)
    return ordered[int(0.9 * (len(ordered) - 1))]


def interleaved(calls: dict[str, tuple[Callable[[], object], int]]) -> dict[str, list[float]]:
    """Time each function ``runs`` times, calling them in turn (one untimed warm-up call
    each first). Returns the wall times in seconds."""
    for fn, _ in calls.values():
        fn()
    gc.collect()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(max(runs for _, runs in calls.values())):
        for name, (fn, runs) in calls.items():
            if i < runs:
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
    return times


def machine_info(keylime: attest_keylime.Keylime | None) -> dict[str, Any]:
    cpu_model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu_model = next((line.split(":", 1)[1].strip() for line in fh
                              if line.startswith("model name")), None)
    except OSError:
        pass
    try:
        loadavg: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        loadavg = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "cryptography": cryptography.__version__,
        "openssl": openssl_backend.openssl_version_text(),
        "keylime": keylime.version if keylime else None,
        "keylime_site_packages": str(keylime.site_packages) if keylime else None,
        "keylime_setup": keylime.setup if keylime else None,
        "keylime_pip_extras": keylime.pip_extras if keylime else None,
        "tpm2_tools": keylime.tpm2_tools if keylime else None,
        "keylime_yaml_loader": keylime.yaml_loader if keylime else None,
        "loadavg_start": loadavg,
    }


# ---------------------------------------------------------------------------------------
# 1. Event logs


def _keylime_pcr_diff(keylime_pcrs: dict[str, int], log: EventLog, bank: str,
                      path: Path) -> list[dict[str, Any]]:
    """The PCRs where Keylime's (tpm2_eventlog's) values differ from Vigil's replay, with
    the value the machine's TPM reported where ``<log>.expected-pcrs.json`` has it."""
    size = next(a.digest_size for a in log.algorithms if a.name == bank)
    vigil = log.replay_bank(bank)
    expected_file = path.with_name(path.name + ".expected-pcrs.json")
    quoted: dict[str, str] = {}
    if expected_file.is_file():
        quoted = json.loads(expected_file.read_text()).get("pcrs", {}).get(bank, {})
    diffs = []
    for key, value in sorted(keylime_pcrs.items(), key=lambda kv: int(kv[0])):
        theirs = f"{value:0{2 * size}x}" if isinstance(value, int) else str(value)
        ours = vigil.get(int(key))
        if ours is None or ours.hex() != theirs:
            tpm = quoted.get(str(int(key)))
            diffs.append({"pcr": int(key), "keylime": theirs,
                          "vigil": ours.hex() if ours is not None else None,
                          "tpm": tpm.lower() if tpm else None})
    return diffs


def _describe_diff(bank: str, diffs: list[dict[str, Any]]) -> str:
    if not diffs:
        return f"{bank} agree"
    parts = []
    for d in diffs:
        if d["tpm"] is None:
            parts.append(f"{d['pcr']} (no TPM value)")
        else:
            right = [side for side in ("vigil", "keylime") if d[side] == d["tpm"]]
            parts.append(f"{d['pcr']} (TPM = {'+'.join(right) or 'neither'})")
    return f"{bank} differ: PCR " + ", ".join(parts)


def _keylime_failure(failure: Any) -> str | None:
    events = getattr(failure, "events", None) or []
    if not events:
        return None
    parts = []
    for event in events:
        context = getattr(event, "context", "")
        parts.append(f"{getattr(event, 'event_id', '?')}: {str(context)[:300]}")
    return "; ".join(parts)


def bench_eventlogs(keylime: attest_keylime.Keylime | None, vigil_runs: int, keylime_runs: int,
                    quiet: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    scratch = Path(tempfile.mkdtemp(prefix="vigil-attest-bench-"))
    try:
        for path in sorted(EVENTLOGS.glob("*/*.bin")):
            name = str(path.relative_to(EVENTLOGS))
            data = path.read_bytes()
            try:
                log = parse(data)
                log.replay()
            except AttestError as exc:
                rejected.append({"log": name, "reason": str(exc)})
                continue
            bank = "sha256" if "sha256" in log.banks else log.banks[0]
            b64 = base64.b64encode(data).decode("ascii")
            row: dict[str, Any] = {"log": name, "events": len(log.events), "bytes": len(data),
                                   "banks": list(log.banks), "keylime_bank": bank}

            def vigil_call(b64: str = b64) -> object:
                return parse(base64.b64decode(b64)).replay()

            calls: dict[str, tuple[Callable[[], object], int]] = {"vigil": (vigil_call,
                                                                            vigil_runs)}
            if keylime is not None:
                try:
                    pcrs, _aggregates, _parsed, failure = keylime.mba.bootlog_parse(b64, bank)
                    reason = _keylime_failure(failure)
                except Exception as exc:  # Keylime's crash is the finding
                    cause = exc.__cause__ or exc
                    pcrs, reason = {}, (f"raises {type(exc).__name__} (from "
                                        f"{type(cause).__name__}: {cause})")
                if reason is None and not pcrs:
                    reason = "no PCR values"
                if reason is None:
                    row["keylime_pcr_diff"] = _keylime_pcr_diff(pcrs, log, bank, path)
                    copy = scratch / path.name
                    copy.write_bytes(data)
                    command = ["tpm2_eventlog", "--eventlog-version=2", str(copy)]

                    def keylime_call(b64: str = b64, bank: str = bank) -> object:
                        return keylime.mba.bootlog_parse(b64, bank)

                    def subprocess_call(command: list[str] = command) -> object:
                        return keylime.cmd_exec.run(cmd=command, raiseOnError=False)

                    calls["keylime"] = (keylime_call, keylime_runs)
                    calls["tpm2_eventlog"] = (subprocess_call, keylime_runs)
                else:
                    row["keylime_failure"] = reason
            _log(quiet, f"  {name} ({row['events']} events) …")
            times = interleaved(calls)
            row["vigil_ms"] = ms(statistics.median(times["vigil"]))
            row["vigil_runs"] = len(times["vigil"])
            if "keylime" in times:
                row["keylime_ms"] = ms(statistics.median(times["keylime"]))
                row["tpm2_eventlog_ms"] = ms(statistics.median(times["tpm2_eventlog"]))
                row["keylime_runs"] = len(times["keylime"])
                row["ratio"] = round(row["keylime_ms"] / row["vigil_ms"], 1)
            rows.append(row)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    low, high = TARGET_LOG_EVENTS
    around_100 = [r for r in rows if low <= r["events"] <= high]
    worst = max(around_100, key=lambda r: r["vigil_ms"]) if around_100 else None
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    return {
        "logs": rows,
        "rejected_by_vigil": rejected,
        "ratio_summary": {
            "compared_logs": len(ratios),
            "min": min(ratios) if ratios else None,
            "median": round(statistics.median(ratios), 1) if ratios else None,
            "geomean": round(math.exp(statistics.fmean(math.log(r) for r in ratios)), 1)
            if ratios else None,
            "max": max(ratios) if ratios else None,
        },
        "target": {
            "what": f"Vigil parse+replay median <= {TARGET_LOG_MS} ms on every real log of "
                    f"{low}-{high} events",
            "logs": [r["log"] for r in around_100],
            "worst_log": worst["log"] if worst else None,
            "worst_ms": worst["vigil_ms"] if worst else None,
            "pass": worst is not None and worst["vigil_ms"] <= TARGET_LOG_MS,
        },
    }


# ---------------------------------------------------------------------------------------
# 2. Quotes


def _keylime_nonce(nonce: bytes) -> str | bytes:
    """Keylime's verifier passes its (printable ASCII) nonce as str; other nonces as the
    raw bytes, which ``checkquote`` also compares with extraData."""
    if nonce and all(0x21 <= b < 0x7F for b in nonce):
        return nonce.decode("ascii")
    return nonce


def bench_quotes(keylime: attest_keylime.Keylime | None, runs: int, quiet: bool
                 ) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for case in QUOTE_CASES:
        loaded = load_quote_case(SHARED_DATA, case)
        pem_name = next((n for n in case.aks if n.endswith(".pem")), None)
        if pem_name is None:
            continue
        pem = loaded.aks[pem_name]
        pcrblob = (QUOTES / case.dir / case.pcr_file).read_bytes()
        attest, sig, nonce = loaded.attest, loaded.signature, loaded.nonce
        bank = parse_signature(sig).hash_alg.bank
        ak = load_public_key(pem)
        pcrs = tpm2_tools_pcrs(pcrblob)
        quoted = sum(len(v) for v in pcrs.values())
        row: dict[str, Any] = {"case": case.id, "hash": bank, "pcr_banks": sorted(pcrs),
                               "pcrs_quoted": quoted,
                               "key": f"RSA-{ak.key.key_size}"
                               if hasattr(ak.key, "key_size") else type(ak.key).__name__}

        def vigil_same_work(pem: bytes = pem, pcrblob: bytes = pcrblob, attest: bytes = attest,
                            sig: bytes = sig, nonce: bytes = nonce) -> object:
            return verify_quote(attest, sig, load_public_key(pem),
                                pcrs=tpm2_tools_pcrs(pcrblob), expected_nonce=nonce)

        def vigil_core(ak: Any = ak, pcrs: Any = pcrs, attest: bytes = attest,
                       sig: bytes = sig, nonce: bytes = nonce) -> object:
            return verify_quote(attest, sig, ak, pcrs=pcrs, expected_nonce=nonce)

        calls: dict[str, tuple[Callable[[], object], int]] = {
            "vigil_same_work": (vigil_same_work, runs), "vigil_verify_quote": (vigil_core, runs)}
        if keylime is not None:
            knonce = _keylime_nonce(nonce)

            def keylime_call(pem: bytes = pem, knonce: str | bytes = knonce, sig: bytes = sig,
                             attest: bytes = attest, pcrblob: bytes = pcrblob,
                             bank: str = bank) -> object:
                return keylime.tpm_util.checkquote(pem, knonce, sig, attest, pcrblob, bank)

            try:
                keylime_call()
            except Exception as exc:  # Keylime's refusal is the finding
                row["keylime_failure"] = f"{type(exc).__name__}: {exc}"[:300]
                if sorted(pcrs) != [bank]:
                    row["keylime_failure"] += (
                        f" (checkquote reads the PCR bank named by the signature's hash, "
                        f"{bank}; this quote covers {', '.join(sorted(pcrs))})")
            else:
                calls["keylime"] = (keylime_call, runs)
        _log(quiet, f"  {case.id} …")
        times = interleaved(calls)
        for name in calls:
            row[f"{name}_ms"] = ms(statistics.median(times[name]))
        if "keylime" in times:
            row["ratio_same_work"] = round(row["keylime_ms"] / row["vigil_same_work_ms"], 2)
            row["ratio_verify_quote"] = round(row["keylime_ms"] / row["vigil_verify_quote_ms"],
                                              2)
        row["runs"] = runs
        rows.append(row)
    compared = [r for r in rows if "keylime_ms" in r]
    keylime_cases = [r for r in compared if r["case"].startswith("keylime/")]
    return {
        "cases": rows,
        "target": {
            "what": "Vigil (same work: PEM load + PCR file + verify_quote) median <= "
                    "Keylime checkquote median, on every case both verify",
            "compared_cases": len(compared),
            "keylime_own_cases": len(keylime_cases),
            "worst_ratio": min((r["ratio_same_work"] for r in compared), default=None),
            "pass": None if not compared else bool(keylime_cases) and all(
                r["vigil_same_work_ms"] <= r["keylime_ms"] for r in compared),
            "verify_quote_alone_worst_ratio": min(
                (r["ratio_verify_quote"] for r in compared), default=None),
            "pass_verify_quote_alone": None if not compared else bool(keylime_cases) and all(
                r["vigil_verify_quote_ms"] <= r["keylime_ms"] for r in compared),
        },
    }


# ---------------------------------------------------------------------------------------
# 3. Full appraisal


def bench_appraisal(runs: int, events: int, quiet: bool) -> dict[str, Any]:
    try:
        from engine.attest.lab import prepare_appraisals
    except ImportError as exc:
        return {"skipped": f"cannot import the attestation lab: {exc}"}
    for tool in ("swtpm", "swtpm_setup", "swtpm_ioctl"):
        if shutil.which(tool) is None:
            return {"skipped": f"{tool} is not installed (Debian swtpm, swtpm-tools)"}
    _log(quiet, f"  swtpm: enrolling an AK and collecting {runs} evidences …")
    with tempfile.TemporaryDirectory(prefix="vigil-attest-bench-") as folder:
        site, evidences, log_path = prepare_appraisals(Path(folder), runs, events)
        n_events = len(parse(log_path.read_bytes()).events)
        _log(quiet, f"  appraising {runs} evidences …")
        gc.collect()
        walls: list[float] = []
        steps: list[dict[str, float]] = []
        statuses: set[str] = set()
        for evidence in evidences:
            started = time.perf_counter()
            appraisal = site.verifier.appraise(evidence)
            walls.append(time.perf_counter() - started)
            statuses.add(appraisal.result.status)
            steps.append(appraisal.timings)
        site.verifier.close()
    per_step = {step: {"p50_ms": ms(statistics.median([t[step] for t in steps])),
                       "p90_ms": ms(p90([t[step] for t in steps])),
                       "max_ms": ms(max(t[step] for t in steps))} for step in steps[0]}
    p50 = ms(statistics.median(walls))
    return {
        "runs": runs,
        "events": n_events,
        "statuses": sorted(statuses),
        "p50_ms": p50,
        "p90_ms": ms(p90(walls)),
        "max_ms": ms(max(walls)),
        "steps": per_step,
        "setup": "swtpm (libtpms), RSA-2048 AK enrolled by MakeCredential/ActivateCredential, "
                 "sha1+sha256+sha384 x 24 PCRs quoted, 1 signed manifest",
        "target": {"what": f"full appraisal p50 <= {TARGET_APPRAISAL_P50_MS} ms",
                   "pass": p50 <= TARGET_APPRAISAL_P50_MS and statuses == {"affirming"}},
    }


# ---------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    keylime = None
    keylime_error = None
    if not args.no_keylime:
        _log(args.quiet, "setting up Keylime …")
        try:
            keylime = attest_keylime.load(venv=args.keylime_venv, verifier_conf=VERIFIER_CONF,
                                          allow_apt=not args.no_apt, quiet=args.quiet)
        except attest_keylime.KeylimeUnavailable as exc:
            keylime_error = str(exc)
            _log(args.quiet, f"Keylime unavailable, Vigil alone: {exc}")
    result: dict[str, Any] = {"machine": machine_info(keylime), "keylime_error": keylime_error}
    _log(args.quiet, "1. event logs …")
    result["eventlogs"] = bench_eventlogs(keylime, args.log_runs, args.keylime_log_runs,
                                          args.quiet)
    _log(args.quiet, "2. quotes …")
    result["quotes"] = bench_quotes(keylime, args.quote_runs, args.quiet)
    if args.skip_appraisal:
        result["appraisal"] = {"skipped": "--skip-appraisal"}
    else:
        _log(args.quiet, "3. full appraisal …")
        result["appraisal"] = bench_appraisal(args.appraisal_runs, args.appraisal_events,
                                              args.quiet)
    result["machine"]["loadavg_end"] = machine_info(None)["loadavg_start"]
    return result


def _verdict(ok: bool | None) -> str:
    return "n/a (Keylime not run)" if ok is None else "PASS" if ok else "FAIL"


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    out = [f"machine: {m['cpu_count']} CPUs ({m['cpu_model']}), {m['platform']}",
           f"Python {m['python']}, cryptography {m['cryptography']} ({m['openssl']}), "
           f"Keylime {m['keylime']} (YAML: {m['keylime_yaml_loader']}), "
           f"tpm2-tools {m['tpm2_tools']}; "
           f"load {m['loadavg_start']} -> {m['loadavg_end']}"]
    if result["keylime_error"]:
        out.append(f"Keylime NOT run: {result['keylime_error']}")
    elif m["keylime_setup"]:
        out.append(f"Keylime setup this run: {'; '.join(m['keylime_setup'])}")
    ev = result["eventlogs"]
    out += ["", "1. event log parse + replay, median ms (Vigil: parse(b64decode).replay(); "
            "Keylime: mba.bootlog_parse)",
            f"  {'log':<58} {'ev':>4} {'Vigil':>7} {'Keylime':>8} {'(tpm2_ev)':>9} "
            f"{'ratio':>6}  PCRs vs Vigil"]
    for r in ev["logs"]:
        if "keylime_ms" in r:
            agree = _describe_diff(r["keylime_bank"], r["keylime_pcr_diff"])
            out.append(f"  {r['log']:<58} {r['events']:>4} {r['vigil_ms']:>7.3f} "
                       f"{r['keylime_ms']:>8.2f} {r['tpm2_eventlog_ms']:>9.2f} "
                       f"{r['ratio']:>5.0f}x  {agree}")
        else:
            why = r.get("keylime_failure", "Keylime not run")
            out.append(f"  {r['log']:<58} {r['events']:>4} {r['vigil_ms']:>7.3f} "
                       f"{'—':>8} {'—':>9} {'—':>6}  Keylime fails: {why[:90]}")
    for r in ev["rejected_by_vigil"]:
        out.append(f"  {r['log']:<58} rejected by Vigil (not timed): {r['reason'][:80]}")
    s = ev["ratio_summary"]
    out.append(f"  Keylime/Vigil over {s['compared_logs']} logs: min {s['min']}x, median "
               f"{s['median']}x, geomean {s['geomean']}x, max {s['max']}x")
    t = ev["target"]
    out.append(f"  target: {t['what']}: worst {t['worst_ms']} ms ({t['worst_log']}) "
               f"-> {_verdict(t['pass'])}")
    q = result["quotes"]
    out += ["", "2. quote verification, median ms",
            f"  {'case':<42} {'sig':>6} {'bank':>6} {'PCRs':>4} {'Vigil same':>10} "
            f"{'verify_q':>9} {'checkquote':>10} {'ratio':>6}"]
    for r in q["cases"]:
        if "keylime_ms" in r:
            tail = f"{r['keylime_ms']:>10.3f} {r['ratio_same_work']:>5.2f}x"
        else:
            tail = f"{'—':>10} {'—':>6}  Keylime: {r.get('keylime_failure', 'not run')[:70]}"
        out.append(f"  {r['case']:<42} {r['hash']:>6} {'+'.join(r['pcr_banks']):>6} "
                   f"{r['pcrs_quoted']:>4} "
                   f"{r['vigil_same_work_ms']:>10.3f} {r['vigil_verify_quote_ms']:>9.3f} {tail}")
    t = q["target"]
    out.append("  (ratio = checkquote / Vigil same work; verify_q = verify_quote alone, AK "
               "and PCR map prepared once)")
    out.append(f"  target: {t['what']}: {t['compared_cases']} cases, worst ratio "
               f"{t['worst_ratio'] or '—'}x -> {_verdict(t['pass'])}")
    out.append(f"  (verify_quote alone vs checkquote: worst ratio "
               f"{t['verify_quote_alone_worst_ratio'] or '—'}x -> "
               f"{_verdict(t['pass_verify_quote_alone'])})")
    a = result["appraisal"]
    out += ["", "3. full appraisal (Verifier.appraise)"]
    if "skipped" in a:
        out.append(f"  skipped: {a['skipped']}")
    else:
        out.append(f"  {a['runs']} runs, {a['events']}-event log, {a['setup']}; "
                   f"results {a['statuses']}")
        out.append(f"  {'total (wall)':<22} p50 {a['p50_ms']:7.3f} ms   p90 {a['p90_ms']:7.3f} ms"
                   f"   max {a['max_ms']:7.3f} ms")
        for step, v in a["steps"].items():
            out.append(f"  {step:<22} p50 {v['p50_ms']:7.3f} ms   p90 {v['p90_ms']:7.3f} ms"
                       f"   max {v['max_ms']:7.3f} ms")
        out.append(f"  target: {a['target']['what']} -> {_verdict(a['target']['pass'])}")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-runs", type=int, default=201,
                        help="Vigil parse+replay runs per log")
    parser.add_argument("--keylime-log-runs", type=int, default=21,
                        help="Keylime bootlog_parse (and tpm2_eventlog) runs per log")
    parser.add_argument("--quote-runs", type=int, default=501, help="runs per quote and side")
    parser.add_argument("--appraisal-runs", type=int, default=200)
    parser.add_argument("--appraisal-events", type=int, default=100)
    parser.add_argument("--skip-appraisal", action="store_true")
    parser.add_argument("--no-keylime", action="store_true", help="time Vigil alone")
    parser.add_argument("--keylime-venv", type=Path, default=None,
                        help=f"Keylime's venv (default {attest_keylime.default_venv()}); "
                             "created when missing")
    parser.add_argument("--no-apt", action="store_true",
                        help="never apt-get install tpm2-tools / libefivar1")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--json-out", type=Path, default=None, metavar="FILE",
                        help="also write the JSON figures to FILE")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if min(args.log_runs, args.keylime_log_runs, args.quote_runs, args.appraisal_runs) < 1:
        parser.error("run counts must be positive")
    if not EVENTLOGS.is_dir():
        parser.error(f"no event logs at {EVENTLOGS} (set VIGIL_SHARED_DATA)")
    result = run(args)
    text = json.dumps(result, indent=2) + "\n"
    if args.json_out:
        args.json_out.write_text(text, encoding="utf-8")
    sys.stdout.write(text if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
