#!/usr/bin/env python3
"""Wall time of a whole recipe, per stage: bench_recipe.py egs/synth [recipe options...]

Runs the recipe from stage 0 with fresh data/dump/exp dirs in a temporary directory (the corpus is read from
--corpus-dir, or generated there for egs/synth), and reports each stage's wall time and its share of the total.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    recipe, extra = os.path.abspath(sys.argv[1]), sys.argv[2:]
    with tempfile.TemporaryDirectory(prefix="ser-bench-") as tmp:
        args = [os.path.join(recipe, "run.sh"), "--data-dir", f"{tmp}/data", "--dump-dir", f"{tmp}/dump",
                "--exp-root", f"{tmp}/exp"]
        if "--corpus-dir" not in extra:
            args += ["--corpus-dir", f"{tmp}/corpus"]
        start = time.time()
        proc = subprocess.run(args + extra, capture_output=True, text=True)
        total = time.time() - start
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        # ser.sh logs "YYYY-mm-dd HH:MM:SS (ser.sh:N) stage K: ..." when a stage starts
        marks = []
        for line in proc.stderr.splitlines():
            m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \(ser\.sh:\d+\) (stage \d)", line)
            if m and (not marks or marks[-1][1] != m.group(2)):
                marks.append((datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp(), m.group(2)))
        end = re.findall(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \(ser\.sh:\d+\) done", proc.stderr)
        marks.append((datetime.strptime(end[-1], "%Y-%m-%d %H:%M:%S").timestamp(), "end"))
        print(f"recipe {os.path.relpath(recipe)} {' '.join(extra)}")
        for (t0, name), (t1, _) in zip(marks, marks[1:]):
            print(f"  {name}: {t1 - t0:7.0f} s  ({100 * (t1 - t0) / total:4.1f}% of the total)")
        print(f"  total: {total:7.1f} s (environment already installed; includes process start-up)")
        print("  " + proc.stdout.strip().splitlines()[-2] if proc.stdout.strip() else "")


if __name__ == "__main__":
    main()
