#!/usr/bin/env bash
# lab-code.sh — keep the code shown in the lab sheets equal to the sources.
#
# Usage: scripts/lab-code.sh [--check | --update] [--lab NN] [--root DIR]
#
# A source marks the lines a sheet shows with two comment lines (indentation
# allowed; the marker lines themselves are not shown; NAME unique in a file):
#     // [lab:NAME]
#     ...code...
#     // [/lab:NAME]
# A sheet (labs/*/LAB.md, labs/README.md, labs/03-multiplexing/BACKENDS.md)
# shows them in the ```cpp fence right after a line
#     <!-- code: PATH#NAME -->
# (PATH relative to the repository root), holding exactly the marked lines
# with their common leading indentation removed.
#
#   --check     (default) compare every fence with its region; print one line
#               per fence and fail naming SHEET:LINE, the source and the
#               first line that differs
#   --update    rewrite the fences from the sources (fails the same way on a
#               marker that is missing, unclosed or duplicated)
#   --lab NN    only the sheets of labs/NN-*
#   --root DIR  look for labs/ and the sources under DIR instead of the
#               repository root (the test uses a fixture tree)
#
# A region marker that is missing, unclosed, nested, or whose NAME appears
# twice in one file is an error too, as is a code line with no fence after it.
#
# Exit codes: 0 every fence matches (or was rewritten), 1 drift or a marker
# error, 2 usage error.
. "$(dirname "$0")/lib.sh"

mode=check
lab=
root=$ROOT
while (($#)); do
  if lib_common_option "$@"; then
    shift "$LIB_SHIFT"
    continue
  fi
  case "$1" in
    --check) mode=check ;;
    --update) mode=update ;;
    --lab)
      need_value "$@"
      [[ "$2" =~ ^[0-9][0-9]$ ]] || usage_error "--lab needs a two-digit lab number, got '$2'"
      lab=$2
      shift
      ;;
    --root)
      need_value "$@"
      [[ -d "$2" ]] || usage_error "--root: no directory '$2'"
      root=$(cd "$2" && pwd)
      shift
      ;;
    *) usage_error "unknown option '$1'" ;;
  esac
  shift
done

require_cmd python3 python3

python3 - "$SCRIPT" "$mode" "$root" "$lab" <<'PY' || exit 1
import glob, os, re, sys

script, mode, root, lab = sys.argv[1:5]
MARK = re.compile(r"^\s*//\s*\[(/?)lab:([A-Za-z0-9_.-]+)\]\s*$")
CODE = re.compile(r"^\s*<!--\s*code:\s*(\S+?)#([A-Za-z0-9_.-]+)\s*-->\s*$")
errors = []
cache = {}


def regions(path):
    """NAME -> list of lines (common indentation removed), or an error string."""
    if path in cache:
        return cache[path]
    full = os.path.join(root, path)
    out = {}
    try:
        with open(full, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as e:
        cache[path] = "cannot read %s: %s" % (path, e.strerror)
        return cache[path]
    open_name, start, body = None, 0, []
    for n, line in enumerate(lines, 1):
        m = MARK.match(line)
        if not m:
            if open_name is not None:
                body.append(line)
            continue
        closing, name = m.group(1) == "/", m.group(2)
        if not closing:
            if open_name is not None:
                errors.append("%s:%d: [lab:%s] opens inside [lab:%s] (line %d)"
                              % (path, n, name, open_name, start))
            elif name in out:
                errors.append("%s:%d: [lab:%s] appears twice (first at line %d)"
                              % (path, n, name, out[name][0]))
            open_name, start, body = name, n, []
        else:
            if open_name != name:
                errors.append("%s:%d: [/lab:%s] closes nothing open%s"
                              % (path, n, name,
                                 " (open: [lab:%s])" % open_name if open_name else ""))
                continue
            if name not in out:
                out[name] = (start, body)
            open_name = None
    if open_name is not None:
        errors.append("%s:%d: [lab:%s] is never closed" % (path, start, open_name))
    result = {}
    for name, (start, body) in out.items():
        ind = min((len(l) - len(l.lstrip()) for l in body if l.strip()), default=0)
        result[name] = (start, [l[ind:].rstrip() if l.strip() else "" for l in body])
    cache[path] = result
    return result


sheets = sorted(glob.glob(os.path.join(root, "labs", "*", "LAB.md")))
sheets += [p for p in (os.path.join(root, "labs", "README.md"),
                       os.path.join(root, "labs", "03-multiplexing", "BACKENDS.md"))
           if os.path.isfile(p)]
if lab:
    sheets = [s for s in sheets if os.path.basename(os.path.dirname(s)).startswith(lab + "-")]
    if not sheets:
        print("%s: no sheet for lab %s under %s/labs" % (script, lab, root), file=sys.stderr)
        sys.exit(1)

checked = drift = 0
for sheet in sheets:
    rel = os.path.relpath(sheet, root)
    with open(sheet, encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    new = []
    i = 0
    changed = False
    while i < len(lines):
        m = CODE.match(lines[i])
        new.append(lines[i])
        if not m:
            i += 1
            continue
        where = "%s:%d" % (rel, i + 1)
        path, name = m.group(1), m.group(2)
        i += 1
        if i >= len(lines) or lines[i].strip() != "```cpp":
            errors.append("%s: <!-- code: %s#%s --> is not followed by a ```cpp fence"
                          % (where, path, name))
            continue
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if j >= len(lines):
            errors.append("%s: the ```cpp fence after it is never closed" % where)
            new.extend(lines[i:])
            break
        shown = lines[i + 1:j]
        regs = regions(path)
        checked += 1
        if isinstance(regs, str):
            errors.append("%s: %s" % (where, regs))
            new.extend(lines[i:j + 1])
        elif name not in regs:
            errors.append("%s: %s has no region [lab:%s]" % (where, path, name))
            new.extend(lines[i:j + 1])
        else:
            start, want = regs[name]
            if shown == want:
                print("ok    %s %s#%s (%d lines)" % (where, path, name, len(want)))
                new.extend(lines[i:j + 1])
            elif mode == "update":
                print("fixed %s %s#%s (%d lines)" % (where, path, name, len(want)))
                new.append(lines[i])
                new.extend(want)
                new.append(lines[j])
                changed = True
            else:
                drift += 1
                k = 0
                while k < min(len(shown), len(want)) and shown[k] == want[k]:
                    k += 1
                sheet_line = i + 2 + k
                src_line = start + 1 + k
                got = shown[k] if k < len(shown) else "(fence ends)"
                exp = want[k] if k < len(want) else "(region ends)"
                errors.append("%s: fence differs from %s#%s at %s:%d (source line %d):\n"
                              "    sheet:  %s\n    source: %s"
                              % (where, path, name, rel, sheet_line, src_line, got, exp))
                new.extend(lines[i:j + 1])
        i = j + 1
    if changed:
        with open(sheet, "w", encoding="utf-8") as f:
            f.write("\n".join(new))

# Marker errors in a source no sheet names yet are errors too.
for top in ("labs", "clients", "servers", "common", "bench"):
    for dirpath, _, files in os.walk(os.path.join(root, top)):
        for fn in sorted(files):
            if fn.endswith((".cpp", ".hpp", ".h", ".cc")):
                full = os.path.join(dirpath, fn)
                try:
                    with open(full, encoding="utf-8") as f:
                        txt = f.read()
                    if "[lab:" not in txt and "[/lab:" not in txt:
                        continue
                except (OSError, UnicodeDecodeError):
                    continue
                regions(os.path.relpath(full, root))

for e in errors:
    print("%s: %s" % (script, e), file=sys.stderr)
print("%d fences %s, %d drifted, %d errors" %
      (checked, "checked" if mode == "check" else "seen", drift, len(errors) - drift))
sys.exit(1 if errors else 0)
PY
