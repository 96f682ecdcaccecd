#!/usr/bin/env bash
# Fails (exit 1) if any process whose executable lies in this checkout's
# target/ is still running, naming each: a test that started a binary must
# end it, however the test ended. `.ci/run` calls this after the suite.
set -u
top=$(cd "$(dirname "$0")/.." && pwd -P)
left=0
for proc in /proc/[0-9]*; do
  exe=$(readlink "$proc/exe" 2>/dev/null) || continue
  case "$exe" in
    "$top"/target/*)
      pid=${proc#/proc/}
      printf 'left behind: pid %s %s (parent %s, in %s)\n' "$pid" \
        "$(tr '\0' ' ' < "$proc/cmdline" 2>/dev/null)" \
        "$(awk '/^PPid:/ { print $2 }' "$proc/status" 2>/dev/null)" \
        "$(readlink "$proc/cwd" 2>/dev/null)" >&2
      left=$((left + 1))
      ;;
  esac
done
if [ "$left" -gt 0 ]; then
  echo "$left process(es) of $top/target outlived the tests" >&2
  exit 1
fi
echo "no process of target/ left behind"
