"""pixelgen's benchmark: its own cost, against instant loopback stand-ins.

    python bench/bench.py [--runs 5] [--images 200]

Every figure is the median of several runs, and each is compared with a
baseline measured in the same run, side by side, because these machines are
shared and noisy: the ratios matter more than the absolute times.  Not part of
CI and not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import pixelgen  # noqa: E402
from standins import CUSTOMER, DODO_KEY, OPENAI_KEY, FakeDodo, FakeOpenAI  # noqa: E402

PIXELGEN = str(ROOT / "pixelgen.py")
NAIVE = str(ROOT / "bench" / "naive_loop.py")


@dataclass
class Row:
    figure: str
    value: str
    baseline: str
    ratio: str
    target: str
    met: bool | None


def median_seconds(command: list[str], cwd: Path, env: dict[str, str], runs: int, stdin: str = "") -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, env=env, input=stdin, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{command} failed ({done.returncode}):\n{done.stderr}")
    return statistics.median(times)


# Measured from a small launcher process: a child started straight from this
# process would report this process's own peak too, since the child shares
# its parent's memory between vfork and exec, and this process holds the
# stand-ins' records.
RSS_LAUNCHER = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[1:], stdin=sys.stdin, stdout=subprocess.DEVNULL)
_, _, usage = os.wait4(process.pid, 0)
print(usage.ru_maxrss)
"""


def peak_rss_mb(command: list[str], cwd: Path, env: dict[str, str], stdin: str) -> float:
    """The peak resident set size of the command's own process."""
    done = subprocess.run(
        [sys.executable, "-c", RSS_LAUNCHER, *command],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
    )
    return int(done.stdout) / 1024  # kilobytes on Linux


def fresh_dir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir()
    return path


def fill_journal(path: Path, count: int) -> None:
    journal = pixelgen.Journal(path)
    now = datetime.now(timezone.utc)
    with journal.transaction():
        for n in range(count):
            journal.record(
                pixelgen.UsageEvent.new(CUSTOMER, "hd" if n % 2 else "standard", "gpt-image-2", now)
            )
    journal.db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    runs, images = args.runs, args.images

    openai_server, dodo_server = FakeOpenAI().start(), FakeDodo().start()  # type: ignore[call-arg]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OPENAI_API_KEY": OPENAI_KEY,
        "DODO_PAYMENTS_API_KEY": DODO_KEY,
        "DODO_PAYMENTS_CUSTOMER_ID": CUSTOMER,
        "OPENAI_BASE_URL": openai_server.base_url,
        "DODO_PAYMENTS_BASE_URL": dodo_server.url,
    }
    python = sys.executable
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="pixelgen-bench-"))
    counter = iter(range(10**6))

    def place() -> Path:
        return fresh_dir(work, f"run{next(counter)}")

    def timed(command: list[str], stdin: str = "", prepare: Callable[[Path], None] | None = None) -> float:
        times = []
        for _ in range(runs):
            cwd = place()
            if prepare:
                prepare(cwd)
            times.append(median_seconds(command, cwd, env, 1, stdin))
        return statistics.median(times)

    # 1. An empty interactive session, against importing the two SDKs.
    sdk_import = timed([python, "-c", "import openai, dodopayments"])
    empty_session = timed([python, PIXELGEN], stdin="\n")
    ratio = empty_session / sdk_import
    rows.append(
        Row(
            "empty interactive session vs `import openai, dodopayments`",
            f"{empty_session * 1000:.0f} ms",
            f"{sdk_import * 1000:.0f} ms",
            f"{ratio:.2f}x",
            "<= 0.2x",
            ratio <= 0.2,
        )
    )

    # 2 and 3. A long session with healthy billing, against a naive loop.
    script = "".join(f"robot {n}\n\n" for n in range(images)) + "\n"
    long_session = timed([python, PIXELGEN], stdin=script)
    per_image = long_session / images
    rows.append(
        Row(
            f"wall time per image, {images}-image session with healthy billing",
            f"{per_image * 1000:.1f} ms",
            "",
            "",
            "<= 10 ms",
            per_image <= 0.010,
        )
    )
    naive_per_image = timed([python, NAIVE, str(images)]) / images
    ratio = per_image / naive_per_image
    rows.append(
        Row(
            "per image vs a naive loop (new SDK clients per image, one event per request)",
            f"{per_image * 1000:.1f} ms",
            f"{naive_per_image * 1000:.1f} ms",
            f"{ratio:.2f}x",
            "<= 0.3x",
            ratio <= 0.3,
        )
    )

    # 4. flush of 10,000 pending events, against a one-image run.
    one_image = timed([python, PIXELGEN, "--prompt", "A cute robot painting a landscape"])
    before = len(dodo_server.calls("POST", "/events/ingest"))
    flush = timed([python, PIXELGEN, "flush"], prepare=lambda cwd: fill_journal(cwd / "pixelgen.db", 10_000))
    requests_per_flush = (len(dodo_server.calls("POST", "/events/ingest")) - before) / runs
    rows.append(
        Row(
            "flush of 10,000 pending events: ingest requests",
            f"{requests_per_flush:.0f}",
            "",
            "",
            "<= 10",
            requests_per_flush <= 10,
        )
    )
    ratio = flush / one_image
    rows.append(
        Row(
            "flush of 10,000 pending events vs a one-image run",
            f"{flush * 1000:.0f} ms",
            f"{one_image * 1000:.0f} ms",
            f"{ratio:.2f}x",
            "<= 3x",
            ratio <= 3,
        )
    )

    # 5. Peak memory of a session, and the journal's size.
    rss_runs = [peak_rss_mb([python, PIXELGEN], place(), env, script) for _ in range(runs)]
    print("peak RSS per run (MB):", [round(r, 1) for r in rss_runs], file=sys.stderr)
    rss = max(rss_runs)
    rows.append(
        Row(
            f"peak RSS of a {images}-image session (largest of {runs})",
            f"{rss:.1f} MB",
            "",
            "",
            "<= 90 MB",
            rss <= 90,
        )
    )
    sized = place()
    fill_journal(sized / "pixelgen.db", 10_000)
    subprocess.run([python, PIXELGEN, "flush"], cwd=sized, env=env, capture_output=True, check=True)
    size = sum(p.stat().st_size for p in sized.glob("pixelgen.db*"))
    rows.append(
        Row(
            "journal size per 10,000 delivered events (db + wal)",
            f"{size / 1e6:.2f} MB",
            "",
            "",
            "report",
            None,
        )
    )

    openai_server.stop()
    dodo_server.stop()
    print_table(rows, runs, images)


def print_table(rows: list[Row], runs: int, images: int) -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"pixelgen benchmark, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    system = f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
    print(f"machine: {os.cpu_count()} cores, {cpu}, {system}")
    print(f"each figure: median of {runs} runs; instant loopback stand-ins\n")
    print("| figure | pixelgen | baseline | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        met = "report" if row.met is None else ("yes" if row.met else "**no**")
        print(f"| {row.figure} | {row.value} | {row.baseline} | {row.ratio} | {row.target} | {met} |")


if __name__ == "__main__":
    main()
