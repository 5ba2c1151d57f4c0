#!/usr/bin/env python3
"""Mutation testing for the WGSL shaders, which cargo-mutants cannot reach (TESTING.md).

Each mutant changes one token in shaders/*.wgsl (an arithmetic, comparison or logical
operator, a compound assignment, a dropped unary minus, min↔max, floor↔ceil, a float
literal doubled, an unsigned literal plus one); the tests are then run against it:

  * the shaders are included at build time, so cargo rebuilds the crate;
  * `naga_validates_every_generated_variant` runs first: a mutant that naga rejects is
    *unviable* (it could never ship), like a mutant that does not compile for cargo-mutants;
  * then the given tests (default: the GPU and sampling suites): a failure or a timeout is
    *caught*, success is *missed*.

The file is restored after each mutant (also on Ctrl-C). Run it on a committed tree:

  python3 tests/wgsl_mutants.py --list                  # every mutant, numbered
  python3 tests/wgsl_mutants.py --sample 40 --seed 1    # 40 drawn at random
  python3 tests/wgsl_mutants.py --only 12,57            # chosen ones
  python3 tests/wgsl_mutants.py --profile mutants -- --test gpu   # other cargo test args

GPU tests need an adapter (lavapipe: WGPU_BACKEND=vulkan, REALNVP_REQUIRE_GPU=1 so that a
missing adapter fails instead of skipping, which would count every mutant as missed).
Results go to --out (default mutants.out/wgsl): outcomes.json and one log per mutant.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHADERS = [
    "shaders/math.wgsl",
    "shaders/flow.wgsl",
    "shaders/rows.wgsl",
    "shaders/interpreter.wgsl",
    "shaders/interpreter_rows.wgsl",
    "shaders/interpreter_tiles.wgsl",
    "shaders/philox.wgsl",
]

# (name, pattern, replacement function); patterns see only the code part of a line
OPERATORS = [
    ("+ → -", r"(?<=\s)\+(?=\s)", lambda m: "-"),
    ("- → +", r"(?<=\s)-(?=\s)", lambda m: "+"),
    ("* → /", r"(?<=\s)\*(?=\s)", lambda m: "/"),
    ("/ → *", r"(?<=\s)/(?=\s)", lambda m: "*"),
    ("< → <=", r"(?<=\s)<(?=\s)", lambda m: "<="),
    ("<= → <", r"(?<=\s)<=(?=\s)", lambda m: "<"),
    ("> → >=", r"(?<=\s)>(?=\s)", lambda m: ">="),
    (">= → >", r"(?<=\s)>=(?=\s)", lambda m: ">"),
    ("== → !=", r"(?<=\s)==(?=\s)", lambda m: "!="),
    ("!= → ==", r"(?<=\s)!=(?=\s)", lambda m: "=="),
    ("&& → ||", r"(?<=\s)&&(?=\s)", lambda m: "||"),
    ("|| → &&", r"(?<=\s)\|\|(?=\s)", lambda m: "&&"),
    ("+= → -=", r"(?<=\s)\+=(?=\s)", lambda m: "-="),
    ("-= → +=", r"(?<=\s)-=(?=\s)", lambda m: "+="),
    ("*= → /=", r"(?<=\s)\*=(?=\s)", lambda m: "/="),
    ("drop unary -", r"(?<=[(,\s])-(?=[A-Za-z_(])", lambda m: ""),
    ("min → max", r"\bmin\(", lambda m: "max("),
    ("max → min", r"\bmax\(", lambda m: "min("),
    ("floor → ceil", r"\bfloor\(", lambda m: "ceil("),
    ("float × 2", r"(?<![\w.])(\d+\.\d*(?:e[+-]?\d+)?)(?![\w.])", None),
    ("u32 + 1", r"(?<![\w.])(\d+)u\b", None),
]


def replacement(name, m):
    if name == "float × 2":
        value = float(m.group(1))
        return repr(value * 2.0) if value != 0.0 else "1.0"
    if name == "u32 + 1":
        return f"{int(m.group(1)) + 1}u"
    raise AssertionError(name)


def mutants():
    """Every mutant: dict(file, line (1-based), column, operator, original, mutated line)."""
    out = []
    for rel in SHADERS:
        lines = (ROOT / rel).read_text().split("\n")
        for number, line in enumerate(lines, 1):
            code = line.split("//", 1)[0]
            if not code.strip() or code.lstrip().startswith(("const RED", "@group", "@binding")):
                continue
            for name, pattern, fn in OPERATORS:
                for m in re.finditer(pattern, code):
                    new = fn(m) if fn else replacement(name, m)
                    mutated = line[: m.start()] + new + line[m.end():]
                    out.append(dict(file=rel, line=number, column=m.start() + 1, operator=name,
                                    original=line.strip(), mutated=mutated.strip(), text=mutated))
    for k, m in enumerate(out):
        m["id"] = k
    return out


def cargo_test(profile, args, timeout):
    cmd = ["cargo", "test", "--profile", profile] + args
    start = time.time()
    try:
        p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace"), time.time() - start
    except subprocess.TimeoutExpired as e:
        return None, (e.stdout or b"").decode(errors="replace"), time.time() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--sample", type=int, help="run this many mutants drawn at random")
    ap.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    ap.add_argument("--only", help="comma-separated mutant ids")
    ap.add_argument("--profile", default="release", help="cargo profile (default release)")
    ap.add_argument("--timeout", type=float, help="seconds per test run (default: 3× the baseline's, at least 120)")
    ap.add_argument("--out", default="mutants.out/wgsl", help="results directory")
    ap.add_argument("test_args", nargs="*", help="cargo test arguments after -- "
                    "(default: --test gpu --test sample)")
    a = ap.parse_args()
    every = mutants()
    if a.list:
        for m in every:
            print(f"{m['id']:4} {m['file']}:{m['line']}:{m['column']} {m['operator']:14} {m['mutated']}")
        print(f"{len(every)} mutants", file=sys.stderr)
        return 0
    chosen = every
    if a.only:
        chosen = [every[int(k)] for k in a.only.split(",")]
    elif a.sample is not None:
        chosen = sorted(random.Random(a.seed).sample(every, min(a.sample, len(every))), key=lambda m: m["id"])
    tests = a.test_args or ["--test", "gpu", "--test", "sample"]
    if os.environ.get("REALNVP_REQUIRE_GPU") != "1":
        print("warning: REALNVP_REQUIRE_GPU is not 1: GPU tests may skip and mutants look missed", file=sys.stderr)
    # a mutant left behind by an earlier run that was killed would become the baseline
    changed = subprocess.run(["git", "diff", "--quiet", "--", "shaders"], cwd=ROOT).returncode
    if changed:
        sys.exit("shaders/ has uncommitted changes (a mutant left by a killed run?): git checkout shaders/ first")
    # SIGINT (even where a shell started us with it ignored), SIGTERM and SIGHUP end the run
    # like Ctrl-C: the shader is restored before exiting
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    out = ROOT / a.out
    out.mkdir(parents=True, exist_ok=True)

    print(f"baseline ({' '.join(tests)}) …", flush=True)
    rc, log, secs = cargo_test(a.profile, tests, a.timeout or 3600)
    if rc != 0:
        (out / "baseline.log").write_text(log)
        sys.exit(f"the unmutated tree fails its tests (see {out / 'baseline.log'}): fix that first")
    timeout = a.timeout or max(120.0, 3 * secs)
    print(f"baseline passed in {secs:.0f} s; {len(chosen)} mutants of {len(every)}", flush=True)

    results = []
    originals = {}
    try:
        for n, m in enumerate(chosen, 1):
            path = ROOT / m["file"]
            original = originals.setdefault(m["file"], path.read_text())
            lines = original.split("\n")
            lines[m["line"] - 1] = m["text"]
            path.write_text("\n".join(lines))
            try:
                rc, log, secs = cargo_test(a.profile, ["--test", "gpu", "--", "naga_validates_every_generated_variant"], timeout)
                if rc != 0:
                    outcome = "unviable"
                else:
                    rc, log, secs = cargo_test(a.profile, tests, timeout)
                    outcome = "timeout" if rc is None else ("caught" if rc != 0 else "missed")
            finally:
                path.write_text(original)
            (out / f"{m['id']}.log").write_text(log)
            results.append({k: m[k] for k in ("id", "file", "line", "column", "operator", "original", "mutated")}
                           | {"outcome": outcome, "seconds": round(secs)})
            print(f"[{n}/{len(chosen)}] {outcome:8} {m['file']}:{m['line']} {m['operator']}: {m['mutated']}", flush=True)
    except KeyboardInterrupt:
        print("interrupted: the shaders are restored", file=sys.stderr)
    (out / "outcomes.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    counts = {k: sum(r["outcome"] == k for r in results) for k in ("caught", "timeout", "missed", "unviable")}
    print(" ".join(f"{k} {v}" for k, v in counts.items()))
    for r in results:
        if r["outcome"] == "missed":
            print(f"MISSED {r['file']}:{r['line']} {r['operator']}: {r['mutated']}")
    return 1 if counts["missed"] else 0


if __name__ == "__main__":
    sys.exit(main())
