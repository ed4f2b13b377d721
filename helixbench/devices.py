"""Device descriptions of traces: the model of a GPU without its index or PCI bus id, per rank and
per job, so that runs on two GPUs of one model (or a real job and its emulated twin) compare."""
from __future__ import annotations

import re

_BUS_ID = re.compile(r"[\[(]?\s*(?:bus\s*(?:id)?\s*[:=]?\s*)?"
                     r"[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-9a-fA-F])?\s*[\])]?",
                     re.IGNORECASE)


# The device index a backend prefixes ('cuda:3 NVIDIA H200 ...'): rank 3 of a real 4-GPU job and
# the one GPU of an emulated twin are the same device model.
_DEVICE_INDEX = re.compile(r"^\s*(?:cuda|gpu|hip|rocm|dev(?:ice)?)\s*[:#]?\s*\d+\s*[:,]?\s*",
                           re.IGNORECASE)


def normalize_device(name: str) -> str:
    """A device description without its index and PCI bus id:
    'cuda:3 NVIDIA H200 bus 0000:19:00.0' -> 'NVIDIA H200'. Runs on two GPUs of the same model
    compare like with like."""
    s = _DEVICE_INDEX.sub("", _BUS_ID.sub("", name))
    s = re.sub(r"[\s,;@]+$", "", s.strip())
    return re.sub(r"\s+", " ", s) or name.strip()


def devices_by_rank(devices: str) -> dict[int, str]:
    """Parses the root `devices` attribute, `rank<i>=<device>;...`."""
    out = {}
    for item in devices.split(";"):
        item = item.strip()
        if not item:
            continue
        key, _, dev = item.partition("=")
        m = re.fullmatch(r"rank(\d+)", key.strip())
        if m and dev:
            out[int(m.group(1))] = dev.strip()
    return out


def device_label(devices: str) -> str:
    """The distinct device models of a job, bus ids dropped: 'cpu', 'NVIDIA H200', or
    'NVIDIA H100 80GB HBM3+NVIDIA H200' for a mixed job."""
    names = sorted({normalize_device(d) for d in devices_by_rank(devices).values()})
    if not names and devices.strip():
        return normalize_device(devices)
    return "+".join(names) if names else "unknown"
