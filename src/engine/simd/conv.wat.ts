/**
 * WebAssembly source of compress's inference conv kernels (the forward ops of a fused inference plan,
 * src/engine/inference.ts): a 1x1 conv as a register-blocked GEMM, a 3x3 depthwise conv and an image
 * model's first conv (3x3 over 3 channels), each with the bias and the clamp of a fused activation
 * (linear, ReLU, ReLU6) in its output pass.
 * A lesson of V8 11's TurboFan that shapes them: it schedules a loop body's (or a straight function's)
 * loads ahead of their uses, so a body with more loads in flight than free xmm registers spills; tiles
 * stay at 4 x 8 accumulators with one k step a loop iteration (unrolled variants measured 30-40% slower).
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
/** Columns of a block from which its rows are packed (pack_a) for the tiles: the copy pays off over 8+ strips. */
const GEMM_PACK_A_MIN_N = 64;

/**
 * Floats of the scratch gemm_bias_act packs a block of a's rows into (per thread): a block holds at
 * most max(16, 16384 / K) rows, plus the rounding of equal blocks and the last group's overlap.
 */
export const gemmScratchFloats = (K: number): number => (Math.max(16, Math.floor(GEMM_BLOCK_FLOATS / K)) + 8) * K;

export function convKernelsWat(fma: boolean, R = GEMM_ROWS): string {
  return `
(module
  (import "env" "memory" (memory 0))
${gemm(R)}
${range(R).map((r) => gemmTile(r + 1, 2, fma) + gemmTile(r + 1, 1, fma)).join('')}
${gemmTilePacked(R, 2, fma) + gemmTilePacked(R, 1, fma)}
${depthwise3x3(fma)}
${conv3x3c3(fma)})
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
  // The same over a's rows packed in groups of R (pack_a): group g at scratch + g K 4R bytes, the
  // last group (if M % R) being rows M - R .. M - 1.
  const callPacked = (w: number) =>
    `(call $g${R}x${w}p (local.get $ai) (local.get $bj) (local.get $K) (local.get $zj) (local.get $oi) (local.get $oS) (local.get $lo) (local.get $hi))`;
  const rowsPacked = (w: number) => `
          (local.set $ai (local.get $scratch))
          (block $id (loop $il
            (br_if $id (i32.gt_u (i32.add (local.get $i) (i32.const ${R})) (local.get $M)))
            ${callPacked(w)}
            (local.set $ai (i32.add (local.get $ai) (local.get $aR)))
            (local.set $oi (i32.add (local.get $oi) (local.get $oR)))
            (local.set $i (i32.add (local.get $i) (i32.const ${R})))
            (br $il)))
          (if (i32.lt_u (local.get $i) (local.get $M))
            (then
              (local.set $oi (i32.sub (i32.add (local.get $oj) (i32.mul (local.get $M) (local.get $oS))) (local.get $oR)))
              ${callPacked(w)}))`;
  return `
  (func (export "gemm_bias_act") (param $a i32) (param $b i32) (param $bias i32) (param $o i32) (param $M i32) (param $K i32) (param $N i32)
    (param $lo f32) (param $hi f32) (param $ld i32) (param $scratch i32)
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
          (local.get $lo) (local.get $hi) (local.get $ld) (local.get $scratch))
        (local.set $m (i32.add (local.get $m) (local.get $mb)))
        (br $ml)))
      (local.set $n (i32.add (local.get $n) (local.get $nb)))
      (br $nl))))

  (func $gemm_block (param $a i32) (param $b i32) (param $bias i32) (param $o i32) (param $M i32) (param $K i32) (param $N i32)
    (param $lo f32) (param $hi f32) (param $ld i32) (param $scratch i32)
    (local $i i32) (local $j i32) (local $ai i32) (local $oi i32) (local $oj i32) (local $bj i32) (local $zj i32) (local $aS i32) (local $oS i32)
    (local $aR i32) (local $oR i32) (local $packed i32)
    (local.set $aS (i32.shl (local.get $K) (i32.const 2)))
    (local.set $oS (i32.shl (local.get $ld) (i32.const 2)))
    (local.set $aR (i32.mul (local.get $aS) (i32.const ${R})))
    (local.set $oR (i32.mul (local.get $oS) (i32.const ${R})))
    ;; a's rows packed in groups of ${R} when the block has ${GEMM_PACK_A_MIN_N}+ columns to reuse them (the
    ;; tiles' loads then come from one pointer: fewer instructions per multiply-add)
    (local.set $packed (i32.and (i32.and (i32.ne (local.get $scratch) (i32.const 0)) (i32.ge_u (local.get $M) (i32.const ${R})))
      (i32.ge_u (local.get $N) (i32.const ${GEMM_PACK_A_MIN_N}))))
    (if (local.get $packed) (then (call $pack_a (local.get $a) (local.get $K) (local.get $M) (local.get $scratch))))
    (block $jd (loop $jl
      (br_if $jd (i32.ge_u (local.get $j) (local.get $N)))
      (local.set $bj (i32.add (local.get $b) (i32.mul (local.get $j) (local.get $aS))))
      (local.set $zj (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2))))
      (local.set $i (i32.const 0))
      (local.set $ai (local.get $a))
      (local.set $oj (i32.add (local.get $o) (i32.shl (local.get $j) (i32.const 2))))
      (local.set $oi (local.get $oj))
      (if (i32.le_u (i32.add (local.get $j) (i32.const 8)) (local.get $N))
        (then
          (if (local.get $packed) (then ${rowsPacked(8)}) (else ${rows(8)}))
          (local.set $j (i32.add (local.get $j) (i32.const 8))))
        (else
          (if (local.get $packed) (then ${rowsPacked(4)}) (else ${rows(4)}))
          (local.set $j (i32.add (local.get $j) (i32.const 4)))))
      (br $jl))))

  ;; a [M, K] (M >= ${R}) in groups of ${R} rows, k-major: group g holds rows ${R}g.. as K vectors (one float per
  ;; row), the last group (if M % ${R}) rows M - ${R} .. M - 1. 4 x 4 blocks transposed by shuffles.
  (func $pack_a (param $a i32) (param $K i32) (param $M i32) (param $dst i32)
    (local $g i32) (local $r i32) (local $k i32) (local $aS i32) (local $s i32) (local $d i32)
    (local $x0 v128) (local $x1 v128) (local $x2 v128) (local $x3 v128) (local $t0 v128) (local $t1 v128) (local $t2 v128) (local $t3 v128)
    (local.set $aS (i32.shl (local.get $K) (i32.const 2)))
    (block $gd (loop $gl
      (br_if $gd (i32.ge_u (local.get $r) (local.get $M)))
      ;; first row of the group (the last group overlaps the one before)
      (if (i32.gt_u (i32.add (local.get $r) (i32.const ${R})) (local.get $M)) (then (local.set $r (i32.sub (local.get $M) (i32.const ${R})))))
      (local.set $s (i32.add (local.get $a) (i32.mul (local.get $r) (local.get $aS))))
      (local.set $k (i32.const 0))
      (block $kd (loop $kl
        (br_if $kd (i32.gt_u (i32.add (local.get $k) (i32.const 4)) (local.get $K)))
        (local.set $x0 (v128.load (local.get $s)))
        (local.set $x1 (v128.load (i32.add (local.get $s) (local.get $aS))))
        (local.set $x2 (v128.load (i32.add (local.get $s) (i32.shl (local.get $aS) (i32.const 1)))))
        (local.set $x3 (v128.load (i32.add (local.get $s) (i32.mul (local.get $aS) (i32.const 3)))))
        (local.set $t0 (i8x16.shuffle ${lanes(0, 4, 1, 5)} (local.get $x0) (local.get $x1)))
        (local.set $t1 (i8x16.shuffle ${lanes(0, 4, 1, 5)} (local.get $x2) (local.get $x3)))
        (local.set $t2 (i8x16.shuffle ${lanes(2, 6, 3, 7)} (local.get $x0) (local.get $x1)))
        (local.set $t3 (i8x16.shuffle ${lanes(2, 6, 3, 7)} (local.get $x2) (local.get $x3)))
        (v128.store offset=0 (local.get $dst) (i8x16.shuffle ${lanes(0, 1, 4, 5)} (local.get $t0) (local.get $t1)))
        (v128.store offset=16 (local.get $dst) (i8x16.shuffle ${lanes(2, 3, 6, 7)} (local.get $t0) (local.get $t1)))
        (v128.store offset=32 (local.get $dst) (i8x16.shuffle ${lanes(0, 1, 4, 5)} (local.get $t2) (local.get $t3)))
        (v128.store offset=48 (local.get $dst) (i8x16.shuffle ${lanes(2, 3, 6, 7)} (local.get $t2) (local.get $t3)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 64)))
        (local.set $s (i32.add (local.get $s) (i32.const 16)))
        (local.set $k (i32.add (local.get $k) (i32.const 4)))
        (br $kl)))
      (block $ed (loop $el
        (br_if $ed (i32.ge_u (local.get $k) (local.get $K)))
        (f32.store offset=0 (local.get $dst) (f32.load (local.get $s)))
        (f32.store offset=4 (local.get $dst) (f32.load (i32.add (local.get $s) (local.get $aS))))
        (f32.store offset=8 (local.get $dst) (f32.load (i32.add (local.get $s) (i32.shl (local.get $aS) (i32.const 1)))))
        (f32.store offset=12 (local.get $dst) (f32.load (i32.add (local.get $s) (i32.mul (local.get $aS) (i32.const 3)))))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (local.set $s (i32.add (local.get $s) (i32.const 4)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $el)))
      (local.set $r (i32.add (local.get $r) (i32.const ${R})))
      (br $gl))))
`;
}

/** i8x16.shuffle's byte indices picking float lanes l0..l3 of (a, b) (lanes 4-7 are b's). */
const lanes = (...l: number[]) => l.flatMap((x) => [0, 1, 2, 3].map((b) => 4 * x + b)).join(' ');

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
function gemmTile(P: number, V: number, fma: boolean): string {
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
  // K >= 1: the loop tests at its end (one branch per k); $k is the end of row 0.
  lines.push('    (local.set $k (i32.add (local.get $a) (i32.shl (local.get $K) (i32.const 2))))');
  lines.push('    (loop $l');
  for (let j = 0; j < V; j++) lines.push(`      (local.set $b${j} (v128.load offset=${16 * j} (local.get $b)))`);
  for (let i = 0; i < P; i++) {
    lines.push(`      (local.set $s (v128.load32_splat (local.get ${aRow(i)})))`);
    for (let j = 0; j < V; j++) lines.push(`      (local.set ${acc(i, j)} ${madd(fma, '(local.get $s)', `(local.get $b${j})`, `(local.get ${acc(i, j)})`)})`);
  }
  for (let i = 0; i < P; i++) lines.push(`      (local.set ${aRow(i)} (i32.add (local.get ${aRow(i)}) (i32.const 4)))`);
  lines.push(`      (local.set $b (i32.add (local.get $b) (i32.const ${16 * V})))`);
  lines.push('      (br_if $l (i32.lt_u (local.get $a) (local.get $k))))');
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
 * A register tile of gemm_bias_act over packed rows (pack_a): P rows x 4V columns, the P rows' values
 * of one k a vector apart: every load of the loop from one pointer (a) at a constant offset.
 */
function gemmTilePacked(P: number, V: number, fma: boolean): string {
  const acc = (i: number, j: number) => `$c${i}_${j}`;
  const lines: string[] = [];
  lines.push(`  (func $g${P}x${4 * V}p (param $a i32) (param $b i32) (param $K i32) (param $bias i32) (param $o i32) (param $oS i32) (param $lo f32) (param $hi f32)`);
  const locals = ['(local $end i32) (local $s v128) (local $lov v128) (local $hiv v128)'];
  for (let j = 0; j < V; j++) locals.push(`(local $b${j} v128)`);
  for (let i = 0; i < P; i++) for (let j = 0; j < V; j++) locals.push(`(local ${acc(i, j)} v128)`);
  lines.push('    ' + locals.join(' '));
  for (let j = 0; j < V; j++) {
    lines.push(`    (local.set ${acc(0, j)} (v128.load offset=${16 * j} (local.get $bias)))`);
    for (let i = 1; i < P; i++) lines.push(`    (local.set ${acc(i, j)} (local.get ${acc(0, j)}))`);
  }
  lines.push(`    (local.set $end (i32.add (local.get $a) (i32.mul (local.get $K) (i32.const ${4 * P}))))`);
  // K >= 1: the test at the loop's end (one branch per k)
  lines.push('    (loop $l');
  for (let j = 0; j < V; j++) lines.push(`      (local.set $b${j} (v128.load offset=${16 * j} (local.get $b)))`);
  for (let i = 0; i < P; i++) {
    lines.push(`      (local.set $s (v128.load32_splat offset=${4 * i} (local.get $a)))`);
    for (let j = 0; j < V; j++) lines.push(`      (local.set ${acc(i, j)} ${madd(fma, '(local.get $s)', `(local.get $b${j})`, `(local.get ${acc(i, j)})`)})`);
  }
  lines.push(`      (local.set $a (i32.add (local.get $a) (i32.const ${4 * P})))`);
  lines.push(`      (local.set $b (i32.add (local.get $b) (i32.const ${16 * V})))`);
  lines.push('      (br_if $l (i32.lt_u (local.get $a) (local.get $end))))');
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
 * An output row: pixels whose 3x3 window lies inside the image's columns go in chunks of 8 (then 4)
 * for strides 1 and 2 (dw3x3_chunk: per group of 4 channels, each input column of a filter row is
 * loaded once and multiplied into every output of the chunk it touches, 8 accumulators in flight);
 * the others one at a time (dw3x3_pixel, every tap checked). Rows outside the image are skipped per
 * output row. Every output sums bias + taps in the order (kh, kw) with the same multiply-adds on
 * every path, so chunking (and threads) never change a bit.
 */
function depthwise3x3(fma: boolean): string {
  return `
  (func (export "dw3x3") (param $x i32) (param $wt i32) (param $bias i32) (param $o i32)
    (param $N i32) (param $H i32) (param $W i32) (param $C i32) (param $oH i32) (param $oW i32)
    (param $sh i32) (param $sw i32) (param $top i32) (param $left i32) (param $lo f32) (param $hi f32)
    (param $oh0 i32) (param $oh1 i32)
    (local $n i32) (local $oh i32) (local $ow i32) (local $ih i32) (local $cs i32) (local $rs i32)
    (local $xrow i32) (local $orow i32) (local $r0 i32) (local $r1 i32) (local $r2 i32) (local $owLo i32) (local $owHi i32)
    (local.set $cs (i32.shl (local.get $C) (i32.const 2)))
    (local.set $rs (i32.mul (local.get $W) (local.get $cs)))
    ;; interior columns: ow * sw - left >= 0 and ow * sw - left + 2 <= W - 1
    (local.set $owLo (i32.div_u (i32.add (local.get $left) (i32.sub (local.get $sw) (i32.const 1))) (local.get $sw)))
    (local.set $owHi (select
      (i32.add (i32.div_u (i32.sub (i32.add (local.get $W) (local.get $left)) (i32.const 3)) (local.get $sw)) (i32.const 1))
      (i32.const 0)
      (i32.ge_s (i32.sub (i32.add (local.get $W) (local.get $left)) (i32.const 3)) (i32.const 0))))
    (if (i32.gt_u (local.get $owHi) (local.get $oW)) (then (local.set $owHi (local.get $oW))))
    (if (i32.gt_u (local.get $sw) (i32.const 2)) (then (local.set $owHi (i32.const 0))))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_u (local.get $n) (local.get $N)))
      (local.set $oh (local.get $oh0))
      (block $hd (loop $hl
        (br_if $hd (i32.ge_u (local.get $oh) (local.get $oh1)))
        (local.set $ih (i32.sub (i32.mul (local.get $oh) (local.get $sh)) (local.get $top)))
        (local.set $r0 (i32.lt_u (local.get $ih) (local.get $H)))
        (local.set $r1 (i32.lt_u (i32.add (local.get $ih) (i32.const 1)) (local.get $H)))
        (local.set $r2 (i32.lt_u (i32.add (local.get $ih) (i32.const 2)) (local.get $H)))
        ;; start of input row ih (outside the image when ih < 0: then only rows r1, r2 are read)
        (local.set $xrow (i32.add (local.get $x) (i32.mul (i32.add (i32.mul (local.get $n) (local.get $H)) (local.get $ih)) (local.get $rs))))
        (local.set $orow (i32.add (local.get $o) (i32.mul (i32.mul (i32.add (i32.mul (local.get $n) (local.get $oH)) (local.get $oh)) (local.get $oW)) (local.get $cs))))
        (local.set $ow (i32.const 0))
        (block $ld (loop $ll
          (br_if $ld (i32.ge_u (local.get $ow) (select (local.get $owLo) (local.get $oW) (i32.lt_u (local.get $owLo) (local.get $oW)))))
          ${pixelCall}
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $ll)))
        ${[8, 4].map((P) => `
        (block $c${P}d (loop $c${P}l
          (br_if $c${P}d (i32.gt_u (i32.add (local.get $ow) (i32.const ${P})) (local.get $owHi)))
          (if (i32.eq (local.get $sw) (i32.const 1))
            (then (call $dw_chunk${P}_1 ${chunkArgs}))
            (else (call $dw_chunk${P}_2 ${chunkArgs})))
          (local.set $ow (i32.add (local.get $ow) (i32.const ${P})))
          (br $c${P}l)))`).join('')}
        (block $rd (loop $rl
          (br_if $rd (i32.ge_u (local.get $ow) (local.get $oW)))
          ${pixelCall}
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $rl)))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $hl)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $nl))))
${dwPixel(fma)}
${[8, 4].map((P) => dwChunk(P, 1, fma) + dwChunk(P, 2, fma)).join('')}
`;
}

/** Input pointer of the column iw = ow * sw - left of row xrow, and output pointer of pixel ow. */
const pixelArgs = `(i32.add (local.get $xrow) (i32.mul (i32.sub (i32.mul (local.get $ow) (local.get $sw)) (local.get $left)) (local.get $cs)))
            (local.get $wt) (local.get $bias) (i32.add (local.get $orow) (i32.mul (local.get $ow) (local.get $cs)))
            (local.get $cs) (local.get $rs) (local.get $r0) (local.get $r1) (local.get $r2) (local.get $lo) (local.get $hi)`;
const pixelCall = `(call $dw_pixel ${pixelArgs} (i32.sub (i32.mul (local.get $ow) (local.get $sw)) (local.get $left)) (local.get $W))`;
const chunkArgs = pixelArgs;

/** One output pixel, every tap checked against the image (rows by r0..r2, columns by iw and W). */
function dwPixel(fma: boolean): string {
  const taps: string[] = [];
  for (let kh = 0; kh < 3; kh++)
    for (let kw = 0; kw < 3; kw++) {
      const addr = `(i32.add (i32.add (local.get $xp) (local.get $c)) (i32.add (i32.mul (local.get $rs) (i32.const ${kh})) (i32.mul (local.get $cs) (i32.const ${kw}))))`;
      const waddr = `(i32.add (i32.add (local.get $wt) (local.get $c)) (i32.mul (local.get $cs) (i32.const ${kh * 3 + kw})))`;
      taps.push(`(if (i32.and (local.get $r${kh}) (local.get $k${kw})) (then (local.set $acc ${madd(fma, `(v128.load ${addr})`, `(v128.load ${waddr})`, '(local.get $acc)')})))`);
    }
  return `
  (func $dw_pixel (param $xp i32) (param $wt i32) (param $bias i32) (param $op i32) (param $cs i32) (param $rs i32)
    (param $r0 i32) (param $r1 i32) (param $r2 i32) (param $lo f32) (param $hi f32) (param $iw i32) (param $W i32)
    (local $c i32) (local $k0 i32) (local $k1 i32) (local $k2 i32) (local $acc v128) (local $lov v128) (local $hiv v128)
    (local.set $lov (f32x4.splat (local.get $lo)))
    (local.set $hiv (f32x4.splat (local.get $hi)))
    (local.set $k0 (i32.lt_u (local.get $iw) (local.get $W)))
    (local.set $k1 (i32.lt_u (i32.add (local.get $iw) (i32.const 1)) (local.get $W)))
    (local.set $k2 (i32.lt_u (i32.add (local.get $iw) (i32.const 2)) (local.get $W)))
    (block $cd (loop $cl
      (br_if $cd (i32.ge_u (local.get $c) (local.get $cs)))
      (local.set $acc (v128.load (i32.add (local.get $bias) (local.get $c))))
      ${taps.join('\n      ')}
      (v128.store (i32.add (local.get $op) (local.get $c)) (f32x4.pmin (f32x4.pmax (local.get $acc) (local.get $lov)) (local.get $hiv)))
      (local.set $c (i32.add (local.get $c) (i32.const 16)))
      (br $cl))))
`;
}

/**
 * P output pixels of a row whose windows lie inside the image's columns, stride S (1 or 2): per group
 * of 4 channels, per filter row inside the image, each of the row's S(P-1)+3 input columns is loaded
 * once and multiply-added into the outputs it is tap (kh, kw) of, in kw order (column j = S p + kw).
 */
function dwChunk(P: number, S: number, fma: boolean): string {
  const cols = S * (P - 1) + 3;
  const acc = (p: number) => `$a${p}`;
  const rowBody = (kh: number) => {
    const lines = [
      `(local.set $q (i32.add (i32.add (local.get $xp) (local.get $c)) (i32.mul (local.get $rs) (i32.const ${kh}))))`,
      ...range(3).map((kw) => `(local.set $w${kw} (v128.load (i32.add (i32.add (local.get $wt) (local.get $c)) (i32.mul (local.get $cs) (i32.const ${kh * 3 + kw})))))`),
    ];
    for (let j = 0; j < cols; j++) {
      if (j > 0) lines.push('(local.set $q (i32.add (local.get $q) (local.get $cs)))');
      lines.push('(local.set $v (v128.load (local.get $q)))');
      for (let kw = 0; kw < 3; kw++) {
        const p = (j - kw) / S;
        if (Number.isInteger(p) && p >= 0 && p < P) lines.push(`(local.set ${acc(p)} ${madd(fma, '(local.get $v)', `(local.get $w${kw})`, `(local.get ${acc(p)})`)})`);
      }
    }
    return `(if (local.get $r${kh}) (then\n        ${lines.join('\n        ')}))`;
  };
  return `
  (func $dw_chunk${P}_${S} (param $xp i32) (param $wt i32) (param $bias i32) (param $op i32) (param $cs i32) (param $rs i32)
    (param $r0 i32) (param $r1 i32) (param $r2 i32) (param $lo f32) (param $hi f32)
    (local $c i32) (local $q i32) (local $v v128) (local $w0 v128) (local $w1 v128) (local $w2 v128) (local $lov v128) (local $hiv v128)
    ${range(P).map((p) => `(local ${acc(p)} v128)`).join(' ')}
    (local.set $lov (f32x4.splat (local.get $lo)))
    (local.set $hiv (f32x4.splat (local.get $hi)))
    (block $cd (loop $cl
      (br_if $cd (i32.ge_u (local.get $c) (local.get $cs)))
      (local.set $a0 (v128.load (i32.add (local.get $bias) (local.get $c))))
      ${range(P - 1).map((p) => `(local.set ${acc(p + 1)} (local.get $a0))`).join(' ')}
      ${range(3).map(rowBody).join('\n      ')}
      (local.set $q (i32.add (local.get $op) (local.get $c)))
      ${range(P).map((p) => `(v128.store (local.get $q) (f32x4.pmin (f32x4.pmax (local.get ${acc(p)}) (local.get $lov)) (local.get $hiv)))${p < P - 1 ? '\n      (local.set $q (i32.add (local.get $q) (local.get $cs)))' : ''}`).join('\n      ')}
      (local.set $c (i32.add (local.get $c) (i32.const 16)))
      (br $cl))))
`;
}

/**
 * o = clamp(3x3 conv of x + bias, lo, hi) for an image's first layer: NHWC, 3 input channels, Co a
 * multiple of 4, any stride and padding (top, left given), dilation 1; output rows [oh0, oh1) of every
 * image (threads split the rows). The filter [3, 3, 3, Co] is a [27, Co] matrix, packed in strips as
 * for gemm_bias_act (packGemmB). Per output row: pixels whose window lies inside the image go 4 at a
 * time for strides 1 and 2 (a GEMM tile of 4 pixels x 8 columns whose 27 taps are loads at constant
 * offsets from 3 row pointers), the others one at a time with every tap checked. Every output sums
 * bias + taps in (kh, kw, ci) order with the same multiply-adds on both paths.
 */
function conv3x3c3(fma: boolean): string {
  return `
  (func (export "conv3x3c3") (param $x i32) (param $wt i32) (param $bias i32) (param $o i32)
    (param $N i32) (param $H i32) (param $W i32) (param $Co i32) (param $oH i32) (param $oW i32)
    (param $sh i32) (param $sw i32) (param $top i32) (param $left i32) (param $lo f32) (param $hi f32)
    (param $oh0 i32) (param $oh1 i32)
    (local $n i32) (local $oh i32) (local $ow i32) (local $ih i32) (local $iw i32) (local $rs i32) (local $os i32)
    (local $xrow i32) (local $orow i32) (local $rowsIn i32) (local $owLo i32) (local $owHi i32)
    (local.set $rs (i32.mul (local.get $W) (i32.const 12)))
    (local.set $os (i32.shl (local.get $Co) (i32.const 2)))
    ;; interior columns: ow * sw - left >= 0 and ow * sw - left + 2 <= W - 1 (none for strides above 2)
    (local.set $owLo (i32.div_u (i32.add (local.get $left) (i32.sub (local.get $sw) (i32.const 1))) (local.get $sw)))
    (local.set $owHi (select
      (i32.add (i32.div_u (i32.sub (i32.add (local.get $W) (local.get $left)) (i32.const 3)) (local.get $sw)) (i32.const 1))
      (i32.const 0)
      (i32.ge_s (i32.sub (i32.add (local.get $W) (local.get $left)) (i32.const 3)) (i32.const 0))))
    (if (i32.gt_u (local.get $owHi) (local.get $oW)) (then (local.set $owHi (local.get $oW))))
    (if (i32.gt_u (local.get $sw) (i32.const 2)) (then (local.set $owHi (i32.const 0))))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_u (local.get $n) (local.get $N)))
      (local.set $oh (local.get $oh0))
      (block $hd (loop $hl
        (br_if $hd (i32.ge_u (local.get $oh) (local.get $oh1)))
        (local.set $ih (i32.sub (i32.mul (local.get $oh) (local.get $sh)) (local.get $top)))
        (local.set $rowsIn (i32.lt_u (i32.add (local.get $ih) (i32.const 2)) (local.get $H)))
        (if (i32.lt_s (local.get $ih) (i32.const 0)) (then (local.set $rowsIn (i32.const 0))))
        (local.set $xrow (i32.add (local.get $x) (i32.mul (i32.add (i32.mul (local.get $n) (local.get $H)) (local.get $ih)) (local.get $rs))))
        (local.set $orow (i32.add (local.get $o) (i32.mul (i32.mul (i32.add (i32.mul (local.get $n) (local.get $oH)) (local.get $oh)) (local.get $oW)) (local.get $os))))
        (local.set $ow (i32.const 0))
        (block $wd (loop $wl
          (br_if $wd (i32.ge_u (local.get $ow) (local.get $oW)))
          (local.set $iw (i32.sub (i32.mul (local.get $ow) (local.get $sw)) (local.get $left)))
          (if (i32.and (local.get $rowsIn) (i32.and (i32.ge_u (local.get $ow) (local.get $owLo)) (i32.le_u (i32.add (local.get $ow) (i32.const 4)) (local.get $owHi))))
            (then
              (if (i32.eq (local.get $sw) (i32.const 1))
                (then (call $c3_tiles_1 ${tileArgs}))
                (else (call $c3_tiles_2 ${tileArgs})))
              (local.set $ow (i32.add (local.get $ow) (i32.const 4))))
            (else
              (call $c3_pixel (local.get $xrow) (local.get $wt) (local.get $bias) (i32.add (local.get $orow) (i32.mul (local.get $ow) (local.get $os)))
                (local.get $Co) (local.get $rs) (local.get $ih) (local.get $iw) (local.get $H) (local.get $W) (local.get $lo) (local.get $hi))
              (local.set $ow (i32.add (local.get $ow) (i32.const 1)))))
          (br $wl)))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $hl)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $nl))))
${c3Pixel(fma)}
${c3Tiles(1, fma)}
${c3Tiles(2, fma)}
`;
}

const tileArgs = `(i32.add (local.get $xrow) (i32.mul (local.get $iw) (i32.const 12))) (local.get $rs) (local.get $wt) (local.get $bias)
                  (i32.add (local.get $orow) (i32.mul (local.get $ow) (local.get $os))) (local.get $Co) (local.get $lo) (local.get $hi)`;

/** One output pixel of conv3x3c3, every strip of columns, every tap checked against the image. */
function c3Pixel(fma: boolean): string {
  const vec = (V: number) => {
    const lines: string[] = [];
    for (let v = 0; v < V; v++) lines.push(`(local.set $c${v} (v128.load offset=${16 * v} (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2)))))`);
    for (let kh = 0; kh < 3; kh++)
      for (let kw = 0; kw < 3; kw++) {
        const body: string[] = [];
        for (let ci = 0; ci < 3; ci++) {
          const k = (kh * 3 + kw) * 3 + ci;
          // the address added in i32 (a row above the image may lie below address 0 + offset: no immediate offset)
          body.push(`(local.set $s (v128.load32_splat (i32.add (local.get $p${kh}) (i32.const ${(kw * 3 + ci) * 4}))))`);
          for (let v = 0; v < V; v++) body.push(`(local.set $c${v} ${madd(fma, '(local.get $s)', `(v128.load offset=${k * 16 * V + 16 * v} (local.get $b))`, `(local.get $c${v})`)})`);
        }
        lines.push(`(if (i32.and (local.get $r${kh}) (local.get $k${kw})) (then ${body.join(' ')}))`);
      }
    for (let v = 0; v < V; v++) lines.push(`(v128.store offset=${16 * v} (i32.add (local.get $op) (i32.shl (local.get $j) (i32.const 2))) (f32x4.pmin (f32x4.pmax (local.get $c${v}) (local.get $lov)) (local.get $hiv)))`);
    return lines.join('\n          ');
  };
  return `
  (func $c3_pixel (param $xrow i32) (param $wt i32) (param $bias i32) (param $op i32) (param $Co i32) (param $rs i32)
    (param $ih i32) (param $iw i32) (param $H i32) (param $W i32) (param $lo f32) (param $hi f32)
    (local $j i32) (local $b i32) (local $p0 i32) (local $p1 i32) (local $p2 i32) (local $r0 i32) (local $r1 i32) (local $r2 i32)
    (local $k0 i32) (local $k1 i32) (local $k2 i32) (local $s v128) (local $c0 v128) (local $c1 v128) (local $lov v128) (local $hiv v128)
    (local.set $lov (f32x4.splat (local.get $lo)))
    (local.set $hiv (f32x4.splat (local.get $hi)))
    ${range(3).map((k) => `(local.set $r${k} (i32.lt_u (i32.add (local.get $ih) (i32.const ${k})) (local.get $H)))
    (local.set $k${k} (i32.lt_u (i32.add (local.get $iw) (i32.const ${k})) (local.get $W)))
    (local.set $p${k} (i32.add (i32.add (local.get $xrow) (i32.mul (local.get $rs) (i32.const ${k}))) (i32.mul (local.get $iw) (i32.const 12))))`).join('\n    ')}
    (block $jd (loop $jl
      (br_if $jd (i32.ge_u (local.get $j) (local.get $Co)))
      (local.set $b (i32.add (local.get $wt) (i32.mul (local.get $j) (i32.const 108))))
      (if (i32.le_u (i32.add (local.get $j) (i32.const 8)) (local.get $Co))
        (then
          ${vec(2)}
          (local.set $j (i32.add (local.get $j) (i32.const 8))))
        (else
          ${vec(1)}
          (local.set $j (i32.add (local.get $j) (i32.const 4)))))
      (br $jl))))
`;
}

/**
 * 4 pixels of an output row (stride S, windows inside the image) by every strip of columns: per strip
 * a tile of 4 x 8 (a last one of 4 x 4) accumulators over the 27 taps, as loops over the filter rows
 * and their 9 contiguous (kw, ci) taps, pixel i's at a constant offset 12 S i from one pointer, as a
 * GEMM tile (fully unrolled, TurboFan schedules all 108 loads first and spills them).
 */
function c3Tiles(S: number, fma: boolean): string {
  const tile = (V: number) => {
    const lines: string[] = [];
    for (let v = 0; v < V; v++) {
      lines.push(`(local.set $c0_${v} (v128.load offset=${16 * v} (local.get $bias)))`);
      for (let i = 1; i < 4; i++) lines.push(`(local.set $c${i}_${v} (local.get $c0_${v}))`);
    }
    lines.push('(block $hd (loop $hl', '(local.set $px (local.get $p))', '(local.set $t (i32.const 0))', '(block $td (loop $tl');
    for (let v = 0; v < V; v++) lines.push(`  (local.set $b${v} (v128.load offset=${16 * v} (local.get $b)))`);
    for (let i = 0; i < 4; i++) {
      lines.push(`  (local.set $s (v128.load32_splat offset=${12 * S * i} (local.get $px)))`);
      for (let v = 0; v < V; v++) lines.push(`  (local.set $c${i}_${v} ${madd(fma, '(local.get $s)', `(local.get $b${v})`, `(local.get $c${i}_${v})`)})`);
    }
    lines.push(
      '  (local.set $px (i32.add (local.get $px) (i32.const 4)))',
      `  (local.set $b (i32.add (local.get $b) (i32.const ${16 * V})))`,
      '  (local.set $t (i32.add (local.get $t) (i32.const 1)))',
      '  (br_if $tl (i32.lt_u (local.get $t) (i32.const 9)))))',
      '(local.set $p (i32.add (local.get $p) (local.get $rs)))',
      '(local.set $kh (i32.add (local.get $kh) (i32.const 1)))',
      '(br_if $hl (i32.lt_u (local.get $kh) (i32.const 3)))))',
      '(local.set $lov (f32x4.splat (local.get $lo)))',
      '(local.set $hiv (f32x4.splat (local.get $hi)))',
    );
    for (let i = 0; i < 4; i++)
      for (let v = 0; v < V; v++)
        lines.push(`(v128.store offset=${16 * v} (i32.add (local.get $q) (i32.mul (local.get $os) (i32.const ${i}))) (f32x4.pmin (f32x4.pmax (local.get $c${i}_${v}) (local.get $lov)) (local.get $hiv)))`);
    const accs = range(4).flatMap((i) => range(V).map((v) => `(local $c${i}_${v} v128)`)).join(' ');
    return `
  (func $c3_tile${S}_${4 * V} (param $p i32) (param $rs i32) (param $b i32) (param $bias i32) (param $q i32) (param $os i32) (param $lo f32) (param $hi f32)
    (local $px i32) (local $t i32) (local $kh i32) (local $s v128) ${range(V).map((v) => `(local $b${v} v128)`).join(' ')} (local $lov v128) (local $hiv v128) ${accs}
    ${lines.join('\n    ')})
`;
  };
  const call = (w: number) => `(call $c3_tile${S}_${w} (local.get $xp) (local.get $rs) (i32.add (local.get $wt) (i32.mul (local.get $j) (i32.const 108)))
        (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2))) (i32.add (local.get $op) (i32.shl (local.get $j) (i32.const 2))) (local.get $os) (local.get $lo) (local.get $hi))`;
  return `
  (func $c3_tiles_${S} (param $xp i32) (param $rs i32) (param $wt i32) (param $bias i32) (param $op i32) (param $Co i32) (param $lo f32) (param $hi f32)
    (local $j i32) (local $os i32)
    (local.set $os (i32.shl (local.get $Co) (i32.const 2)))
    (block $jd (loop $jl
      (br_if $jd (i32.ge_u (local.get $j) (local.get $Co)))
      (if (i32.le_u (i32.add (local.get $j) (i32.const 8)) (local.get $Co))
        (then
          ${call(8)}
          (local.set $j (i32.add (local.get $j) (i32.const 8))))
        (else
          ${call(4)}
          (local.set $j (i32.add (local.get $j) (i32.const 4)))))
      (br $jl))))
${tile(2)}${tile(1)}`;
}
