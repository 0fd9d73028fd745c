"""Two versions of the policy side by side: one evaluation's wall-clock and CPU time.

Both policies are loaded into the same process, each with its own evaluators, and their
evaluations of the same document are interleaved in rounds, so that load on a shared
machine falls on both alike. CPU time counts every process an evaluation runs in (this
one and the regorus worker). Before timing, both policies must give the same answer on
the document (the figures would compare different work otherwise).

    git archive <commit> engine/policies | tar -x -C /tmp/before
    .venv/bin/python benchmarks/policy_ab.py --before /tmp/before/engine/policies \\
        [--size 50] [--stage decision|posture] [--evaluators regorus,opa]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import decide_bench  # noqa: E402

from engine.decide import (  # noqa: E402
    POSTURE_PATH,
    build_bundle,
    embedded_evaluator,
    load_directory,
    read_bundle,
    split_document,
)
from engine.decide.decider import posture_of  # noqa: E402
from engine.decide.evaluators import DECISION_PATH  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other policy folder")
    parser.add_argument("--after", type=Path, default=ROOT / "engine" / "policies")
    parser.add_argument("--size", type=int, default=50, help="matching vulnerabilities")
    parser.add_argument("--stage", choices=("decision", "posture"), default="decision")
    parser.add_argument("--evaluators", default="regorus,opa")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=300)
    args = parser.parse_args()
    if not (args.before / "vigil").is_dir():
        print(f"error: {args.before} holds no vigil policy folder", file=sys.stderr)
        return 2
    posture_doc, decision_doc = split_document(decide_bench.document(args.size))
    path = POSTURE_PATH if args.stage == "posture" else DECISION_PATH
    cases = {}
    for label, root in (("before", args.before), ("after", args.after)):
        policy = read_bundle(label, build_bundle(load_directory(root, ["vigil"])))
        for name in args.evaluators.split(","):
            evaluator = embedded_evaluator(name, policy, timeout=30.0)
            doc = posture_doc
            if args.stage == "decision":
                posture = posture_of(evaluator.evaluate(posture_doc, POSTURE_PATH).value,
                                     digest="sha256:ab")
                doc = {**decision_doc, "posture": posture.summary()}
            cases[(name, label)] = (evaluator, doc)
    for name in args.evaluators.split(","):
        answers = {json.dumps(e.evaluate(d, path).value, sort_keys=True)
                   for (n, _), (e, d) in cases.items() if n == name}
        if len(answers) > 1:
            print(f"error: {name}: the two policies answer differently", file=sys.stderr)
            return 1
    wall: dict[tuple[str, str], list[float]] = {k: [] for k in cases}
    cpu = dict.fromkeys(cases, 0)
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for key, (evaluator, doc) in cases.items():
            peer = decide_bench._peer_pid(evaluator)
            c0 = time.process_time_ns() + decide_bench._process_cpu_ns(peer)
            for _ in range(args.per_round):
                t0 = time.perf_counter_ns()
                evaluator.evaluate(doc, path)
                wall[key].append((time.perf_counter_ns() - t0) / 1000)
            cpu[key] += time.process_time_ns() + decide_bench._process_cpu_ns(peer) - c0
    load.append(os.getloadavg()[0])
    print(f"{'evaluator':>10} {'policy':>7} {'evals':>6} {'p50 µs':>10} {'p99 µs':>10} "
          f"{'cpu µs':>10}   ({args.stage}, {args.size} vulnerabilities)")
    for (name, label), samples in wall.items():
        samples.sort()
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        print(f"{name:>10} {label:>7} {len(samples):>6} {statistics.median(samples):>10.1f} "
              f"{p99:>10.1f} {cpu[(name, label)] / len(samples) / 1000:>10.1f}")
    print(f"load average {load[0]:.2f} at the start, {load[1]:.2f} at the end")
    for evaluator, _ in cases.values():
        evaluator.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
