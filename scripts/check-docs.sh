#!/usr/bin/env bash
# Compiles and runs the C++ code blocks of README.md and docs/*.md, so that the docs cannot
# drift from the library.
#
# Every ```cpp block is one of:
#   - a complete program (it has `int main`): compiled and run; it must exit 0. Run in a fresh
#     temporary directory, so files it writes go nowhere.
#   - a fragment with a prelude: the HTML comment `<!-- docs-check: prelude NAME -->` on the last
#     non-blank line before the block names tests/docs/NAME.cpp, a complete program with two
#     marker lines: `// @HOIST` (replaced by the fragment's preprocessor lines, namespace aliases
#     and using-directives) and `// @FRAGMENT` (replaced by the rest, which the prelude places in
#     a block scope of its own, so a fragment may redeclare the prelude's names). Compiled and
#     run like a program.
#   - `<!-- docs-check: compile-only -->` before a program that needs data (MNIST files):
#     compiled and linked, not run.
#   - `<!-- docs-check: skip REASON -->`: not checked; the script prints the block and REASON.
# A fragment (no `int main`) without one of these markers is an error: each block says how it
# is checked.
#
# Usage: scripts/check-docs.sh [FILE.md ...]   (default: README.md docs/*.md)
# Environment: CXX (default g++), GRADSCOPE_DOCS_JOBS (parallel compiles, default 2),
# GRADSCOPE_DOCS_KEEP=1 keeps the generated sources and binaries (the script prints where).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
cxx=${CXX:-g++}
jobs=${GRADSCOPE_DOCS_JOBS:-2}
start=$SECONDS

if (($# == 0)); then set -- README.md docs/*.md; fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gradscope-docs.XXXXXX")
if [[ "${GRADSCOPE_DOCS_KEEP:-0}" == "1" ]]; then
  echo "check-docs: keeping the generated files in $work"
else
  trap 'rm -rf "$work"' EXIT
fi

# 1. Extract: $work/bNNN.block (the code) and one manifest line per block:
#    id <TAB> file <TAB> block number <TAB> line <TAB> mode <TAB> argument
manifest=$work/manifest.tsv
: >"$manifest"
n=0
for md in "$@"; do
  awk -v md="$md" -v work="$work" -v start="$n" '
    function marker(line,   m) {
      m = line
      if (m !~ /^[ \t]*<!--[ \t]*docs-check:/) return ""
      sub(/^[ \t]*<!--[ \t]*docs-check:[ \t]*/, "", m)
      sub(/[ \t]*-->[ \t]*$/, "", m)
      return m
    }
    BEGIN { id = start; inblock = 0; last = "" }
    !inblock && /^```cpp[ \t]*$/ {
      inblock = 1; count++; id++; hasmain = 0; line = NR
      out = sprintf("%s/b%03d.block", work, id); printf "" > out
      mark = marker(last)
      next
    }
    inblock && /^```[ \t]*$/ {
      inblock = 0; close(out)
      mode = "program"; arg = ""
      if (mark != "") {
        split(mark, w, /[ \t]+/); mode = w[1]
        arg = mark; sub(/^[^ \t]+[ \t]*/, "", arg)
      } else if (!hasmain) {
        mode = "unmarked"
      }
      printf "b%03d\t%s\t%d\t%d\t%s\t%s\n", id, md, count, line, mode, arg
      last = ""
      next
    }
    inblock { print > out; if ($0 ~ /int[ \t]+main[ \t]*\(/) hasmain = 1; next }
    /[^ \t]/ { last = $0 }
    END { if (inblock) { printf "check-docs: %s: unterminated ```cpp block at line %d\n", md, line > "/dev/stderr"; exit 1 } }
  ' "$md" >>"$manifest"
  n=$(wc -l <"$manifest")
done

# 2. Build each checked block's source; list the skipped ones.
jobs_file=$work/jobs.tsv
: >"$jobs_file"
errors=0
skipped=0
while IFS=$'\t' read -r id md num line mode arg; do
  where="$md block $num (line $line)"
  src=$work/$id.cpp
  case "$mode" in
    program | compile-only)
      cp "$work/$id.block" "$src"
      ;;
    prelude)
      prelude=tests/docs/$arg.cpp
      if [[ -z "$arg" || ! -f "$prelude" ]]; then
        echo "check-docs: $where: no prelude '$prelude'" >&2
        errors=$((errors + 1))
        continue
      fi
      grep -E '^[[:space:]]*(#|namespace[[:space:]]+[A-Za-z_][A-Za-z_0-9]*[[:space:]]*=|using[[:space:]]+namespace[[:space:]])' \
        "$work/$id.block" >"$work/$id.hoist" || true
      grep -vE '^[[:space:]]*(#|namespace[[:space:]]+[A-Za-z_][A-Za-z_0-9]*[[:space:]]*=|using[[:space:]]+namespace[[:space:]])' \
        "$work/$id.block" >"$work/$id.body" || true
      awk -v hoist="$work/$id.hoist" -v body="$work/$id.body" -v where="$where" '
        /^[ \t]*\/\/ @HOIST[ \t]*$/ { printf "// ---- hoisted from %s\n", where
                                       while ((getline l < hoist) > 0) print l; next }
        /^[ \t]*\/\/ @FRAGMENT[ \t]*$/ { printf "// ---- %s\n", where
                                          while ((getline l < body) > 0) print l; next }
        { print }' "$prelude" >"$src"
      ;;
    skip)
      echo "skipped: $md block $num, line $line (${arg:-no reason given})"
      skipped=$((skipped + 1))
      continue
      ;;
    unmarked)
      echo "check-docs: $where is a fragment (no int main) without a docs-check marker: put" \
        "<!-- docs-check: prelude NAME --> (tests/docs/NAME.cpp) or <!-- docs-check: skip" \
        "REASON --> on the line before it" >&2
      errors=$((errors + 1))
      continue
      ;;
    *)
      echo "check-docs: $where: unknown docs-check marker '$mode'" >&2
      errors=$((errors + 1))
      continue
      ;;
  esac
  printf '%s\t%s\t%s\n' "$id" "$mode" "$where" >>"$jobs_file"
done <"$manifest"

# 3. Compile and run. The blocks compile in gradscope's compiled mode (README, "Faster builds of
# larger programs"): with GRADSCOPE_EXTERN_TEMPLATES each block takes about a tenth of its
# header-only compile time, and the explicit instantiations (include/gradscope/instantiate.hpp,
# split into units as CMakeLists.txt splits gradscope_instances) are compiled once into
# build-docs/instances-HASH/, reused while the headers, the compiler and the flags stay the same.
flags=(-std=c++20 -O0 -DGRADSCOPE_EXTERN_TEMPLATES -I "$root/include" -I /usr/include/eigen3)
key=$({
  find include -type f | LC_ALL=C sort | xargs cat
  "$cxx" --version
  echo "${flags[*]}"
} | sha1sum | cut -c1-12)
cache=$root/build-docs/instances-$key
instances_lib=$cache/libinstances.a
compile_list=$work/compile.list
: >"$compile_list"
if [[ ! -f "$instances_lib" ]]; then
  rm -rf "$root"/build-docs/instances-*
  mkdir -p "$cache/src"
  for component in CORE NN OPTIM DIAGNOSTICS; do
    for scalar in float double; do
      printf '#define GRADSCOPE_DETAIL_INSTANCE_UNIT\n#include <gradscope/gradscope.hpp>\n#include <gradscope/detail/instances.hpp>\nGRADSCOPE_%s_INSTANCES(template, %s)\n' \
        "$component" "$scalar" >"$cache/src/${component,,}_$scalar.cpp"
    done
  done
  for pair in CORE:core/core.hpp NN:gradscope.hpp OPTIM:gradscope.hpp \
    DIAGNOSTICS:gradscope.hpp UTIL:util/util.hpp IO:io/io.hpp DATA:data/data.hpp; do
    component=${pair%%:*}
    {
      # As CMakeLists.txt generates them: the unit is marked as the one that instantiates.
      printf '#define GRADSCOPE_DETAIL_INSTANCE_UNIT\n#define GRADSCOPE_INSTANTIATE_%s\n#include <gradscope/%s>\n' \
        "$component" "${pair#*:}"
      if [[ "$component" == IO || "$component" == DATA ]]; then
        printf '#include <gradscope/detail/instances.hpp>\n'
        printf 'GRADSCOPE_%s_INSTANCES(template, %s)\n' "$component" float "$component" double
      fi
    } >"$cache/src/compiled_${component,,}.cpp"
  done
  for f in "$cache"/src/*.cpp; do printf '%s\0%s\0' "$f" "${f%.cpp}.o" >>"$compile_list"; done
fi
while IFS=$'\t' read -r id mode where; do
  printf '%s\0%s\0' "$work/$id.cpp" "$work/$id.o" >>"$compile_list"
done <"$jobs_file"

compile_one() {
  "$cxx" "${flags[@]}" -c "$1" -o "$2" >"${2%.o}.log" 2>&1 || true
}
flags_str=$(printf '%q ' "${flags[@]}")
export -f compile_one
export cxx flags_str
compile_start=$SECONDS
xargs -0 -n 2 -P "$jobs" bash -c 'eval "flags=($flags_str)"; compile_one "$@"' _ <"$compile_list"
compile_seconds=$((SECONDS - compile_start))

if [[ ! -f "$instances_lib" ]]; then
  for f in "$cache"/src/*.cpp; do
    if [[ ! -f "${f%.cpp}.o" ]]; then
      echo "check-docs: the instantiation unit $f does not compile:" >&2
      head -40 "${f%.cpp}.log" >&2
      exit 1
    fi
  done
  ar rcs "$instances_lib" "$cache"/src/*.o
fi

run_start=$SECONDS
while IFS=$'\t' read -r id mode where; do
  dir=$work/$id.d
  mkdir -p "$dir"
  if [[ ! -f "$work/$id.o" ]]; then
    cp "$work/$id.log" "$work/$id.err"
    echo "FAIL compile: $where" >"$work/$id.status"
    continue
  fi
  if ! "$cxx" "$work/$id.o" "$instances_lib" -lz -o "$dir/prog" >"$work/$id.err" 2>&1; then
    echo "FAIL link: $where" >"$work/$id.status"
    continue
  fi
  if [[ "$mode" == "compile-only" ]]; then
    echo "ok (compiled, not run): $where" >"$work/$id.status"
    continue
  fi
  rc=0
  (cd "$dir" && timeout 120 ./prog </dev/null >"$work/$id.out" 2>&1) || rc=$?
  if ((rc != 0)); then
    echo "FAIL run (exit $rc): $where" >"$work/$id.status"
  else
    echo "ok (compiled and run): $where" >"$work/$id.status"
  fi
done <"$jobs_file"
run_seconds=$((SECONDS - run_start))

# 4. Report.
checked=$(wc -l <"$jobs_file")
failed=0
while IFS=$'\t' read -r id mode where; do
  status=$(cat "$work/$id.status" 2>/dev/null || echo "FAIL (no status): $where")
  echo "$status"
  if [[ "$status" == FAIL* ]]; then
    failed=$((failed + 1))
    echo "---- source ($work/$id.cpp):"
    cat -n "$work/$id.cpp" | head -120
    if [[ "$status" == "FAIL compile"* || "$status" == "FAIL link"* ]]; then
      echo "---- compiler output:"
      head -60 "$work/$id.err"
    else
      echo "---- program output (last 40 lines):"
      tail -40 "$work/$id.out"
    fi
  fi
done <"$jobs_file"

echo "check-docs: $checked blocks checked, $failed failed, $skipped skipped, $errors marker" \
  "errors, in $((SECONDS - start)) s (compiling ${compile_seconds} s, linking and running" \
  "${run_seconds} s)"
if ((failed > 0 || errors > 0)); then exit 1; fi
