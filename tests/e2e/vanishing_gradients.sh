#!/usr/bin/env bash
# End-to-end check of part 1 of vanishing_gradients (Nielsen's table) on synthetic digits: every
# network's rows give the mean, std and median per hidden layer, the last/first ratio, and the
# book's and the independent reference figures beside them, in columns that line up at every
# depth. Part 2 (the remedies, minutes of training) is skipped with --no-remedies.
# Usage: vanishing_gradients.sh PATH_TO_vanishing_gradients
set -euo pipefail
exe=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$exe" --synthetic --seeds 3 --no-remedies > "$dir/out.txt" 2>&1 ||
  { cat "$dir/out.txt"; fail "exited $?"; }
out="$dir/out.txt"
grep -q "Remedies" "$out" && fail "--no-remedies ran part 2"
# The table: from its header to the first blank line after it.
sed -n '/^   network /,/^$/p' "$out" | sed '/^$/d' > "$dir/table.txt"
header=$(head -1 "$dir/table.txt")
for col in layer mean std median book reference; do
  grep -qw "$col" <<<"$header" || fail "no '$col' column: $header"
done
rows=$(($(wc -l < "$dir/table.txt") - 1))
# 1 + 2 + 3 + 4 layer rows, and a last/first row for the 2-, 3- and 4-hidden-layer networks.
[ "$rows" -eq 13 ] || { cat "$dir/table.txt"; fail "$rows table rows, expected 13"; }
[ "$(grep -c "last/first" "$dir/table.txt")" -eq 3 ] || fail "not one last/first row per deep net"
grep -qE '^   \[784,30,30,30,30,10\] +1 ' "$dir/table.txt" || fail "no row for 4 hidden layers"
# The published figures: the book's 4-layer norms and ratio, the reference's with its median ratio.
grep -qE ' 0\.003 +0\.0023\+-0\.0005$' "$dir/table.txt" || fail "no book/reference for layer 1 of 4"
grep -qE 'last/first .* 95\.0x +126\.0x$' "$dir/table.txt" || fail "no book/reference ratios of 4"
grep -qE 'last/first .* 4\.4x +5\.1x$' "$dir/table.txt" || fail "no book/reference ratios of 2"
# Every column is right-aligned under its header: a cell ends where its header word ends.
awk -v header="$header" '
  BEGIN { n = split("layer mean std median book reference", cols, " ")
          for (i = 1; i <= n; i++) end[i] = index(header, " " cols[i] " ") + length(cols[i])
          end[n] = length(header) }
  NR > 1 { for (i = 1; i <= n; i++) {
             c = substr($0, end[i], 1); after = substr($0, end[i] + 1, 1)
             if (c == " " || c == "" || (after != " " && after != "")) {
               printf "row %d, column %s misaligned: %s\n", NR, cols[i], $0; bad = 1 } } }
  END { exit bad }' "$dir/table.txt" || { cat "$dir/table.txt"; fail "columns do not align"; }
# Medians are numbers, not placeholders, on every layer row (mawk has no {4}).
awk 'NR > 1 && $0 !~ /last\/first/ { if ($(NF - 2) !~ /^[0-9]+\.[0-9][0-9][0-9][0-9]$/) { print; exit 1 } }' \
  "$dir/table.txt" || fail "a layer row has no median"
echo "vanishing_gradients end-to-end: all checks passed"
