# hark subsequence DTW of enrolled words' frame templates over the stream (issue 16; docs/enroll.md
# "Time structure: DTW"): per hop, one new column of each template's warping cost. A template
# may start at any hop; each of its frames is matched to one stream frame, the stream advancing
# 0, 1 or 2 frames per template frame (never 0 twice running). The same integers as
# training/enroll_dtw.py's _sdtw (tests/test_enroll.py), saturated at INF: a path's cost only
# grows, so every cost below INF is exact (a word's limit, threshold x frames, is far below it).
# Allocates nothing; the caller owns the state (3 x 2 x N uint16 per template of N frames, INF
# at start) and the output (int32 per template).
import micropython
from micropython import const

INF = const(0x7FFF)


@micropython.viper
def update(frame: ptr8, templates: ptr8, lengths: ptr8, n: int, width: int, state: ptr16,
           phase: int, out: ptr32):
    # out[m]: the cost of template m's best path ending at this frame (frame and templates in
    # the same byte form; L1 summed over the path). phase: this hop's column slot, 0, 1, 2, 0...
    # A column of a template of N frames: N costs reached by a stream step, then N minima of
    # that and the cost reached by a 0 step (what the next two columns read)
    prev = phase - 1 if phase else 2
    prev2 = prev - 1 if prev else 2
    row = 0
    s = 0
    for m in range(n):
        N = lengths[m]
        cur = s + phase * 2 * N
        p = s + prev * 2 * N + N - 1        # + i: the previous column's minimum at i - 1
        q = s + prev2 * 2 * N + N - 1
        a = 0
        b = 0
        for i in range(N):
            d = 0
            for k in range(width):
                x = frame[k] - templates[row + k]
                if x < 0:
                    x = 0 - x
                d += x
            row += width
            if i == 0:
                a = d
                b = d
            else:
                best = state[p + i]
                c = state[q + i]
                if c < best:
                    best = c
                b = a + d           # by a 0 step: this column's a at i - 1
                a = best + d
                if a > INF:
                    a = INF
                if b > INF:
                    b = INF
                if a < b:
                    b = a
            state[cur + i] = a
            state[cur + N + i] = b
        out[m] = b
        s += 6 * N
