"""What this machine offers the code that runs on it: usable CPUs, the CPU's name, its instruction sets.

Standard library only (no torch), so the service, the batch command, the exports and the benchmark
all read the machine the same way.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import List, Union

CPUINFO = Path("/proc/cpuinfo")

# x86 instruction-set extensions (as /proc/cpuinfo names them) that compiled code may use.
# Inductor compiles a package with -march=native: it may use any of them the building CPU
# has, and on a CPU without one the process dies of SIGILL. So a package records the
# building CPU's set, and loading it (C++ Detector, load_aoti) refuses a CPU that lacks one.
ISA_FLAGS = frozenset(
    "sse sse2 ssse3 sse4_1 sse4_2 sse4a popcnt avx avx2 fma fma4 f16c bmi1 bmi2 lzcnt movbe adx "
    "aes pclmulqdq sha_ni gfni vaes vpclmulqdq avx_vnni avx_vnni_int8 avx_ifma avx_ne_convert "
    "avx512f avx512dq avx512cd avx512bw avx512vl avx512ifma avx512vbmi avx512_vbmi2 avx512_vnni "
    "avx512_bitalg avx512_vpopcntdq avx512_bf16 avx512_fp16 avx512_vp2intersect "
    "amx_tile amx_bf16 amx_int8 amx_fp16".split()
)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity on this platform
        return max(1, os.cpu_count() or 1)


def _cpuinfo_field(name: str, cpuinfo: Union[str, Path]) -> str:
    """The first CPU's ``name`` line of /proc/cpuinfo; "" where the file or the field is absent."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def cpu_model(cpuinfo: Union[str, Path] = CPUINFO) -> str:
    """The CPU's marketing name (e.g. "AMD EPYC"), else what the platform module knows."""
    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine()


def cpu_isa_flags(cpuinfo: Union[str, Path] = CPUINFO) -> List[str]:
    """The instruction-set extensions of this CPU (sorted; empty where /proc/cpuinfo has no
    x86 ``flags`` line, e.g. on ARM or macOS: nothing is then recorded or checked)."""
    return sorted(ISA_FLAGS.intersection(_cpuinfo_field("flags", cpuinfo).split()))
