#!/usr/bin/env python3
"""gen_f16_fixture.py: numpy's float32 -> float16 conversion on a set of float32 bit patterns, for
tests/unit/test_f16.c (vit_f32_to_f16 must agree with it on every non-NaN input).

Writes tests/fixtures/f16/f32_to_f16.bin: uint32 count n, then n float32 bit patterns (uint32 LE),
then their n float16 bit patterns (uint16 LE) as numpy rounds them (astype, round to nearest
even).  Inputs: edge cases (zeros, the FP16 limits and their neighbours, midpoints, inf) and
random patterns spread over every exponent that FP16 can reach and beyond; NaNs excluded
(numpy's NaN payloads depend on the CPU path it takes; the test checks NaN by property).

    /usr/bin/python3 tests/tools/gen_f16_fixture.py   (numpy only; deterministic)
"""
import os
import struct

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    rng = np.random.default_rng(20261123)
    edge = [0.0, 65504.0, 65519.99, 65520.0, 65536.0, 1e30, np.inf, 2.0 ** -14, 2.0 ** -24,
            2.0 ** -25, 2.0 ** -26, 1.5 * 2.0 ** -25, 3.0 * 2.0 ** -25, 1.0 + 2.0 ** -11,
            1.0 + 3 * 2.0 ** -11, 2.0 ** -14 - 2.0 ** -25, 0.1, 1.0 / 3.0]
    vals = np.array(edge + [-v for v in edge], dtype=np.float32).view(np.uint32)
    # random patterns: sign, exponent 90..150 (FP16 subnormals to beyond its range), mantissa
    n = 6000
    sign = rng.integers(0, 2, n, dtype=np.uint32) << 31
    exp = rng.integers(90, 151, n, dtype=np.uint32) << 23
    man = rng.integers(0, 1 << 23, n, dtype=np.uint32)
    # a third of them exactly at or next to a rounding tie (low 13 bits 0x1000, 0x0fff, 0x1001)
    k = n // 3
    man[:k] = (man[:k] & ~np.uint32(0x1fff)) | rng.choice(np.array([0x1000, 0x0fff, 0x1001], np.uint32), k)
    bits = np.concatenate([vals, sign | exp | man]).astype(np.uint32)
    f = bits.view(np.float32)
    assert not np.isnan(f).any()
    with np.errstate(over="ignore"):  # beyond 65520 -> inf is what is tested
        h = f.astype(np.float16).view(np.uint16)
    out = os.path.join(ROOT, "tests", "fixtures", "f16", "f32_to_f16.bin")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as fh:
        fh.write(struct.pack("<I", len(bits)))
        fh.write(bits.astype("<u4").tobytes())
        fh.write(h.astype("<u2").tobytes())
    print(f"wrote {out}: {len(bits)} values")


if __name__ == "__main__":
    main()
