#!/usr/bin/env python3
"""A small mutation tester for machines where `cargo mutants` is not at hand.

It makes the mutants `cargo mutants` makes most (replace a binary operator,
drop a `!`, replace a function body with a default value), applies each one
to a scratch copy of the repository, and runs the test tiers in order; a
mutant is *caught* by the first tier that fails, *missed* if every tier
passes, *unviable* if it does not build. The scratch copy keeps its own
`target/`, so the working tree is never touched.

    scripts/mutants.py --files core/src/connection.rs core/src/transport.rs \
        --tier "cargo test -p echo-core --lib" --tier "cargo test --workspace"

`--sample N --seed S` tests a reproducible random sample; `--only FILE`
tests the mutants FILE lists (the survivors of an earlier run, say);
`--list` prints the mutants without running them. Results go to standard output as one
line per mutant and a summary; `--out FILE` also writes them as JSON, after
every mutant, and a later run of the same commit and tiers with the same
`--out` resumes where it stopped. For the simulation, `SIM_FAIL_FAST=1` in a
tier's command stops at the first failing case, unshrunk.
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

BINARY = [
    ("==", "!="), ("!=", "=="), ("<=", ">"), (">=", "<"),
    ("&&", "||"), ("||", "&&"), (" < ", " <= "), (" > ", " >= "),
    (" + ", " - "), (" - ", " + "), ("+=", "-="), ("-=", "+="),
]
DEFAULTS = {"()": "", "bool": None, "usize": "0", "u64": "0"}


def code_lines(text):
    """Line numbers (0-based) that are code: not comments, attributes,
    tests or logging."""
    lines = text.split("\n")
    skip_from = None
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            skip_from = i
            break
    for i, line in enumerate(lines):
        s = line.strip()
        if skip_from is not None and i >= skip_from:
            break
        if not s or s.startswith("//") or s.startswith("#[") or "tracing::" in s:
            continue
        if s.startswith("use ") or s.startswith("pub use ") or s.startswith("mod "):
            continue
        yield i, line


def fn_bodies(text):
    """(start, end, return type, name) of each fn body: the span between its
    braces."""
    for m in re.finditer(r"\bfn\s+(\w+)[^{;]*?(?:->\s*([^{]+?))?\s*(?:where[^{]*)?\{", text):
        name, ret = m.group(1), (m.group(2) or "()").strip()
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        yield m.end(), i - 1, ret, name


def mutants(path, text):
    out = []
    for i, line in code_lines(text):
        for a, b in BINARY:
            start = 0
            while (j := line.find(a, start)) >= 0:
                start = j + len(a)
                if a in ("<=", ">=") and line[j - 1:j] in "=<>-":
                    continue
                if a in (" < ", " > ") and ("->" in line[j - 1:j + 3]):
                    continue
                mutated = line[:j] + b + line[j + len(a):]
                out.append((path, i, line, mutated, f"replace {a.strip()} with {b.strip()}"))
        for m in re.finditer(r"(?<![!=])!(?!=)(?=[\w(&*])", line):
            j = m.start()
            if line[:j].rstrip().endswith(("macro_rules", "assert", "panic", "unreachable")):
                continue
            mutated = line[:j] + line[j + 1:]
            out.append((path, i, line, mutated, "delete !"))
    lines = text.split("\n")
    for start, end, ret, name in fn_bodies(text):
        if name in ("fmt", "new", "default") or start >= end:
            continue
        line_no = text.count("\n", 0, start)
        if any(l.startswith("#[cfg(test)]") for l in lines[:line_no]):
            continue
        replacements = []
        if ret == "()":
            replacements = ["()"]
        elif ret == "bool":
            replacements = ["true", "false"]
        elif ret.startswith("Option<"):
            replacements = ["None"]
        elif ret in ("usize", "u64"):
            replacements = ["0", "1"]
        for r in replacements:
            out.append((path, None, (start, end), r, f"replace {name} -> {ret} with {r}"))
    return out


def apply(text, m):
    path, i, orig, mutated, _ = m
    if i is None:
        start, end = orig
        body = "\n" + mutated + "\n" if mutated != "()" else "\n"
        return text[:start] + body + text[end:]
    lines = text.split("\n")
    assert lines[i] == orig
    lines[i] = mutated
    return "\n".join(lines)


def describe(m):
    path, i, orig, mutated, what = m
    where = f"{path}:{i + 1}" if i is not None else f"{path}"
    return f"{where}: {what}"


def moved(description, old_rev, scratch, repo):
    """`description` (path:line: what) of commit `old_rev`, with its line
    number where the same line of code is now in `scratch`: the nearest
    line with the same text. Unchanged when it names no line or the line is
    gone (it then matches no mutant, and the run says how many it found)."""
    m = re.match(r"([^:]+):(\d+): (.*)", description)
    if not m:
        return description
    path, line, what = m.group(1), int(m.group(2)), m.group(3)
    try:
        old = subprocess.check_output(["git", "show", f"{old_rev}:{path}"], cwd=repo,
                                      text=True).split("\n")
    except subprocess.CalledProcessError:
        return description
    text = old[line - 1]
    new = open(os.path.join(scratch, path)).read().split("\n")
    same = [i + 1 for i, l in enumerate(new) if l == text]
    if not same:
        print(f"gone since {old_rev}: {description}", flush=True)
        return description
    return f"{path}:{min(same, key=lambda n: abs(n - line))}: {what}"


def file_lines(repo, rev, path, cache={}):
    """The lines of `path` at `rev`; none where it does not exist there (a
    file since split or moved: its mutants are named with `--same`)."""
    if (rev, path) not in cache:
        try:
            cache[rev, path] = subprocess.check_output(
                ["git", "show", f"{rev}:{path}"], cwd=repo, text=True,
                stderr=subprocess.DEVNULL).split("\n")
        except subprocess.CalledProcessError:
            cache[rev, path] = []
    return cache[rev, path]


def combine(repo, run_file, rerun_files, same=()):
    base = json.load(open(run_file))
    # A line rewritten since the base run cannot be found again by its text:
    # `--same OLD NEW` names it in the reruns.
    aliases = dict(same)
    reruns = [json.load(open(f)) for f in rerun_files]
    by_rerun = []
    for rerun in reruns:
        verdicts = {}
        for r in rerun["results"]:
            verdicts.setdefault(r["mutant"], []).append(r)
        by_rerun.append((rerun["rev"], verdicts))

    def rank(r):  # lower is better caught
        return int(str(r["tier"]).split()[0]) if r["verdict"] == "caught" else 99

    viable = [r for r in base["results"] if r["verdict"] != "unviable"]
    final = []
    for r in viable:
        best, where = r, base["rev"][:7]
        m = re.match(r"([^:]+):(\d+): (.*)", r["mutant"])
        for rev, verdicts in by_rerun:
            name = aliases.get(r["mutant"], r["mutant"])
            if m and r["mutant"] not in aliases:
                text = file_lines(repo, base["rev"], m.group(1))[int(m.group(2)) - 1]
                now = file_lines(repo, rev, m.group(1))
                same = [i + 1 for i, l in enumerate(now) if l == text]
                if not same:
                    continue
                line = min(same, key=lambda n: abs(n - int(m.group(2))))
                name = f"{m.group(1)}:{line}: {m.group(3)}"
            for v in verdicts.get(name, []):
                if rank(v) < rank(best):
                    best, where = v, rev[:7]
        final.append((r, best, where))
    n = len(final)
    sim = sum(1 for _, b, _ in final if rank(b) == 1)
    every = sum(1 for _, b, _ in final if rank(b) < 99)
    print(f"{len(base['results'])} judged at {base['rev'][:7]}, {n} viable, "
          f"{len(rerun_files)} rerun file(s) folded in")
    print(f"simulation alone: {sim} of {n} ({100.0 * sim / n:.1f} %)")
    print(f"all tiers: {every} of {n} ({100.0 * every / n:.1f} %)")
    for r, b, where in final:
        if rank(b) != 1:
            first = r["tier"] if r["verdict"] == "caught" else "-"
            now = b["tier"] if b["verdict"] == "caught" else "missed"
            print(f"  tier {first} -> {now} ({where}): {r['mutant']}")


def run(cmd, cwd, timeout):
    env = dict(os.environ, CARGO_TERM_COLOR="never")
    try:
        p = subprocess.run(cmd, shell=True, cwd=cwd, env=env, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired:
        return "timeout", ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", nargs="+")
    ap.add_argument("--tier", action="append",
                    help="a test command; tiers run in order until one fails")
    ap.add_argument("--scratch", default="/tmp/echo-mutants")
    ap.add_argument("--sample", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shuffle", action="store_true",
                    help="test every mutant in an order drawn from --seed, so that a run "
                    "stopped early is a uniform sample")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--only", help="a file of mutants (as printed, one per line, "
                    "`MISSED ` prefixes allowed) to test instead: e.g. the survivors "
                    "of a run with a smaller suite")
    ap.add_argument("--only-from", metavar="REV",
                    help="the --only list names lines of REV: each is found again by "
                    "its text in the commit being mutated (the survivors of an "
                    "earlier commit, rerun on today's tree)")
    ap.add_argument("--out")
    ap.add_argument("--rev", default="HEAD", help="the commit to mutate (default HEAD)")
    ap.add_argument("--combine", metavar="RUN.json",
                    help="print the scores of a saved run with the verdicts of later "
                    "reruns of its survivors (--rerun, each saved by --out) folded in: "
                    "a mutant counts as caught by the earliest tier any run caught it with")
    ap.add_argument("--rerun", action="append", default=[], metavar="RERUN.json")
    ap.add_argument("--same", action="append", default=[], nargs=2, metavar=("OLD", "NEW"),
                    help="with --combine: the base run's mutant OLD is NEW in the reruns "
                    "(its line was rewritten, so its text cannot find it)")
    args = ap.parse_args()
    repo = subprocess.check_output(["git", "rev-parse", "--show-toplevel"], text=True).strip()
    if args.combine:
        combine(repo, args.combine, args.rerun, args.same)
        return
    if not args.files or not (args.tier or args.list):
        ap.error("--files and --tier are needed (--tier not with --list; neither with --combine)")
    rev = subprocess.check_output(["git", "rev-parse", args.rev], cwd=repo, text=True).strip()
    # A scratch copy of the commit plus any ignored peers venv.
    if not os.path.isdir(args.scratch):
        subprocess.check_call(["git", "worktree", "add", "--detach", args.scratch, rev], cwd=repo)
    else:
        subprocess.check_call(["git", "checkout", "--detach", "-f", rev], cwd=args.scratch)
    all_mutants = []
    for f in args.files:
        text = open(os.path.join(args.scratch, f)).read()
        all_mutants += mutants(f, text)
    if args.only:
        wanted = {line.strip().removeprefix("MISSED ").strip()
                  for line in open(args.only) if line.strip()}
        if args.only_from:
            wanted = {moved(w, args.only_from, args.scratch, repo) for w in wanted}
        all_mutants = [m for m in all_mutants if describe(m) in wanted]
    if args.sample and args.sample < len(all_mutants):
        all_mutants = random.Random(args.seed).sample(all_mutants, args.sample)
    elif args.shuffle:
        random.Random(args.seed).shuffle(all_mutants)
    if args.list:
        for m in all_mutants:
            print(describe(m))
        print(f"{len(all_mutants)} mutants")
        return
    for extra in (".peers-venv",):
        src, dst = os.path.join(repo, extra), os.path.join(args.scratch, extra)
        if os.path.isdir(src) and not os.path.exists(dst):
            os.symlink(src, dst)
    t0 = time.time()
    # The baseline may build the scratch tree from cold: give it an hour.
    rc, out = run(" && ".join(args.tier), args.scratch, max(args.timeout * 2, 3600))
    if rc != 0:
        print(out[-3000:])
        sys.exit("the unmutated tree fails its own tiers")
    print(f"baseline passes ({time.time() - t0:.0f} s); {len(all_mutants)} mutants", flush=True)
    # With --out, results are saved after every mutant, and a run of the
    # same commit and tiers picks up where an earlier one stopped.
    key = {"rev": rev, "tiers": args.tier}
    results = []
    if args.out and os.path.exists(args.out):
        saved = json.load(open(args.out))
        if {k: saved.get(k) for k in key} == key:
            results = saved["results"]
            print(f"resuming: {len(results)} mutants already judged", flush=True)
    done = {r["id"] for r in results if "id" in r}
    for n, m in enumerate(all_mutants, 1):
        ident = f"{n}: {describe(m)}"
        if ident in done:
            continue
        path = os.path.join(args.scratch, m[0])
        original = open(path).read()
        open(path, "w").write(apply(original, m))
        verdict, tier = "missed", None
        t = time.time()
        try:
            for k, cmd in enumerate(args.tier):
                rc, out = run(cmd, args.scratch, args.timeout)
                if rc == 0:
                    continue
                if rc != "timeout" and "could not compile" in out:
                    verdict = "unviable"
                elif rc == "timeout":
                    verdict, tier = "caught", f"{k + 1} (timeout)"
                else:
                    verdict, tier = "caught", k + 1
                break
        finally:
            open(path, "w").write(original)
        results.append({"id": ident, "mutant": describe(m), "verdict": verdict, "tier": tier,
                        "seconds": round(time.time() - t)})
        print(f"[{n}/{len(all_mutants)}] {verdict:8} tier={tier} {time.time() - t:.0f}s  {describe(m)}", flush=True)
        if args.out:
            save(args.out, key, results)
    viable = [r for r in results if r["verdict"] != "unviable"]
    caught = [r for r in viable if r["verdict"] == "caught"]
    score = 100.0 * len(caught) / len(viable) if viable else 0.0
    print(f"\n{len(caught)} of {len(viable)} viable mutants caught ({score:.1f} %), "
          f"{len(results) - len(viable)} unviable")
    for r in viable:
        if r["verdict"] == "missed":
            print(f"MISSED {r['mutant']}")
    if args.out:
        save(args.out, key, results)


def save(path, key, results):
    viable = [r for r in results if r["verdict"] != "unviable"]
    caught = [r for r in viable if r["verdict"] == "caught"]
    tmp = path + ".tmp"
    json.dump({**key, "results": results, "caught": len(caught), "viable": len(viable)},
              open(tmp, "w"), indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
