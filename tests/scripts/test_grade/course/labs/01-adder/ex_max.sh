#!/usr/bin/env bash
# ex-max: write max() (LAB.md § 2); the rest checks it.
max() {
    # TODO(you): print the larger of $1 and $2 (LAB.md § 2)
    :
}

for case in "2 3 3" "9 4 9" "-1 -5 -1"; do
    read -r a b want <<<"$case"
    got="$(max "$a" "$b")"
    echo "max $a $b = $got"
    if [[ "$got" != "$want" ]]; then
        echo "check: FAIL — max $a $b printed '$got', not $want"
        exit 1
    fi
done
echo "check: PASS"
