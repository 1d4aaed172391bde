"""Peak memory of a process, as the kernel reports it (Linux /proc): for `expmon bench`
and `expmon replay --stats`."""

from __future__ import annotations

from pathlib import Path


def read_vm_hwm_kb(pid: int | str = "self") -> int | None:
    """Peak resident set size (VmHWM) of a process in kB, None if unreadable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return parse_vm_hwm_kb(text)


def parse_vm_hwm_kb(status_text: str) -> int | None:
    """The VmHWM line of a /proc/<pid>/status text, in kB."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                return int(fields[1])
    return None
