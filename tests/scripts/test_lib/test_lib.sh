#!/usr/bin/env bash
# test_lib.sh SOURCE_DIR — scripts/lib.sh's in_turn: the order in which the
# benchmarks' tools take turns. Every run holds each item once; over the
# runs each item comes first, and each item has more than one predecessor
# (a plain rotation would give it always the same one).
set -euo pipefail
# shellcheck source=/dev/null
. "$1/scripts/lib.sh"

fails=0
# check WHAT OK: OK is 1 when it holds.
check() {
  if (($2)); then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi
}

for items in "wrk loadgen loadgen-0 loadgen-50" "a b c" "a b c d e f g h i"; do
  read -r -a list <<<"$items"
  n=${#list[@]}
  declare -A first=() before=()
  whole=1
  for ((i = 1; i <= 2 * n; i++)); do
    mapfile -t order < <(in_turn "$i" "${list[@]}")
    [[ "$(printf '%s\n' "${order[@]}" | sort | tr '\n' ' ')" == "$(printf '%s\n' "${list[@]}" | sort | tr '\n' ' ')" ]] || whole=0
    first[${order[0]}]=1
    for ((k = 1; k < ${#order[@]}; k++)); do before[${order[$k]}]+="${order[$((k - 1))]} "; done
  done
  check "$n items: every run holds each item once" "$whole"
  check "$n items: over $((2 * n)) runs each item comes first" "$((${#first[@]} == n))"
  single=0
  for it in "${list[@]}"; do
    preds=$(tr ' ' '\n' <<<"${before[$it]:-}" | sed '/^$/d' | sort -u | wc -l)
    ((preds >= 2)) || single=$((single + 1))
  done
  check "$n items: no item always runs right after the same one" "$((single == 0))"
  # Run 1 is the list as given.
  as_given=0
  [[ "$(in_turn 1 "${list[@]}" | tr '\n' ' ')" == "$items " ]] && as_given=1
  check "$n items: run 1 as given" "$as_given"
  unset first before
done

((fails == 0)) || { echo "$fails failed"; exit 1; }
echo "all passed"
