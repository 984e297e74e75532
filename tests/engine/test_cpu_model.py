"""cpu_model(): the machine line of every benchmark names the vector extension."""

from __future__ import annotations

import platform

import pytest

from kernelsolve.engine.backends.cpu import cpu_model

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw

processor\t: 1
model name\t: something else
"""

ZEN3 = ZEN4.replace("model\t\t: 17", "model\t\t: 1").replace(" avx512f avx512bw", "")

ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm
CPU implementer\t: 0x41
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        (ZEN4, "AMD EPYC (family 25, model 17; AVX-512)"),
        (ZEN3, "AMD EPYC (family 25, model 1; AVX2)"),
        (ZEN4.replace(" avx2 fma avx512f avx512bw", ""), "AMD EPYC (family 25, model 17; AVX)"),
    ],
)
def test_x86_names_family_model_and_vectors(tmp_path, text, expected):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    assert cpu_model(str(path)) == expected


def test_without_flags_the_name_alone(tmp_path, monkeypatch):
    path = tmp_path / "cpuinfo"
    path.write_text(ARM)
    monkeypatch.setattr(platform, "processor", lambda: "aarch64-proc")
    assert cpu_model(str(path)) == "aarch64-proc"


def test_missing_file_falls_back_to_platform(tmp_path):
    got = cpu_model(str(tmp_path / "absent"))
    assert got == (platform.processor() or platform.machine())
