/**
 * WebAssembly source of compress's inference conv kernels (the forward ops of a fused inference plan,
 * src/engine/inference.ts): a 1x1 conv as a register-blocked GEMM and a 3x3 depthwise conv, both
 * with the bias and the clamp of a fused activation (linear, ReLU, ReLU6) in their output pass.
 *
 * Generated in two variants from one text: `fma` multiplies-and-adds with f32x4.relaxed_madd (relaxed
 * SIMD; V8 lowers it to one vfmadd on x86 with FMA3, twice the multiply-add throughput of SIMD128's
 * mul + add), the other with f32x4.mul + f32x4.add. A fused multiply-add rounds once, so the two give
 * different bits: the engine identity says which one runs (src/engine/backend.ts).
 * Pointers are byte offsets into tfjs-backend-wasm's heap (the module imports its memory).
 */

/** Rows of a GEMM register tile (times 8 columns: 2 vectors). */
export const GEMM_ROWS = 4;
/** Floats of the left operand a GEMM row block holds (64 KB: the row block is re-read per column strip). */
const GEMM_BLOCK_FLOATS = 16384;
/** Floats of the right operand a GEMM column block holds (256 KB: re-read per row block, from L2). */
const GEMM_B_BLOCK_FLOATS = 65536;

export function convKernelsWat(fma: boolean, R = GEMM_ROWS, unroll = 1): string {
  return `
(module
  (import "env" "memory" (memory 0))
${gemm(R)}
${range(R).map((r) => gemmTile(r + 1, 2, fma, unroll) + gemmTile(r + 1, 1, fma, unroll)).join('')}
${depthwise3x3(fma)})
`;
}

const range = (n: number) => [...Array(n).keys()];

/** acc + a * b on f32x4, fused (relaxed) or not. */
const madd = (fma: boolean, a: string, b: string, acc: string) =>
  fma ? `(f32x4.relaxed_madd ${a} ${b} ${acc})` : `(f32x4.add ${acc} (f32x4.mul ${a} ${b}))`;

/**
 * o[M, N] = clamp(a[M, K] . b[K, N] + bias[N], lo, hi), N a multiple of 4, a's rows contiguous, o's
 * rows `ld` floats apart (a 1x1 conv: a = the input [pixels, Ci], b = the filter [Ci, Co], ld = Co;
 * a thread computing columns [n0, n0 + N) of it passes b, bias and o advanced by n0 columns).
 * b is packed in column strips (packGemmB): strip s = columns [8s, 8s + 8) as K rows of 8 floats
 * (a last strip of 4 columns as K rows of 4), so a strip streams from memory in order (its rows
 * `Co` floats apart would touch a page per row) and takes half the cache lines.
 * Column strips outermost within a block, so a strip (K x 32 bytes) stays in L1 while every row tile
 * passes over it. The last rows of a block (fewer than R) are computed by a full tile over its last
 * R rows (the overlap recomputes rows with the same arithmetic: same bits); only M < R takes the
 * smaller tiles.
 */
function gemm(R: number): string {
  const call = (r: number, w: number) =>
    `(call $g${r}x${w} (local.get $ai) (local.get $aS) (local.get $bj) (local.get $K) (local.get $zj) (local.get $oi) (local.get $oS) (local.get $lo) (local.get $hi))`;
  // M < R rows: one tile of that many rows, chosen by br_table (leaving block $tr runs the tile of r
  // rows: $t1 is the innermost block, $t0 the outermost, which skips them all).
  const small = (w: number) => {
    const labels = range(R).map((r) => `$t${r}`);
    const nested = range(R - 1).map((r) => `(block $t${R - 1 - r}`).join(' ');
    let s = `(block $t0 ${nested}\n          (br_table ${labels.join(' ')} (local.get $M)))`;
    for (let r = 1; r < R; r++) s += `\n          ${call(r, w)} (br $tdone))`;
    return `(block $tdone ${s})`;
  };
  // Every row tile of a strip of w columns: full tiles, then the last R rows if some are left.
  const rows = (w: number) => `
          (if (i32.lt_u (local.get $M) (i32.const ${R}))
            (then ${small(w)})
            (else
              (block $id (loop $il
                (br_if $id (i32.gt_u (i32.add (local.get $i) (i32.const ${R})) (local.get $M)))
                ${call(R, w)}
                (local.set $ai (i32.add (local.get $ai) (local.get $aR)))
                (local.set $oi (i32.add (local.get $oi) (local.get $oR)))
                (local.set $i (i32.add (local.get $i) (i32.const ${R})))
                (br $il)))
              (if (i32.lt_u (local.get $i) (local.get $M))
                (then
                  (local.set $ai (i32.sub (i32.add (local.get $a) (i32.mul (local.get $M) (local.get $aS))) (local.get $aR)))
                  (local.set $oi (i32.sub (i32.add (local.get $oj) (i32.mul (local.get $M) (local.get $oS))) (local.get $oR)))
                  ${call(R, w)}))))`;
  return `
  (func (export "gemm_bias_act") (param $a i32) (param $b i32) (param $bias i32) (param $o i32) (param $M i32) (param $K i32) (param $N i32)
    (param $lo f32) (param $hi f32) (param $ld i32)
    (local $m i32) (local $mb i32) (local $n i32) (local $nb i32) (local $blocks i32)
    ;; Blocks of columns whose part of b (K x nb floats) stays in L2 while every row block passes, and
    ;; blocks of rows whose part of a (mb x K floats) stays in L1/L2 while every column strip passes
    ;; (M split in equal blocks, multiples of ${R} rows: no short last block).
    (local.set $nb (i32.and (i32.div_u (i32.const ${GEMM_B_BLOCK_FLOATS}) (local.get $K)) (i32.const -8)))
    (if (i32.lt_u (local.get $nb) (i32.const 8)) (then (local.set $nb (i32.const 8))))
    (local.set $mb (i32.div_u (i32.const ${GEMM_BLOCK_FLOATS}) (local.get $K)))
    (if (i32.lt_u (local.get $mb) (i32.const 16)) (then (local.set $mb (i32.const 16))))
    (local.set $blocks (i32.div_u (i32.add (local.get $M) (i32.sub (local.get $mb) (i32.const 1))) (local.get $mb)))
    (local.set $mb (i32.div_u (i32.add (local.get $M) (i32.sub (local.get $blocks) (i32.const 1))) (local.get $blocks)))
    (local.set $mb (i32.mul (i32.div_u (i32.add (local.get $mb) (i32.const ${R - 1})) (i32.const ${R})) (i32.const ${R})))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_u (local.get $n) (local.get $N)))
      (local.set $m (i32.const 0))
      (block $md (loop $ml
        (br_if $md (i32.ge_u (local.get $m) (local.get $M)))
        (call $gemm_block
          (i32.add (local.get $a) (i32.shl (i32.mul (local.get $m) (local.get $K)) (i32.const 2)))
          (i32.add (local.get $b) (i32.shl (i32.mul (local.get $n) (local.get $K)) (i32.const 2)))
          (i32.add (local.get $bias) (i32.shl (local.get $n) (i32.const 2)))
          (i32.add (local.get $o) (i32.shl (i32.add (i32.mul (local.get $m) (local.get $ld)) (local.get $n)) (i32.const 2)))
          (select (local.get $mb) (i32.sub (local.get $M) (local.get $m)) (i32.le_u (i32.add (local.get $m) (local.get $mb)) (local.get $M)))
          (local.get $K)
          (select (local.get $nb) (i32.sub (local.get $N) (local.get $n)) (i32.le_u (i32.add (local.get $n) (local.get $nb)) (local.get $N)))
          (local.get $lo) (local.get $hi) (local.get $ld))
        (local.set $m (i32.add (local.get $m) (local.get $mb)))
        (br $ml)))
      (local.set $n (i32.add (local.get $n) (local.get $nb)))
      (br $nl))))

  (func $gemm_block (param $a i32) (param $b i32) (param $bias i32) (param $o i32) (param $M i32) (param $K i32) (param $N i32)
    (param $lo f32) (param $hi f32) (param $ld i32)
    (local $i i32) (local $j i32) (local $ai i32) (local $oi i32) (local $oj i32) (local $bj i32) (local $zj i32) (local $aS i32) (local $oS i32)
    (local $aR i32) (local $oR i32)
    (local.set $aS (i32.shl (local.get $K) (i32.const 2)))
    (local.set $oS (i32.shl (local.get $ld) (i32.const 2)))
    (local.set $aR (i32.mul (local.get $aS) (i32.const ${R})))
    (local.set $oR (i32.mul (local.get $oS) (i32.const ${R})))
    (block $jd (loop $jl
      (br_if $jd (i32.ge_u (local.get $j) (local.get $N)))
      (local.set $bj (i32.add (local.get $b) (i32.mul (local.get $j) (local.get $aS))))
      (local.set $zj (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2))))
      (local.set $i (i32.const 0))
      (local.set $ai (local.get $a))
      (local.set $oj (i32.add (local.get $o) (i32.shl (local.get $j) (i32.const 2))))
      (local.set $oi (local.get $oj))
      (if (i32.le_u (i32.add (local.get $j) (i32.const 8)) (local.get $N))
        (then ${rows(8)}
          (local.set $j (i32.add (local.get $j) (i32.const 8))))
        (else ${rows(4)}
          (local.set $j (i32.add (local.get $j) (i32.const 4)))))
      (br $jl))))
`;
}

/**
 * b [K, N] (row-major, N a multiple of 4) in the strips gemm_bias_act reads: strip s holds columns
 * [8s, 8s + 8) as K rows of 8 floats, a last strip of 4 columns as K rows of 4. Strip s starts at
 * float 8sK, so columns [n0, N) of the packed b start at float n0 K (n0 a multiple of 8).
 */
export function packGemmB(b: Float32Array<ArrayBufferLike>, K: number, N: number, out: Float32Array<ArrayBufferLike> = new Float32Array(K * N)): Float32Array<ArrayBufferLike> {
  for (let j = 0; j < N; j += 8) {
    const w = Math.min(8, N - j);
    let d = j * K;
    for (let k = 0; k < K; k++, d += w) for (let c = 0; c < w; c++) out[d + c] = b[k * N + j + c];
  }
  return out;
}

/**
 * A register tile of gemm_bias_act: P rows x 4V columns, accumulators started at the bias, summed
 * over K (splat of a_i[k] times b[k, 4j..4j+3]), clamped to [lo, hi] and stored (row stride oS).
 */
function gemmTile(P: number, V: number, fma: boolean, unroll: number): string {
  const acc = (i: number, j: number) => `$c${i}_${j}`;
  const aRow = (i: number) => (i === 0 ? '$a' : `$a${i}`);
  const lines: string[] = [];
  lines.push(`  (func $g${P}x${4 * V} (param $a i32) (param $aS i32) (param $b i32) (param $K i32) (param $bias i32) (param $o i32) (param $oS i32) (param $lo f32) (param $hi f32)`);
  const locals = ['(local $k i32) (local $s v128) (local $lov v128) (local $hiv v128)'];
  for (let i = 1; i < P; i++) locals.push(`(local $a${i} i32)`);
  for (let j = 0; j < V; j++) locals.push(`(local $b${j} v128)`);
  for (let i = 0; i < P; i++) for (let j = 0; j < V; j++) locals.push(`(local ${acc(i, j)} v128)`);
  lines.push('    ' + locals.join(' '));
  for (let i = 1; i < P; i++) lines.push(`    (local.set $a${i} (i32.add (local.get $a) (i32.mul (local.get $aS) (i32.const ${i}))))`);
  for (let j = 0; j < V; j++) {
    lines.push(`    (local.set ${acc(0, j)} (v128.load offset=${16 * j} (local.get $bias)))`);
    for (let i = 1; i < P; i++) lines.push(`    (local.set ${acc(i, j)} (local.get ${acc(0, j)}))`);
  }
  // K steps `unroll` at a time (fewer loop-carried updates and stack checks per multiply-add; b's rows
  // are 16V bytes apart in its packed strips, so every load takes a constant offset), then one at a time.
  const step = (u: number) => {
    for (let j = 0; j < V; j++) lines.push(`      (local.set $b${j} (v128.load offset=${16 * (V * u + j)} (local.get $b)))`);
    for (let i = 0; i < P; i++) {
      lines.push(`      (local.set $s (v128.load32_splat offset=${4 * u} (local.get ${aRow(i)})))`);
      for (let j = 0; j < V; j++) lines.push(`      (local.set ${acc(i, j)} ${madd(fma, '(local.get $s)', `(local.get $b${j})`, `(local.get ${acc(i, j)})`)})`);
    }
  };
  const advance = (u: number) => {
    for (let i = 0; i < P; i++) lines.push(`      (local.set ${aRow(i)} (i32.add (local.get ${aRow(i)}) (i32.const ${4 * u})))`);
    lines.push(`      (local.set $b (i32.add (local.get $b) (i32.const ${16 * V * u})))`);
    lines.push(`      (local.set $k (i32.add (local.get $k) (i32.const ${u})))`);
  };
  if (unroll > 1) {
    lines.push(`    (block $ud (loop $ul (br_if $ud (i32.gt_u (i32.add (local.get $k) (i32.const ${unroll})) (local.get $K)))`);
    for (let u = 0; u < unroll; u++) step(u);
    advance(unroll);
    lines.push('      (br $ul)))');
  }
  lines.push('    (block $d (loop $l (br_if $d (i32.ge_u (local.get $k) (local.get $K)))');
  step(0);
  advance(1);
  lines.push('      (br $l)))');
  lines.push('    (local.set $lov (f32x4.splat (local.get $lo)))');
  lines.push('    (local.set $hiv (f32x4.splat (local.get $hi)))');
  for (let i = 0; i < P; i++) {
    for (let j = 0; j < V; j++)
      lines.push(`    (v128.store offset=${16 * j} (local.get $o) (f32x4.pmin (f32x4.pmax (local.get ${acc(i, j)}) (local.get $lov)) (local.get $hiv)))`);
    if (i < P - 1) lines.push('    (local.set $o (i32.add (local.get $o) (local.get $oS)))');
  }
  lines.push('  )\n');
  return lines.join('\n') + '\n';
}

/**
 * o = clamp(depthwise 3x3 conv of x + bias, lo, hi), NHWC, channel multiplier 1, C a multiple of 4,
 * any stride, padding given by its top and left (out-of-image taps add nothing), dilation 1; output
 * rows [oh0, oh1) of every image (threads split the rows).
 * Per output row and group of 4 channels the 9 filter vectors and the bias stay in registers while
 * the row's pixels pass (measured faster than chunks of pixels whose input rows stay in L1); pixels
 * whose 3x3 window lies inside the image take the unchecked path.
 */
function depthwise3x3(fma: boolean): string {
  const taps: Array<[number, number]> = [];
  for (let kh = 0; kh < 3; kh++) for (let kw = 0; kw < 3; kw++) taps.push([kh, kw]);
  const w = (kh: number, kw: number) => `$w${kh}${kw}`;
  // Address of tap (kh, kw) of the pixel whose window starts at $p0 (rows $p0, $p1, $p2).
  const addr = (kh: number, kw: number) =>
    kw === 0 ? `(local.get $p${kh})` : kw === 1 ? `(i32.add (local.get $p${kh}) (local.get $ps))` : `(i32.add (local.get $p${kh}) (local.get $ps2))`;
  // Three partial sums, one a filter row ($acc from the bias, $acc1, $acc2 from zero or the row's first
  // product), added at the end: three short dependency chains instead of one of 9 multiply-adds
  // (a chain of 9 is latency-bound: ~2.7 GMAC/s against ~4-5 with three).
  const accOf = (kh: number) => (kh === 0 ? '$acc' : `$acc${kh}`);
  const sum = (checked: boolean) => {
    const ops = taps.map(([kh, kw]) => {
      const x = `(v128.load ${addr(kh, kw)})`, wv = `(local.get ${w(kh, kw)})`, acc = accOf(kh);
      const op = !checked && kh > 0 && kw === 0 ? `(local.set ${acc} (f32x4.mul ${x} ${wv}))` : `(local.set ${acc} ${madd(fma, x, wv, `(local.get ${acc})`)})`;
      if (!checked) return op;
      const inside = `(i32.and (i32.lt_u (i32.add (local.get $ih) (i32.const ${kh})) (local.get $H)) (i32.lt_u (i32.add (local.get $iw) (i32.const ${kw})) (local.get $W)))`;
      return `(if ${inside} (then ${op}))`;
    });
    const init = checked ? ['(local.set $acc1 (v128.const i32x4 0 0 0 0))', '(local.set $acc2 (v128.const i32x4 0 0 0 0))'] : [];
    return [...init, ...ops, '(local.set $acc (f32x4.add (f32x4.add (local.get $acc) (local.get $acc1)) (local.get $acc2)))'].join('\n            ');
  };
  const weightLocals = taps.map(([kh, kw]) => `(local ${w(kh, kw)} v128)`).join(' ');
  const loadWeights = taps
    .map(([kh, kw]) => `(local.set ${w(kh, kw)} (v128.load offset=0 (i32.add (local.get $wc) (i32.mul (local.get $cs) (i32.const ${kh * 3 + kw})))))`)
    .join('\n        ');
  return `
  (func (export "dw3x3") (param $x i32) (param $wt i32) (param $bias i32) (param $o i32)
    (param $N i32) (param $H i32) (param $W i32) (param $C i32) (param $oH i32) (param $oW i32)
    (param $sh i32) (param $sw i32) (param $top i32) (param $left i32) (param $lo f32) (param $hi f32)
    (param $oh0 i32) (param $oh1 i32)
    (local $n i32) (local $oh i32) (local $ow i32) (local $c i32) (local $ih i32) (local $iw i32)
    (local $cs i32) (local $ps i32) (local $ps2 i32) (local $rs i32) (local $wc i32) (local $xn i32) (local $orow i32)
    (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $po i32) (local $rowsIn i32) (local $step i32)
    (local $acc v128) (local $acc1 v128) (local $acc2 v128) (local $b v128) (local $lov v128) (local $hiv v128) ${weightLocals}
    (local.set $cs (i32.shl (local.get $C) (i32.const 2)))
    (local.set $ps (local.get $cs))
    (local.set $ps2 (i32.shl (local.get $cs) (i32.const 1)))
    (local.set $rs (i32.mul (local.get $W) (local.get $cs)))
    (local.set $step (i32.mul (local.get $sw) (local.get $cs)))
    (local.set $lov (f32x4.splat (local.get $lo)))
    (local.set $hiv (f32x4.splat (local.get $hi)))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_u (local.get $n) (local.get $N)))
      (local.set $xn (i32.add (local.get $x) (i32.mul (i32.mul (local.get $n) (local.get $H)) (local.get $rs))))
      (local.set $oh (local.get $oh0))
      (local.set $orow (i32.add (local.get $o) (i32.mul (i32.mul (i32.add (i32.mul (local.get $n) (local.get $oH)) (local.get $oh)) (local.get $oW)) (local.get $cs))))
      (block $hd (loop $hl
        (br_if $hd (i32.ge_u (local.get $oh) (local.get $oh1)))
        (local.set $ih (i32.sub (i32.mul (local.get $oh) (local.get $sh)) (local.get $top)))
        (local.set $rowsIn (i32.and (i32.ge_s (local.get $ih) (i32.const 0)) (i32.le_s (i32.add (local.get $ih) (i32.const 3)) (local.get $H))))
        (local.set $c (i32.const 0))
        (block $cd (loop $cl
          (br_if $cd (i32.ge_u (local.get $c) (local.get $cs)))
          (local.set $wc (i32.add (local.get $wt) (local.get $c)))
          ${loadWeights}
          (local.set $b (v128.load (i32.add (local.get $bias) (local.get $c))))
          (local.set $po (i32.add (local.get $orow) (local.get $c)))
          (local.set $iw (i32.sub (i32.const 0) (local.get $left)))
          ;; window start of this pixel (may lie outside the image: then only checked taps read)
          (local.set $p0 (i32.add (i32.add (local.get $xn) (local.get $c))
            (i32.add (i32.mul (local.get $ih) (local.get $rs)) (i32.mul (local.get $iw) (local.get $cs)))))
          (local.set $ow (i32.const 0))
          (block $wd (loop $wl
            (br_if $wd (i32.ge_u (local.get $ow) (local.get $oW)))
            (local.set $p1 (i32.add (local.get $p0) (local.get $rs)))
            (local.set $p2 (i32.add (local.get $p1) (local.get $rs)))
            (local.set $acc (local.get $b))
            (if (i32.and (local.get $rowsIn) (i32.and (i32.ge_s (local.get $iw) (i32.const 0)) (i32.le_s (i32.add (local.get $iw) (i32.const 3)) (local.get $W))))
              (then
            ${sum(false)})
              (else
            ${sum(true)}))
            (v128.store (local.get $po) (f32x4.pmin (f32x4.pmax (local.get $acc) (local.get $lov)) (local.get $hiv)))
            (local.set $po (i32.add (local.get $po) (local.get $cs)))
            (local.set $p0 (i32.add (local.get $p0) (local.get $step)))
            (local.set $iw (i32.add (local.get $iw) (local.get $sw)))
            (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
            (br $wl)))
          (local.set $c (i32.add (local.get $c) (i32.const 16)))
          (br $cl)))
        (local.set $orow (i32.add (local.get $orow) (i32.mul (local.get $oW) (local.get $cs))))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $hl)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $nl))))
`;
}
