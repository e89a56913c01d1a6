"""A lane-level simulation of `flash_attn2` in sieve.cu, for checking its indexing and its synchronisation
without a GPU.

The kernel is transcribed statement by statement (same names, same index expressions), one block at a time
and one warp after another, in float64; `ldmatrix` (plain and `.trans`) and `mma.sync.m16n8k16` are emulated
from the fragment layouts in the PTX ISA, and `cp.async` is a plain copy here. The output is compared with a
direct causal attention on rows that straddle the 64-query and 64-key tiles, with and without a shared prefix
read through a key map, and with the last-position-only layout. Swapping a single index (say the `.trans` on V,
or the chunk of the K fragments) makes it fail.

The synchronisation is checked separately (`check_sync`): the kernel's skeleton (every `cp.async` with its
thread and 16-byte shared-memory chunk, `commit_group`, `wait_group`, `__syncthreads`, and every chunk each
warp's `ldmatrix` reads) runs through a hazard model of the PTX rules. An asynchronous copy is in flight from
its issue until its own thread's `wait_group` covers its group, and other threads may read it only after a
barrier that follows that wait; a read of a chunk with a copy in flight (read-after-write), a copy issued into
a chunk read since the last barrier (write-after-read), or two copies in flight to one chunk is a hazard.
Dropping a barrier or loosening a wait makes it fail (`--mutations` shows each).

    python3 crates/models/kernels/flash_attn2_sim.py [--mutations] [--sync-only]   # numpy; about 20 s

Keep it in step with the kernel when the kernel changes. The kernel itself is checked on a GPU by
`models_gpu attn-check` (benches/models_gpu.sh).
"""
import numpy as np

D, BQ, BK, THREADS, CH = 128, 64, 64, 128, 16


def sw(r, c):
    return r * D + ((c ^ (r & 7)) << 3)


def ldsm(smem, addrs, trans):
    """addrs: 32 element offsets (lane l gives row l%8 of matrix l//8). Returns regs[lane][4] of (lo, hi) pairs."""
    mats = [np.stack([smem[addrs[8 * m + r]: addrs[8 * m + r] + 8] for r in range(8)]) for m in range(4)]
    out = []
    for l in range(32):
        g, t = l // 4, l % 4
        regs = []
        for m in range(4):
            M = mats[m]
            if trans:
                regs.append((M[2 * t][g], M[2 * t + 1][g]))
            else:
                regs.append((M[g][2 * t], M[g][2 * t + 1]))
        out.append(regs)
    return out


def mma(c, a, b0, b1):
    """c[lane][4] += A·B with A from a[lane][4] pairs, B from b0/b1[lane] pairs (documented layouts)."""
    A = np.zeros((16, 16))
    B = np.zeros((16, 8))
    for l in range(32):
        g, t = l // 4, l % 4
        for i in range(2):
            A[g][2 * t + i] = a[l][0][i]
            A[g + 8][2 * t + i] = a[l][1][i]
            A[g][2 * t + 8 + i] = a[l][2][i]
            A[g + 8][2 * t + 8 + i] = a[l][3][i]
            B[2 * t + i][g] = b0[l][i]
            B[2 * t + 8 + i][g] = b1[l][i]
    C = A @ B
    for l in range(32):
        g, t = l // 4, l % 4
        for i in range(2):
            c[l][i] += C[g][2 * t + i]
            c[l][2 + i] += C[g + 8][2 * t + i]


def key_row(n_a, off, pre_off, j, hkv, g):
    """fa_key_row: (offset into pre, None) for a prefix row, (None, offset into own) for the batch's own."""
    return (pre_off + (j * hkv + g) * D, None) if j < n_a else (None, off + ((j - n_a) * hkv + g) * D)


def load_kv(dst, own, pre, meta, n_a, off, pre_off, first, n, kmap_off, has_kmap, hkv, g):
    for i in range(BK * CH):  # (the threads' strided loop, flattened)
        r, c = i // CH, i % CH
        ok = r < n
        slot = first + (r if ok else 0)
        j = meta[kmap_off + slot] if has_kmap else slot
        p_pre, p_own = key_row(n_a, off, pre_off, j, hkv, g)
        src = pre[p_pre + c * 8: p_pre + c * 8 + 8] if p_pre is not None else own[p_own + c * 8: p_own + c * 8 + 8]
        dst[sw(r, c): sw(r, c) + 8] = src if ok else 0


def block(own, pre, meta, out, hq, hkv, k_off, v_off, n_a, tiles_off, kmap_off, has_kmap, scale, bx, h):
    g = h // (hq // hkv)
    row, qs = meta[tiles_off + 2 * bx], meta[tiles_off + 2 * bx + 1]
    q0, nq, k0, nk, o0 = meta[5 * row: 5 * row + 5]
    nqt = min(BQ, nq - qs)
    pre_v = n_a * hkv * D
    kend = (nk - nq + qs) + nqt
    ntiles = (kend + BK - 1) // BK
    sQ, sK, sV = np.zeros(BQ * D), np.zeros(BK * D), np.zeros(BK * D)
    for i in range(BQ * CH):
        r, c = i // CH, i % CH
        ok = r < nqt
        base = ((q0 + qs + (r if ok else 0)) * hq + h) * D + c * 8
        sQ[sw(r, c): sw(r, c) + 8] = own[base: base + 8] if ok else 0
    load_kv(sK, own, pre, meta, n_a, k_off, 0, k0, min(BK, kend), kmap_off, has_kmap, hkv, g)
    load_kv(sV, own, pre, meta, n_a, v_off, pre_v, k0, min(BK, kend), kmap_off, has_kmap, hkv, g)
    sl2 = scale * 1.4426950408889634
    for warp in range(4):
        lanes = range(32)
        ra = [16 * warp + (l >> 2) for l in lanes]
        rb = [x + 8 for x in ra]
        lim_a = [(nk - nq + qs) + min(x, nqt - 1) for x in ra]
        lim_b = [(nk - nq + qs) + min(x, nqt - 1) for x in rb]
        t2 = [2 * (l & 3) for l in lanes]
        qf = []
        for kk in range(D // 16):
            addrs = [sw(16 * warp + (l & 7) + (((l >> 3) & 1) << 3), 2 * kk + (l >> 4)) for l in lanes]
            qf.append(ldsm(sQ, addrs, False))
        o = [[[0.0] * 4 for _ in lanes] for _ in range(D // 8)]
        m_a, m_b = [-np.inf] * 32, [-np.inf] * 32
        l_a, l_b = [0.0] * 32, [0.0] * 32
        # (the tiles are re-loaded per warp here: the simulation runs one warp after another)
        for t in range(ntiles):
            kt, nkt = t * BK, min(BK, kend - t * BK)
            if t > 0:
                load_kv(sK, own, pre, meta, n_a, k_off, 0, k0 + kt, nkt, kmap_off, has_kmap, hkv, g)
                load_kv(sV, own, pre, meta, n_a, v_off, pre_v, k0 + kt, nkt, kmap_off, has_kmap, hkv, g)
            elif warp > 0:
                load_kv(sK, own, pre, meta, n_a, k_off, 0, k0, min(BK, kend), kmap_off, has_kmap, hkv, g)
                load_kv(sV, own, pre, meta, n_a, v_off, pre_v, k0, min(BK, kend), kmap_off, has_kmap, hkv, g)
            s = [[[0.0] * 4 for _ in lanes] for _ in range(BK // 8)]
            for kk in range(D // 16):
                for jj in range(BK // 16):
                    addrs = [sw(16 * jj + (l & 7) + ((l >> 4) << 3), 2 * kk + ((l >> 3) & 1)) for l in lanes]
                    b = ldsm(sK, addrs, False)
                    mma(s[2 * jj], qf[kk], [x[0] for x in b], [x[1] for x in b])
                    mma(s[2 * jj + 1], qf[kk], [x[2] for x in b], [x[3] for x in b])
            mx_a, mx_b = [-np.inf] * 32, [-np.inf] * 32
            for l in lanes:
                for j in range(BK // 8):
                    for e in range(2):
                        col = 8 * j + t2[l] + e
                        key = kt + col
                        s[j][l][e] = s[j][l][e] * sl2 if (col < nkt and key <= lim_a[l]) else -np.inf
                        s[j][l][2 + e] = s[j][l][2 + e] * sl2 if (col < nkt and key <= lim_b[l]) else -np.inf
                        mx_a[l] = max(mx_a[l], s[j][l][e])
                        mx_b[l] = max(mx_b[l], s[j][l][2 + e])
            for x in (mx_a, mx_b):  # quad shuffles (xor 1, then xor 2)
                y = [max(x[l], x[l ^ 1]) for l in lanes]
                x[:] = [max(y[l], y[l ^ 2]) for l in lanes]
            for l in lanes:
                mn_a, mn_b = max(m_a[l], mx_a[l]), max(m_b[l], mx_b[l])
                al_a, al_b = 2.0 ** (m_a[l] - mn_a), 2.0 ** (m_b[l] - mn_b)
                m_a[l], m_b[l] = mn_a, mn_b
                sa = sb = 0.0
                for j in range(BK // 8):
                    s[j][l][0] = 2.0 ** (s[j][l][0] - mn_a)
                    s[j][l][1] = 2.0 ** (s[j][l][1] - mn_a)
                    s[j][l][2] = 2.0 ** (s[j][l][2] - mn_b)
                    s[j][l][3] = 2.0 ** (s[j][l][3] - mn_b)
                    sa += s[j][l][0] + s[j][l][1]
                    sb += s[j][l][2] + s[j][l][3]
                l_a[l] = l_a[l] * al_a + sa
                l_b[l] = l_b[l] * al_b + sb
                for n in range(D // 8):
                    o[n][l][0] *= al_a
                    o[n][l][1] *= al_a
                    o[n][l][2] *= al_b
                    o[n][l][3] *= al_b
            for kc in range(BK // 16):
                pa = [[(s[2 * kc][l][0], s[2 * kc][l][1]), (s[2 * kc][l][2], s[2 * kc][l][3]),
                       (s[2 * kc + 1][l][0], s[2 * kc + 1][l][1]), (s[2 * kc + 1][l][2], s[2 * kc + 1][l][3])]
                      for l in lanes]
                for nn in range(D // 16):
                    addrs = [sw(16 * kc + (l & 7) + (((l >> 3) & 1) << 3), 2 * nn + (l >> 4)) for l in lanes]
                    b = ldsm(sV, addrs, True)
                    mma(o[2 * nn], pa, [x[0] for x in b], [x[1] for x in b])
                    mma(o[2 * nn + 1], pa, [x[2] for x in b], [x[3] for x in b])
        for x in (l_a, l_b):
            y = [x[l] + x[l ^ 1] for l in lanes]
            x[:] = [y[l] + y[l ^ 2] for l in lanes]
        for l in lanes:
            for r, li, (i0, i1) in ((ra[l], l_a[l], (0, 1)), (rb[l], l_b[l], (2, 3))):
                if r < nqt:
                    base = ((o0 + qs + r) * hq + h) * D + t2[l]
                    for n in range(D // 8):
                        out[base + 8 * n] = o[n][l][i0] / li
                        out[base + 8 * n + 1] = o[n][l][i1] / li


def reference(q, k_rows, v_rows, lim):
    s = q @ k_rows.T / np.sqrt(D)
    out = np.zeros_like(q)
    for i in range(len(q)):
        x = s[i, : lim[i] + 1]
        p = np.exp(x - x.max())
        out[i] = p / p.sum() @ v_rows[: lim[i] + 1]
    return out


def main():
    rng = np.random.default_rng(0)
    hq, hkv = 4, 2
    for n_a, lens, last_only in ((0, [1, 63, 64, 65, 130], False), (37, [1, 5, 64, 70, 128], False),
                                 (37, [1, 70, 128], True), (0, [33, 200], True)):
        T = sum(lens)
        q = rng.standard_normal((T, hq, D))
        k = rng.standard_normal((T, hkv, D))
        v = rng.standard_normal((T, hkv, D))
        kp = rng.standard_normal((n_a, hkv, D))
        vp = rng.standard_normal((n_a, hkv, D))
        own = np.concatenate([q.ravel(), k.ravel(), v.ravel()])
        pre = np.concatenate([kp.ravel(), vp.ravel()]) if n_a else own
        k_lens = [n + n_a for n in lens]
        rows, kmap, q0, k0, ownk = [], [], 0, 0, n_a
        for r, (nq, nk) in enumerate(zip(lens, k_lens)):
            rows.append([q0 + nq - 1, 1, k0, nk, r] if last_only else [q0, nq, k0, nk, q0])
            kmap += list(range(n_a)) + list(range(ownk, ownk + nq))
            ownk += nq
            q0 += nq
            k0 += nk
        meta = [x for r in rows for x in r]
        tiles_off = len(meta)
        tiles = []
        for r, row in enumerate(rows):
            for qs in range(0, row[1], BQ):
                tiles.append((r, qs))
                meta += [r, qs]
        kmap_off = len(meta)
        meta += kmap if n_a else []
        n_out = sum(r[1] for r in rows)
        out = np.full(n_out * hq * D, np.nan)
        for bx in range(len(tiles)):
            for h in range(hq):
                block(own, pre, meta, out, hq, hkv, T * hq * D, T * (hq + hkv) * D, n_a, tiles_off, kmap_off,
                      int(n_a > 0), 1 / np.sqrt(D), bx, h)
        out = out.reshape(n_out, hq, D)
        err = 0.0
        qq0 = 0
        for r, nq in enumerate(lens):
            for h in range(hq):
                g = h // (hq // hkv)
                kr = np.concatenate([kp[:, g], k[qq0: qq0 + nq, g]])
                vr = np.concatenate([vp[:, g], v[qq0: qq0 + nq, g]])
                qi = np.arange(nq)
                lim = n_a + qi
                ref = reference(q[qq0: qq0 + nq, h], kr, vr, lim)
                got = out[r, h][None] if last_only else out[qq0: qq0 + nq, h]
                want = ref[-1:] if last_only else ref
                err = max(err, np.abs(got - want).max())
            qq0 += nq
        print(f"n_a {n_a} lens {lens} last_only {last_only}: max |err| {err:.2e}")
        assert err < 1e-9, f"flash_attn2 simulation differs from the reference by {err}"


class Hazards:
    """The PTX memory model's rules for one block's shared memory, at 16-byte-chunk granularity, for uniform
    control flow (every thread reaches the same barriers and waits; true of flash_attn2)."""

    def __init__(self, threads):
        self.epoch = 0  # barriers passed
        self.open = [[] for _ in range(threads)]  # each thread's uncommitted copies
        self.groups = [[] for _ in range(threads)]  # each thread's committed, not yet waited-for groups
        self.last = {}  # chunk -> its latest copy: [thread, issue epoch, landed epoch or None]
        self.read_in = {}  # chunk -> epoch of its latest read
        self.problems = []

    def cp(self, t, chunk, what):
        w = self.last.get(chunk)
        if w is not None and w[2] is None:
            self.problems.append(f"{what}: chunk {chunk} copied again while a copy is in flight")
        if self.read_in.get(chunk) == self.epoch:
            self.problems.append(f"{what}: chunk {chunk} copied into after a read with no barrier between")
        rec = [t, self.epoch, None]
        self.last[chunk] = rec
        self.open[t].append(rec)

    def commit(self, t):
        self.groups[t].append(self.open[t])
        self.open[t] = []

    def wait(self, t, n):
        done = self.groups[t][: max(0, len(self.groups[t]) - n)]
        self.groups[t] = self.groups[t][len(done):]
        for g in done:
            for rec in g:
                rec[2] = self.epoch

    def barrier(self):
        self.epoch += 1

    def read(self, warp, chunks, what):
        for c in chunks:
            w = self.last.get(c)
            if w is None:
                self.problems.append(f"{what}: chunk {c} read before any copy wrote it")
            elif w[2] is None or w[2] >= self.epoch:  # (a warp-wide ldmatrix counts as every lane reading)
                self.problems.append(f"{what}: chunk {c} read while its copy (thread {w[0]}) is not yet visible")
            self.read_in[c] = self.epoch


def kernel_skeleton(hz, kend, mutation=None):
    """flash_attn2's shared-memory operations in program order (sQ at chunks 0.., sK at 1024.., sV at 2048..)."""
    qb, kb, vb = 0, BQ * CH, BQ * CH + BK * CH
    nt = (kend + BK - 1) // BK

    def copies(base, rows, what):
        for t in range(THREADS):
            for i in range(t, rows * CH, THREADS):
                r, c = i // CH, i % CH
                hz.cp(t, base + sw(r, c) // 8, what)

    def each(fn, *a):
        for t in range(THREADS):
            fn(t, *a)

    copies(qb, BQ, "Q")
    each(hz.commit)
    copies(kb, BK, "K tile 0")
    each(hz.commit)
    copies(vb, BK, "V tile 0")
    each(hz.commit)
    each(hz.wait, 3 if mutation == "Q wait<3>" else 2)
    hz.barrier()
    for w in range(4):
        for kk in range(D // 16):
            hz.read(w, {qb + sw(16 * w + (l & 7) + (((l >> 3) & 1) << 3), 2 * kk + (l >> 4)) // 8 for l in range(32)},
                    "Q fragments")
    def tile(t, base, what, addr):
        """Wait for this tile's K (V), read it into fragments, then fetch the next tile's into the same buffer."""
        each(hz.wait, 2 if mutation == f"{what} wait<2>" else 1)
        if mutation != f"no barrier before reading {what}":
            hz.barrier()
        for w in range(4):
            for a in range(D // 16):
                for b in range(BK // 16):
                    hz.read(w, {base + sw(*addr(l, a, b)) // 8 for l in range(32)}, f"{what} tile {t}")
        if mutation != f"no barrier before the {what} prefetch":
            hz.barrier()
        if t + 1 < nt:
            copies(base, BK, f"{what} tile {t + 1}")
        each(hz.commit)

    for t in range(nt):
        # S = Q·Kᵀ: key 16jj + ..., chunk 2kk + ...; then P·V: key 16kc + ..., chunk 2nn + ... (as in the kernel)
        tile(t, kb, "K", lambda l, kk, jj: (16 * jj + (l & 7) + ((l >> 4) << 3), 2 * kk + ((l >> 3) & 1)))
        tile(t, vb, "V", lambda l, nn, kc: (16 * kc + (l & 7) + (((l >> 3) & 1) << 3), 2 * nn + (l >> 4)))
    each(hz.wait, 0)
    if any(g for gs in hz.groups for g in gs):
        hz.problems.append("copies still in flight at the end")


MUTATIONS = ("Q wait<3>", "K wait<2>", "V wait<2>", "no barrier before reading K", "no barrier before reading V",
             "no barrier before the K prefetch", "no barrier before the V prefetch")


def check_sync(show_mutations=False):
    for kend in (1, 64, 65, 200):
        hz = Hazards(THREADS)
        kernel_skeleton(hz, kend)
        print(f"synchronisation, {(kend + BK - 1) // BK} key tile(s): {len(hz.problems)} hazards")
        assert not hz.problems, hz.problems[:5]
    for m in MUTATIONS:  # the model must see each of these
        hz = Hazards(THREADS)
        kernel_skeleton(hz, 200, m)
        if show_mutations:
            print(f"  mutation {m!r}: {len(hz.problems)} hazards, e.g. {hz.problems[0] if hz.problems else None}")
        assert hz.problems, f"the hazard model misses the mutation {m!r}"


if __name__ == "__main__":
    import sys
    check_sync("--mutations" in sys.argv)
    if "--sync-only" not in sys.argv:
        main()
