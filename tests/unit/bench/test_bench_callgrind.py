"""bench/_callgrind.py reads callgrind's format: exclusive costs, name compression, calls."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import _callgrind

# Shaped like callgrind's own output: `(id) name` defines a name once, `(id)` reuses it;
# the line after `calls=` is the callee's inclusive cost, which its caller must not get;
# positions may be relative (+N, -N) or repeated (*).
SAMPLE = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
events: Ir
ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 100
+2 50
cob=(2) /opt/osm/x__mypyc.cpython-311-x86_64-linux-gnu.so
cfi=(2) listeners.c
cfn=(2) CPyDef_HttpSession_data_received
calls=3 20
* 9000
* 7
ob=(2)
fl=(2)
fn=(2)
20 300
cob=(3) /usr/lib/x86_64-linux-gnu/libcrypto.so.3
cfn=(3) aes_gcm_cipher
calls=1 5
-3 4000
ob=(3)
fn=(3)
5 4000
ob=(4) /usr/lib/x86_64-linux-gnu/libc.so.6
fn=(4) memcpy
1 33
summary: 4490
"""


def test_exclusive_costs_by_function_and_group(tmp_path: Path) -> None:
    path = tmp_path / "callgrind.1"
    path.write_text(SAMPLE)
    profile = _callgrind.read(path)
    assert profile.by_function == {
        "_PyEval_EvalFrameDefault": 157,
        "CPyDef_HttpSession_data_received": 300,
        "aes_gcm_cipher": 4000,
        "memcpy": 33,
    }
    assert profile.total == 4490  # what callgrind's own summary says
    assert profile.by_group() == {"interpreter": 157, "compiled": 300, "tls": 4000, "libc": 33}


def test_groups_by_binary_name() -> None:
    cases = {
        "/usr/bin/python3.11": "interpreter",
        "/work/.venv/lib/python3.11/site-packages/uvloop/loop.cpython-311-x86_64-linux-gnu.so": (
            "loop"
        ),
        "/usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so": "tls",
        "/site-packages/httptools/parser/parser.cpython-311-x86_64-linux-gnu.so": "http",
        "/usr/sbin/haproxy": "haproxy",
        "/lib64/ld-linux-x86-64.so.2": "libc",
        "???": "other",
    }
    for binary, group in cases.items():
        assert _callgrind.group_of(binary) == group, binary
