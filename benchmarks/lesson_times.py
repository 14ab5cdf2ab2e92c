"""Measure how long each lesson takes to run, as CI runs it, and write the course map's column.

    python benchmarks/lesson_times.py                 # every lesson; writes lessons/run_times.json
    python benchmarks/lesson_times.py 07 08           # some lessons (the others keep their entries)
    python benchmarks/lesson_times.py --readme-only   # only rewrite lessons/README.md from the JSON

Each lesson runs in its own process with the command of ``make test-notebooks`` (nbval, the
reference solutions filled in, headless matplotlib), one after the other, and its wall time is
recorded with the machine, the date, the thread count and the load average before and after: the
machine is shared, so the load says how much to trust a number. The "CPU time" column of
``lessons/README.md`` is then rewritten from the JSON; ``tests/test_layout.py`` checks that the two
agree, so no run time in the course map is typed by hand.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
RESULTS = LESSONS / "run_times.json"
README = LESSONS / "README.md"
ENV = {"MPLBACKEND": "Agg", "PYTHONHASHSEED": "0", "SAM_LAB_SOLUTIONS": "1"}


def lesson_key(path: Path) -> str:
    return path.name.split("_", 1)[0]


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def time_lesson(path: Path) -> dict:
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "--nbval-current-env", str(path.relative_to(ROOT)),
         "-p", "no:cacheprovider"],
        cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise SystemExit(f"{path.name} failed (exit {result.returncode}); not recorded:\n{tail}")
    return {"seconds": round(seconds, 1), "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def shown(seconds: float) -> str:
    """How the course map shows a time: seconds under 100 s, else minutes to the half."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    return f"{round(seconds / 30) / 2:g} min"


def write_readme(results: dict) -> None:
    text = README.read_text()
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| #") and "CPU time" in line)
    columns = [c.strip() for c in lines[header].strip("|").split("|")]
    where = columns.index("CPU time")
    for i in range(header + 2, len(lines)):
        if not lines[i].startswith("|"):
            break
        cells = lines[i].strip().strip("|").split("|")
        key = cells[0].strip()
        if key in results["lessons"]:
            cells[where] = f" {shown(results['lessons'][key]['seconds'])} "
            lines[i] = "|" + "|".join(cells) + "|"
    m = results["machine"]
    note = (f"**CPU time** is the wall time of one lesson run as `make test` runs it (nbval, reference solutions, "
            f"Python start-up included), measured by `benchmarks/lesson_times.py` on {results['date']}: "
            f"{m['cores']} cores ({m['cpu']}), torch {m['torch']}, {results['threads']} threads, no GPU, no "
            f"checkpoint on disk. The machine is shared; the load average during the runs was "
            f"{results['load_min']:.1f}–{results['load_max']:.1f}, and on a busier machine expect more.")
    out = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    out = re.sub(r"\*\*CPU time\*\* is .*?(?=\n\n)", lambda _: _wrap(note), out, count=1, flags=re.S)
    README.write_text(out)


def _wrap(text: str, width: int = 100) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join(lines + [line])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers (00, 03b, ...); default: all")
    parser.add_argument("--readme-only", action="store_true", help="only rewrite the README from the JSON")
    args = parser.parse_args(argv)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"lessons": {}}
    if not args.readme_only:
        paths = sorted(LESSONS.glob("[0-9]*.ipynb"))
        known = {lesson_key(p): p for p in paths}
        wanted = args.lessons or list(known)
        unknown = [w for w in wanted if w not in known]
        if unknown:
            parser.error(f"lessons: expected some of {sorted(known)}, got {unknown}")
        from tqdm import tqdm

        for key in tqdm(wanted, desc="lessons"):
            results["lessons"][key] = time_lesson(known[key])
            tqdm.write(f"{known[key].name}: {results['lessons'][key]['seconds']:.0f} s")
        loads = [v for r in results["lessons"].values() for v in (r["load_before"], r["load_after"])]
        results.update(date=dt.date.today().isoformat(), machine=machine(), threads=2,
                       load_min=min(loads), load_max=max(loads))
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        tmp.replace(RESULTS)
    write_readme(results)
    print(f"wrote {RESULTS.relative_to(ROOT)} and the CPU time column of {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
