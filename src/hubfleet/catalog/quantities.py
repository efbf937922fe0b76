"""Kubernetes-style resource quantities, parsed once so every backend agrees on them.

Memory accepts the binary (Ki, Mi, Gi, Ti) and decimal (K, M, G, T) suffixes that both
Kubernetes and KubeSpawner understand; CPU accepts cores ("1", "0.5") or millicores ("500m").
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_MEMORY = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]+)?)(?P<unit>Ki|Mi|Gi|Ti|K|M|G|T)?$")
_FACTORS = {
    None: 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_CPU = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]+)?)(?P<milli>m)?$")


# Kubernetes quantities must fit in 63 bits; anything near that is a typo. Checked before arithmetic, so a
# 400-digit number is an error at its line, not an OverflowError traceback.
_MAX_DIGITS = 15


def memory_bytes(text: str) -> int:
    """Bytes in a memory quantity such as ``2G`` or ``512Mi``."""
    m = _MEMORY.match(str(text).strip())
    if not m:
        raise ValueError(
            f"{text!r} is not a memory quantity; write a number with a unit such as 512Mi, 2G or 10Gi"
        )
    if len(m["num"]) > _MAX_DIGITS:
        raise ValueError(f"{text!r} is far too large for a memory quantity; write e.g. 512Mi, 2G or 10Gi")
    return int(Fraction(m["num"]) * _FACTORS[m["unit"]])


def cpu_cores(text: str | int | float) -> float:
    """Cores in a CPU quantity such as ``1``, ``0.5`` or ``500m``."""
    m = _CPU.match(str(text).strip())
    if not m:
        raise ValueError(f"{text!r} is not a CPU quantity; write cores (1, 0.5) or millicores (500m)")
    if len(m["num"]) > _MAX_DIGITS:
        raise ValueError(f"{text!r} is far too large for a CPU quantity; write cores (1, 0.5) or millicores (500m)")
    value = float(m["num"])
    return value / 1000 if m["milli"] else value


def _check_memory(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{value!r} is not a memory quantity; write e.g. 2G or 512Mi")
    if memory_bytes(str(value)) <= 0:
        raise ValueError(f"{value!r} is zero; a size or memory amount must be more than 0 (e.g. 512Mi)")
    return str(value)


def _check_cpu(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a CPU quantity; write cores (1, 0.5) or millicores (500m)")
    if cpu_cores(value) <= 0:
        raise ValueError(f"{value!r} is zero; a CPU amount must be more than 0 (e.g. 0.5 or 500m)")
    return str(value)


Memory = Annotated[str, BeforeValidator(_check_memory), PlainSerializer(str)]
Cpu = Annotated[str, BeforeValidator(_check_cpu), PlainSerializer(str)]
