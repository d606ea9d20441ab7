"""What the benchmarks share: the machine they ran on, /proc readings of a process, and the
rig of a real run (an embedded broker with the contract's topics and a product catalogue).

Each benchmark imports it as ``from common import ...`` (the script's folder is on sys.path).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from model.embedding.item_index import ItemInfo
from stream.schemas import Item

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def describe() -> str:
    """One line: CPU model, cores, memory, Python."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem_gb:.0f} GiB RAM, Python {platform.python_version()}"


def proc_status_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory field of /proc/<pid>/status (VmRSS, RssAnon, VmHWM, ...) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def load_average() -> str:
    """1, 5 and 15-minute load averages (the machine is shared)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def dir_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) / 1024


def product_item(info: ItemInfo) -> Item:
    """A synthetic catalogue entry as the benchmarks send it on ``items``."""
    return Item(
        item_id=info.item_id,
        title=info.title,
        category=info.category,
        description=f"A {info.category} product for everyday use.",
    )
