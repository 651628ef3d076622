#!/usr/bin/env python3
"""How heavy the house is: src/'s lines split into code, comments and tests,
and the source files an Encore offer passes through, read from a callgrind
dump of forwarded calls (benches/load/callgrind.sh with DUMP_TO=, a build
with line tables, as that script makes).

usage: benches/house.py [--rev REV] [--callgrind DUMP]
  --rev REV        count a commit's src/ instead of the working tree's
  --callgrind DUMP list the files of src/ that did at least 1/10,000 of the
                   work while serving forwarded calls (the dump of the whole
                   process: the console's once-a-second sampling and the
                   thread file's writer are counted with them)

Tests are the `#[cfg(test)]` items and the modules declared under one (such
as src/props.rs and src/tests/); comments are lines that are only a comment.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sources(rev):
    """{path: text} of every .rs file under src/."""
    if rev is None:
        return {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "src").rglob("*.rs"))}
    names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", rev, "src/"],
                           check=True, capture_output=True, text=True).stdout.split()
    return {n: subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{n}"], check=True,
                              capture_output=True, text=True).stdout
            for n in names if n.endswith(".rs")}


def test_modules(files):
    """Files that are test code as a whole: declared as `#[cfg(test)] mod x;`."""
    tests = set()
    for path, text in files.items():
        base = Path(path).parent if Path(path).name in ("mod.rs", "lib.rs", "main.rs") \
            else Path(path).with_suffix("")
        for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text):
            name = m.group(1)
            for candidate in (base / f"{name}.rs", base / name / "mod.rs"):
                if str(candidate) in files:
                    tests.add(str(candidate))
            tests.update(p for p in files if p.startswith(str(base / name) + "/"))
    return tests


def count(files):
    """(code, comments, tests, blank) lines over `files`."""
    whole_tests = test_modules(files)
    code = comments = tests = blank = 0
    for path, text in files.items():
        lines = text.splitlines()
        if path in whole_tests:
            tests += sum(1 for l in lines if l.strip())
            blank += sum(1 for l in lines if not l.strip())
            continue
        depth_at_test = None  # brace depth where a #[cfg(test)] item began
        pending = False       # a #[cfg(test)] seen, its item not yet opened
        depth = 0
        for line in lines:
            s = line.strip()
            in_test = depth_at_test is not None or pending
            if s.startswith("#[cfg(test)]"):
                pending, in_test = True, True
            opens, closes = s.count("{"), s.count("}")
            if pending and opens:
                depth_at_test, pending = depth, False
            elif pending and s.endswith(";") and not s.startswith("#"):
                pending = False  # a one-line item (`mod x;`, `use ...;`)
            depth += opens - closes
            if not s:
                blank += 1
            elif in_test:
                tests += 1
            elif s.startswith("//"):
                comments += 1
            else:
                code += 1
            if depth_at_test is not None and depth <= depth_at_test:
                depth_at_test = None
    return code, comments, tests, blank


def files_run(dump, files):
    """The files of `files` with instructions in a callgrind dump."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", dump],
                         check=True, capture_output=True, text=True).stdout
    total = re.search(r"([\d,]+) \(100\.0+%\)\s+PROGRAM TOTALS", out)
    total = int(total.group(1).replace(",", "")) if total else 0
    per_file = {}
    for line in out.splitlines():
        m = re.search(r"\s(\S*\bsrc/[\w/]+\.rs):", line)
        cost = re.match(r"\s*([\d,]+)", line)
        if m and cost and int(cost.group(1).replace(",", "")) > 0:
            path = m.group(1)
            path = path[path.index("src/"):]
            # Our own sources only (a dependency's may be named src/… too).
            if path in files:
                per_file[path] = per_file.get(path, 0) + int(cost.group(1).replace(",", ""))
    # A file counts when it does some of the work: at least 1/10,000 of it
    # (enum dispatch and drop glue inlined from another file do not).
    return sorted(p for p, ir in per_file.items() if ir * 10_000 >= total)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rev")
    ap.add_argument("--callgrind")
    a = ap.parse_args()
    files = sources(a.rev)
    code, comments, tests, blank = count(files)
    print(f"src/ at {a.rev or 'the working tree'}: {len(files)} files, "
          f"{code + comments + tests + blank} lines: {code} code, {comments} comments, "
          f"{tests} tests, {blank} blank")
    if a.callgrind:
        run = files_run(a.callgrind, files)
        modules = sorted({p.split("/")[1] if p.count("/") > 1 else p for p in run})
        print(f"files run while forwarding offers: {len(run)} in {len(modules)} modules")
        for p in run:
            print(f"  {p}")


if __name__ == "__main__":
    sys.exit(main())
