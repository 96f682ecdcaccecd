#!/usr/bin/env python3
"""The simulation's coverage table, as docs/testing.md shows it.

Runs the default `cargo test -p sim --test sim` with SIM_COVERAGE=1 (or
reads its saved standard error: `scripts/sim-coverage-table.py FILE`), sums
what each property reached over its cases, and prints a Markdown table of
every label with its count and the properties that must reach it (the
`must_have_reached` lists at the top of sim/tests/sim.rs).

    scripts/sim-coverage-table.py            # runs the simulation (minutes)
    scripts/sim-coverage-table.py run.txt    # from a saved run
"""

import collections
import os
import re
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def run_output():
    if len(sys.argv) > 1:
        return open(sys.argv[1]).read()
    env = dict(os.environ, SIM_COVERAGE="1")
    done = subprocess.run(
        ["cargo", "test", "-q", "-p", "sim", "--test", "sim", "--", "--nocapture"],
        cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stdout[-3000:] + done.stderr[-3000:])
    return done.stdout + done.stderr


def reached(text):
    """label -> count, summed over every property's table."""
    counts = collections.Counter()
    in_table = False
    for line in text.splitlines():
        if re.match(r"^\S.*: reached over \d+ cases:$", line):
            in_table = True
            continue
        m = re.match(r"^\s+(\d+)\s+(?:\* )?(.+)$", line) if in_table else None
        if m:
            counts[m.group(2).strip()] += int(m.group(1))
        elif in_table and not line.strip():
            in_table = False
    return counts


def required_by():
    """label -> the properties whose must_have_reached lists name it."""
    source = open(os.path.join(ROOT, "sim/tests/sim.rs")).read()
    lists = {}
    for m in re.finditer(r"const (\w+): &\[&str\] = &\[(.*?)\];", source, re.S):
        lists[m.group(1)] = re.findall(r'"([^"]+)"', m.group(2))
    by = collections.defaultdict(list)
    for m in re.finditer(r"\nfn (\w+)\(\) \{(.*?)\n\}", source, re.S):
        for name in re.findall(r"must_have_reached\((\w+)\)", m.group(2)):
            for label in lists.get(name, []):
                by[label].append(m.group(1))
    return by


def main():
    counts = reached(run_output())
    by = required_by()
    print("| reached | label | must be reached by |")
    print("| ---: | --- | --- |")
    for label in sorted(set(counts) | set(by)):
        props = ", ".join(f"`{p}`" for p in sorted(set(by.get(label, []))))
        print(f"| {counts.get(label, 0):,} | {label} | {props} |")


if __name__ == "__main__":
    main()
