/**
 * WebAssembly (SIMD128) source of compress's own training kernels. They run on tfjs-backend-wasm's
 * heap (the module imports its memory), so tensors are read and written in place by byte offset.
 *
 * Why hand-written wasm: the JS loops they replace spent 1-4 ns a float on index arithmetic and
 * bounds checks (col2im, im2col, max-pool and ReLU gradients); XNNPACK has no kernel for these
 * layouts. Conventions: every pointer is a byte offset into the heap, every count is in floats.
 * Where a kernel writes each output once from inputs it does not write, the last vector of a row
 * may overlap the one before it (it rewrites equal values), so rows of any length >= 4 need no
 * scalar tail; kernels that accumulate use a scalar tail instead.
 *
 * Compiled at run time by wabt (see ./module.ts); the text is the single source.
 */
export const KERNELS_WAT = String.raw`
(module
  (import "env" "memory" (memory 0))

  ;; o[i] = dy[i] * step(x[i]), n >= 4: the ReLU gradient in one pass, as tfjs computes it (step is
  ;; 1 above 0, NaN for NaN, else 0; so a NaN or infinite dy still shows where x <= 0)
  (func (export "relu_grad") (param $dy i32) (param $x i32) (param $o i32) (param $n i32)
    (local $i i32) (local $last i32) (local $xv v128)
    (local.set $last (i32.shl (i32.sub (local.get $n) (i32.const 4)) (i32.const 2)))
    (loop $l
      (if (i32.gt_u (local.get $i) (local.get $last)) (then (local.set $i (local.get $last))))
      (local.set $xv (v128.load (i32.add (local.get $x) (local.get $i))))
      (v128.store (i32.add (local.get $o) (local.get $i))
        (f32x4.mul
          (v128.load (i32.add (local.get $dy) (local.get $i)))
          (v128.bitselect
            (v128.const f32x4 nan nan nan nan)
            (v128.bitselect (v128.const f32x4 1 1 1 1) (v128.const i32x4 0 0 0 0) (f32x4.gt (local.get $xv) (v128.const i32x4 0 0 0 0)))
            (f32x4.ne (local.get $xv) (local.get $xv)))))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br_if $l (i32.lt_u (local.get $i) (i32.add (local.get $last) (i32.const 16))))))

  ;; o[i] = dy[i] where lo <= x[i] <= hi, else +0, n >= 4: the ClipByValue gradient in one pass, as
  ;; tfjs's where(x >= lo && x <= hi, dy, zerosLike(dy)) selects it (a NaN x gives 0; dy passes as is)
  (func (export "clip_grad") (param $dy i32) (param $x i32) (param $o i32) (param $n i32) (param $lo f32) (param $hi f32)
    (local $i i32) (local $last i32) (local $xv v128) (local $lov v128) (local $hiv v128)
    (local.set $lov (f32x4.splat (local.get $lo)))
    (local.set $hiv (f32x4.splat (local.get $hi)))
    (local.set $last (i32.shl (i32.sub (local.get $n) (i32.const 4)) (i32.const 2)))
    (loop $l
      (if (i32.gt_u (local.get $i) (local.get $last)) (then (local.set $i (local.get $last))))
      (local.set $xv (v128.load (i32.add (local.get $x) (local.get $i))))
      (v128.store (i32.add (local.get $o) (local.get $i))
        (v128.and
          (v128.load (i32.add (local.get $dy) (local.get $i)))
          (v128.and (f32x4.ge (local.get $xv) (local.get $lov)) (f32x4.le (local.get $xv) (local.get $hiv)))))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br_if $l (i32.lt_u (local.get $i) (i32.add (local.get $last) (i32.const 16))))))

  ;; o[i] = max(x[i], 0), n >= 4 (NaN stays NaN)
  (func (export "relu") (param $x i32) (param $o i32) (param $n i32)
    (local $i i32) (local $last i32)
    (local.set $last (i32.shl (i32.sub (local.get $n) (i32.const 4)) (i32.const 2)))
    (loop $l
      (if (i32.gt_u (local.get $i) (local.get $last)) (then (local.set $i (local.get $last))))
      (v128.store (i32.add (local.get $o) (local.get $i))
        (f32x4.max (v128.load (i32.add (local.get $x) (local.get $i))) (v128.const i32x4 0 0 0 0)))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br_if $l (i32.lt_u (local.get $i) (i32.add (local.get $last) (i32.const 16))))))

  ;; Whole-tensor statistics for calibration and error reports (compression/tensor-stats.ts), n >= 4; the
  ;; last vector may overlap the one before it (min / max repeat a value; the sums take a scalar tail).

  ;; out[0] = min x, out[1] = max x (f32; a NaN is skipped: pmin / pmax keep the accumulator)
  (func (export "min_max") (param $x i32) (param $n i32) (param $out i32)
    (local $i i32) (local $last i32) (local $v v128) (local $lo v128) (local $hi v128)
    (local.set $lo (f32x4.splat (f32.const inf)))
    (local.set $hi (f32x4.splat (f32.const -inf)))
    (local.set $last (i32.shl (i32.sub (local.get $n) (i32.const 4)) (i32.const 2)))
    (loop $l
      (if (i32.gt_u (local.get $i) (local.get $last)) (then (local.set $i (local.get $last))))
      (local.set $v (v128.load (i32.add (local.get $x) (local.get $i))))
      (local.set $lo (f32x4.pmin (local.get $lo) (local.get $v)))
      (local.set $hi (f32x4.pmax (local.get $hi) (local.get $v)))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br_if $l (i32.lt_u (local.get $i) (i32.add (local.get $last) (i32.const 16)))))
    (local.set $lo (f32x4.pmin (local.get $lo) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $lo) (local.get $lo))))
    (local.set $lo (f32x4.pmin (local.get $lo) (i8x16.shuffle 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 (local.get $lo) (local.get $lo))))
    (local.set $hi (f32x4.pmax (local.get $hi) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $hi) (local.get $hi))))
    (local.set $hi (f32x4.pmax (local.get $hi) (i8x16.shuffle 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 (local.get $hi) (local.get $hi))))
    (f32.store (local.get $out) (f32x4.extract_lane 0 (local.get $lo)))
    (f32.store offset=4 (local.get $out) (f32x4.extract_lane 0 (local.get $hi))))

  ;; Over the first n values of r and q: out[0] = sum r^2, out[1] = sum (q - r)^2 (f64, each square
  ;; added in float64), out[2] = max |q - r| (f64)
  (func (export "diff_sums") (param $r i32) (param $q i32) (param $n i32) (param $out i32)
    (local $i i32) (local $end i32) (local $rv v128) (local $d v128) (local $t v128)
    (local $s v128) (local $e v128) (local $m v128) (local $rs f64) (local $ds f64)
    (local.set $end (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (block $vd (loop $v
      (br_if $vd (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $rv (v128.load (i32.add (local.get $r) (local.get $i))))
      (local.set $d (f32x4.sub (v128.load (i32.add (local.get $q) (local.get $i))) (local.get $rv)))
      (local.set $m (f32x4.pmax (local.get $m) (f32x4.abs (local.get $d))))
      (local.set $t (f64x2.promote_low_f32x4 (local.get $rv)))
      (local.set $s (f64x2.add (local.get $s) (f64x2.mul (local.get $t) (local.get $t))))
      (local.set $t (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $rv) (local.get $rv))))
      (local.set $s (f64x2.add (local.get $s) (f64x2.mul (local.get $t) (local.get $t))))
      (local.set $t (f64x2.promote_low_f32x4 (local.get $d)))
      (local.set $e (f64x2.add (local.get $e) (f64x2.mul (local.get $t) (local.get $t))))
      (local.set $t (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $d) (local.get $d))))
      (local.set $e (f64x2.add (local.get $e) (f64x2.mul (local.get $t) (local.get $t))))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $v)))
    (local.set $m (f32x4.pmax (local.get $m) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $m) (local.get $m))))
    (local.set $m (f32x4.pmax (local.get $m) (i8x16.shuffle 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 (local.get $m) (local.get $m))))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (block $sd (loop $sl
      (br_if $sd (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $rs (f64.promote_f32 (f32.load (i32.add (local.get $r) (local.get $i)))))
      (local.set $ds (f64.promote_f32 (f32.sub (f32.load (i32.add (local.get $q) (local.get $i))) (f32.load (i32.add (local.get $r) (local.get $i))))))
      (local.set $s (f64x2.replace_lane 0 (local.get $s) (f64.add (f64x2.extract_lane 0 (local.get $s)) (f64.mul (local.get $rs) (local.get $rs)))))
      (local.set $e (f64x2.replace_lane 0 (local.get $e) (f64.add (f64x2.extract_lane 0 (local.get $e)) (f64.mul (local.get $ds) (local.get $ds)))))
      (local.set $m (f32x4.replace_lane 0 (local.get $m) (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32.abs (f32.demote_f64 (local.get $ds))))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $sl)))
    (f64.store (local.get $out) (f64.add (f64x2.extract_lane 0 (local.get $s)) (f64x2.extract_lane 1 (local.get $s))))
    (f64.store offset=8 (local.get $out) (f64.add (f64x2.extract_lane 0 (local.get $e)) (f64x2.extract_lane 1 (local.get $e))))
    (f64.store offset=16 (local.get $out) (f64.promote_f32 (f32x4.extract_lane 0 (local.get $m)))))

  ;; o = clamp(round(x / s), lo, hi) * s, rounding half away from zero (floor(|v| + 0.5), sign put
  ;; back, + 0 so that -0 becomes +0): an asymmetric quantizer's quantize / dequantize with
  ;; lo = qmin - zp, hi = qmax - zp, each step in float32 as the tf-op form computes it. The clamp is
  ;; pmax / pmin (one maxps / minps each; f32x4.max / min cost V8 ~7 instructions for their -0 and NaN
  ;; rules): v is never -0 here (the + 0) and a NaN passes both (pmax(NaN, lo) = NaN), as in the tf-op form;
  ;; constants in locals (V8 rematerialises v128.const inside the loop). Measured 1.1 -> 0.43 ns a value (1.2M values, standalone)
  (func (export "fake_quant") (param $x i32) (param $o i32) (param $n i32) (param $sc f32) (param $lo f32) (param $hi f32)
    (local $i i32) (local $last i32) (local $v v128) (local $sv v128) (local $lov v128) (local $hiv v128)
    (local $half v128) (local $sign v128)
    (local.set $half (v128.const f32x4 0.5 0.5 0.5 0.5))
    (local.set $sign (v128.const i32x4 0x80000000 0x80000000 0x80000000 0x80000000))
    (local.set $sv (f32x4.splat (local.get $sc)))
    (local.set $lov (f32x4.splat (local.get $lo)))
    (local.set $hiv (f32x4.splat (local.get $hi)))
    (local.set $last (i32.shl (i32.sub (local.get $n) (i32.const 4)) (i32.const 2)))
    (loop $l
      (if (i32.gt_u (local.get $i) (local.get $last)) (then (local.set $i (local.get $last))))
      (local.set $v (f32x4.div (v128.load (i32.add (local.get $x) (local.get $i))) (local.get $sv)))
      (local.set $v (f32x4.add
        (v128.or
          (f32x4.floor (f32x4.add (f32x4.abs (local.get $v)) (local.get $half)))
          (v128.and (local.get $v) (local.get $sign)))
        (v128.const i32x4 0 0 0 0)))
      (v128.store (i32.add (local.get $o) (local.get $i))
        (f32x4.mul (f32x4.pmin (f32x4.pmax (local.get $v) (local.get $lov)) (local.get $hiv)) (local.get $sv)))
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br_if $l (i32.lt_u (local.get $i) (i32.add (local.get $last) (i32.const 16))))))

  ;; o[r, c] = x[r, c] (+ - *) b[c] for rows x C, C >= 4 (a bias add; batch norm's centring and scaling)
${channelOp('bias_add', 'f32x4.add')}${channelOp('channel_sub', 'f32x4.sub')}${channelOp('channel_mul', 'f32x4.mul')}
  ;; Batch norm: o[r, c] = (x[r, c] - mean[c]) * a[c] + off[c], a = scale / sqrt(variance + eps)
  ;; precomputed per channel; C >= 4 (the last vector of a row may overlap). batch_norm_act also clamps
  ;; it to [lo, hi] (a ReLU or ReLU6 that follows, fused: max then min, as Relu then ClipByValue)
${batchNormKernel('batch_norm', false)}${batchNormKernel('batch_norm_act', true)}
  ;; out[c] = sum over rows of x[r, c], C >= 4, rows >= 1. Blocks of up to 64 rows are summed in
  ;; float32 registers and the block sums added into float64 accumulators at acc (2*C*4 bytes of
  ;; scratch, zeroed here), so the error stays that of a 64-term float32 sum.
  (func (export "sum_rows") (param $x i32) (param $o i32) (param $acc i32) (param $rows i32) (param $C i32)
    (local $r0 i32) (local $r i32) (local $rend i32) (local $c i32) (local $last i32) (local $stride i32)
    (local $p i32) (local $s v128) (local $a i32) (local $cl i32)
    (local.set $stride (i32.shl (local.get $C) (i32.const 2)))
    (local.set $last (i32.shl (i32.sub (local.get $C) (i32.const 4)) (i32.const 2)))
    (memory.fill (local.get $acc) (i32.const 0) (i32.shl (local.get $C) (i32.const 3)))
    (block $done
      (loop $blk
        (br_if $done (i32.ge_u (local.get $r0) (local.get $rows)))
        (local.set $rend (i32.add (local.get $r0) (i32.const 64)))
        (if (i32.gt_u (local.get $rend) (local.get $rows)) (then (local.set $rend (local.get $rows))))
        ;; columns in blocks of 4; a last partial block restarts at C-4 and adds only its new lanes
        (local.set $c (i32.const 0))
        (block $cdone
          (loop $cols
            (br_if $cdone (i32.ge_u (local.get $c) (local.get $stride)))
            (local.set $cl (local.get $c))
            (if (i32.gt_u (local.get $cl) (local.get $last)) (then (local.set $cl (local.get $last))))
            (local.set $s (v128.const i32x4 0 0 0 0))
            (local.set $p (i32.add (local.get $x) (i32.add (i32.mul (local.get $r0) (local.get $stride)) (local.get $cl))))
            (local.set $r (local.get $r0))
            (loop $rows_l
              (local.set $s (f32x4.add (local.get $s) (v128.load (local.get $p))))
              (local.set $p (i32.add (local.get $p) (local.get $stride)))
              (local.set $r (i32.add (local.get $r) (i32.const 1)))
              (br_if $rows_l (i32.lt_u (local.get $r) (local.get $rend))))
            ;; lanes below c (already summed by the previous block of columns) are zeroed
            (if (i32.lt_u (local.get $cl) (local.get $c))
              (then
                (local.set $s (v128.and (local.get $s)
                  (i32x4.ge_u
                    (i32x4.add (i32x4.splat (i32.shr_u (local.get $cl) (i32.const 2))) (v128.const i32x4 0 1 2 3))
                    (i32x4.splat (i32.shr_u (local.get $c) (i32.const 2))))))))
            (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $cl) (i32.const 1))))
            (v128.store (local.get $a) (f64x2.add (v128.load (local.get $a)) (f64x2.promote_low_f32x4 (local.get $s))))
            (v128.store offset=16 (local.get $a) (f64x2.add (v128.load offset=16 (local.get $a))
              (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $s) (local.get $s)))))
            (local.set $c (i32.add (local.get $c) (i32.const 16)))
            (br $cols)))
        (local.set $r0 (local.get $rend))
        (br $blk)))
    (local.set $c (i32.const 0))
    (block $odone
      (loop $out
        (br_if $odone (i32.ge_u (local.get $c) (local.get $stride)))
        (f32.store (i32.add (local.get $o) (local.get $c))
          (f32.demote_f64 (f64.load (i32.add (local.get $acc) (i32.shl (local.get $c) (i32.const 1))))))
        (local.set $c (i32.add (local.get $c) (i32.const 4)))
        (br $out))))

  ;; Batch-norm training gradient, pass 1, rows x C with C % 4 == 0: acc[0..C) = sum of g and
  ;; acc[C..2C) = sum of g * (x - mean) * invstd over the rows, as float64 (acc: 2C doubles, zeroed
  ;; here); float32 partial sums over blocks of 64 rows (even and odd rows apart), blocks added in order (deterministic). g = dy;
  ;; in bn_act_grad_sums g = dy where the activation fused into the forward (batch_norm_act) passed
  ;; its input z = (x - mean) * a + off, recomputed here as the forward computed it: 0 < z <= hi
  ;; (the ReLU gradient's z > 0 and ClipByValue's z <= hi), else +0
${bnGradSums('bn_grad_sums', false)}${bnGradSums('bn_act_grad_sums', true)}
  ;; Batch-norm statistics in one pass, rows x C with C % 4 == 0: with d = x - shift[c], acc[0..C) =
  ;; sum of d and acc[C..2C) = sum of d^2 over the rows, as float64 (acc: 2C doubles, zeroed here);
  ;; float32 partial sums over blocks of 64 rows (even and odd rows apart), blocks added in order. With the shift near the mean
  ;; (the caller's: the first rows' mean) variance = sum d^2 / M - (sum d / M)^2 loses little to
  ;; cancellation, and x is read once (a mean pass, then one of squared deviations, would read it twice)
  (func (export "shifted_moments") (param $x i32) (param $shift i32) (param $acc i32) (param $rows i32) (param $C i32)
    (local $r0 i32) (local $r i32) (local $rend i32) (local $c i32) (local $stride i32) (local $off i32) (local $a i32)
    (local $s v128) (local $q v128) (local $d v128) (local $m v128) (local $s2 v128) (local $q2 v128) (local $d2 v128)
    (local.set $stride (i32.shl (local.get $C) (i32.const 2)))
    (memory.fill (local.get $acc) (i32.const 0) (i32.shl (local.get $C) (i32.const 4)))
    (block $done
      (loop $blk
        (br_if $done (i32.ge_u (local.get $r0) (local.get $rows)))
        (local.set $rend (i32.add (local.get $r0) (i32.const 64)))
        (if (i32.gt_u (local.get $rend) (local.get $rows)) (then (local.set $rend (local.get $rows))))
        (local.set $c (i32.const 0))
        (loop $cols
          (local.set $m (v128.load (i32.add (local.get $shift) (local.get $c))))
          (local.set $s (v128.const i32x4 0 0 0 0))
          (local.set $q (v128.const i32x4 0 0 0 0))
          (local.set $s2 (v128.const i32x4 0 0 0 0))
          (local.set $q2 (v128.const i32x4 0 0 0 0))
          (local.set $off (i32.add (i32.mul (local.get $r0) (local.get $stride)) (local.get $c)))
          (local.set $r (local.get $r0))
          ;; two rows at a time into two pairs of sums (one chain of float32 adds is latency-bound)
          (block $pd (loop $pl
            (br_if $pd (i32.gt_u (i32.add (local.get $r) (i32.const 2)) (local.get $rend)))
            (local.set $d (f32x4.sub (v128.load (i32.add (local.get $x) (local.get $off))) (local.get $m)))
            (local.set $d2 (f32x4.sub (v128.load (i32.add (local.get $x) (i32.add (local.get $off) (local.get $stride)))) (local.get $m)))
            (local.set $s (f32x4.add (local.get $s) (local.get $d)))
            (local.set $q (f32x4.add (local.get $q) (f32x4.mul (local.get $d) (local.get $d))))
            (local.set $s2 (f32x4.add (local.get $s2) (local.get $d2)))
            (local.set $q2 (f32x4.add (local.get $q2) (f32x4.mul (local.get $d2) (local.get $d2))))
            (local.set $off (i32.add (local.get $off) (i32.shl (local.get $stride) (i32.const 1))))
            (local.set $r (i32.add (local.get $r) (i32.const 2)))
            (br $pl)))
          (if (i32.lt_u (local.get $r) (local.get $rend))
            (then
              (local.set $d (f32x4.sub (v128.load (i32.add (local.get $x) (local.get $off))) (local.get $m)))
              (local.set $s (f32x4.add (local.get $s) (local.get $d)))
              (local.set $q (f32x4.add (local.get $q) (f32x4.mul (local.get $d) (local.get $d))))))
          (local.set $s (f32x4.add (local.get $s) (local.get $s2)))
          (local.set $q (f32x4.add (local.get $q) (local.get $q2)))
          (local.set $a (i32.add (local.get $acc) (i32.shl (local.get $c) (i32.const 1))))
          (v128.store (local.get $a) (f64x2.add (v128.load (local.get $a)) (f64x2.promote_low_f32x4 (local.get $s))))
          (v128.store offset=16 (local.get $a) (f64x2.add (v128.load offset=16 (local.get $a))
            (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $s) (local.get $s)))))
          (local.set $a (i32.add (local.get $a) (i32.shl (local.get $C) (i32.const 3))))
          (v128.store (local.get $a) (f64x2.add (v128.load (local.get $a)) (f64x2.promote_low_f32x4 (local.get $q))))
          (v128.store offset=16 (local.get $a) (f64x2.add (v128.load offset=16 (local.get $a))
            (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $q) (local.get $q)))))
          (local.set $c (i32.add (local.get $c) (i32.const 16)))
          (br_if $cols (i32.lt_u (local.get $c) (local.get $stride))))
        (local.set $r0 (local.get $rend))
        (br $blk))))

  ;; Batch-norm training gradient, pass 2, rows x C with C % 4 == 0: o = p * g + q * (x - mean) + k per
  ;; channel (p, q, k: vectors of C precomputed from the sums of pass 1; g as in pass 1)
${bnGradDx('bn_grad_dx', false)}${bnGradDx('bn_act_grad_dx', true)}
  ;; dst[0..bytes) += src[0..bytes) (vectors, then a scalar tail)
  (func $add_run (param $d i32) (param $s i32) (param $bytes i32)
    (local $end i32) (local $vend i32)
    (local.set $end (i32.add (local.get $d) (local.get $bytes)))
    (local.set $vend (i32.add (local.get $d) (i32.and (local.get $bytes) (i32.const -16))))
    (block $vd
      (loop $v
        (br_if $vd (i32.ge_u (local.get $d) (local.get $vend)))
        (v128.store (local.get $d) (f32x4.add (v128.load (local.get $d)) (v128.load (local.get $s))))
        (local.set $d (i32.add (local.get $d) (i32.const 16)))
        (local.set $s (i32.add (local.get $s) (i32.const 16)))
        (br $v)))
    (block $sd
      (loop $t
        (br_if $sd (i32.ge_u (local.get $d) (local.get $end)))
        (f32.store (local.get $d) (f32.add (f32.load (local.get $d)) (f32.load (local.get $s))))
        (local.set $d (i32.add (local.get $d) (i32.const 4)))
        (local.set $s (i32.add (local.get $s) (i32.const 4)))
        (br $t))))

  ;; d[0..bytes) += a[0..bytes) * b[0..bytes) (vectors, then a scalar tail)
  (func $madd_run (param $d i32) (param $a i32) (param $b i32) (param $bytes i32)
    (local $end i32) (local $vend i32)
    (local.set $end (i32.add (local.get $d) (local.get $bytes)))
    (local.set $vend (i32.add (local.get $d) (i32.and (local.get $bytes) (i32.const -16))))
    (block $vd (loop $v
      (br_if $vd (i32.ge_u (local.get $d) (local.get $vend)))
      (v128.store (local.get $d) (f32x4.add (v128.load (local.get $d)) (f32x4.mul (v128.load (local.get $a)) (v128.load (local.get $b)))))
      (local.set $d (i32.add (local.get $d) (i32.const 16)))
      (local.set $a (i32.add (local.get $a) (i32.const 16)))
      (local.set $b (i32.add (local.get $b) (i32.const 16)))
      (br $v)))
    (block $sd (loop $t
      (br_if $sd (i32.ge_u (local.get $d) (local.get $end)))
      (f32.store (local.get $d) (f32.add (f32.load (local.get $d)) (f32.mul (f32.load (local.get $a)) (f32.load (local.get $b)))))
      (local.set $d (i32.add (local.get $d) (i32.const 4)))
      (local.set $a (i32.add (local.get $a) (i32.const 4)))
      (local.set $b (i32.add (local.get $b) (i32.const 4)))
      (br $t))))

${depthwiseKernel('dw_dgrad', '(call $madd_run (i32.add (local.get $x) (local.get $xo)) (local.get $gp) (i32.add (local.get $w) (local.get $wo)) (local.get $cb))', '')}
${depthwiseKernel('dw_wgrad', '(call $madd_run (i32.add (local.get $w) (local.get $wo)) (i32.add (local.get $x) (local.get $xo)) (local.get $gp) (local.get $cb))', `
      ;; one image summed in float32 at w; added into the float64 totals at acc
      (local.set $k (i32.const 0))
      (block $ad (loop $al
        (br_if $ad (i32.ge_u (local.get $k) (local.get $wb)))
        (f64.store (i32.add (local.get $acc) (i32.shl (local.get $k) (i32.const 1)))
          (f64.add (f64.load (i32.add (local.get $acc) (i32.shl (local.get $k) (i32.const 1))))
            (f64.promote_f32 (f32.load (i32.add (local.get $w) (local.get $k))))))
        (local.set $k (i32.add (local.get $k) (i32.const 4)))
        (br $al)))`)}
  ;; b [K, N] (row-major, N % 4 == 0) into the column strips gemm_bias_act reads (packGemmB in ./conv.wat.ts,
  ;; its JS twin): strip j holds columns [j, j + 8) as K rows of 8 floats (a last one of 4 as rows of 4), at
  ;; float j*K. pack_strips_t packs b = a^T from a [N, K] (a 1x1 filter [Ci, Co] read as the input gradient's
  ;; [Co, Ci]): the same strips, gathered. The JS loops took ~6 ms a MobileNetV2-0.35 training step.
  (func (export "pack_strips") (param $b i32) (param $o i32) (param $K i32) (param $N i32)
    (local $j i32) (local $k i32) (local $src i32) (local $row i32)
    (local.set $row (i32.shl (local.get $N) (i32.const 2)))
    (block $jd (loop $jl
      (br_if $jd (i32.ge_u (local.get $j) (local.get $N)))
      (local.set $src (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2))))
      (local.set $k (i32.const 0))
      (if (i32.le_u (i32.add (local.get $j) (i32.const 8)) (local.get $N))
        (then
          (block $kd (loop $kl
            (br_if $kd (i32.ge_u (local.get $k) (local.get $K)))
            (v128.store (local.get $o) (v128.load (local.get $src)))
            (v128.store offset=16 (local.get $o) (v128.load offset=16 (local.get $src)))
            (local.set $o (i32.add (local.get $o) (i32.const 32)))
            (local.set $src (i32.add (local.get $src) (local.get $row)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $kl))))
        (else
          (block $kd4 (loop $kl4
            (br_if $kd4 (i32.ge_u (local.get $k) (local.get $K)))
            (v128.store (local.get $o) (v128.load (local.get $src)))
            (local.set $o (i32.add (local.get $o) (i32.const 16)))
            (local.set $src (i32.add (local.get $src) (local.get $row)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $kl4)))))
      (local.set $j (i32.add (local.get $j) (i32.const 8)))
      (br $jl))))

  (func (export "pack_strips_t") (param $a i32) (param $o i32) (param $K i32) (param $N i32)
    (local $j i32) (local $k i32) (local $c i32) (local $w i32) (local $row i32) (local $src i32)
    (local.set $row (i32.shl (local.get $K) (i32.const 2)))
    (block $jd (loop $jl
      (br_if $jd (i32.ge_u (local.get $j) (local.get $N)))
      (local.set $w (select (i32.const 8) (i32.const 4) (i32.le_u (i32.add (local.get $j) (i32.const 8)) (local.get $N))))
      (local.set $k (i32.const 0))
      (block $kd (loop $kl
        (br_if $kd (i32.ge_u (local.get $k) (local.get $K)))
        ;; o[c] = a[j + c, k] for the strip's columns c
        (local.set $src (i32.add (local.get $a) (i32.add (i32.mul (local.get $j) (local.get $row)) (i32.shl (local.get $k) (i32.const 2)))))
        (local.set $c (i32.const 0))
        (block $cd (loop $cl
          (br_if $cd (i32.ge_u (local.get $c) (local.get $w)))
          (f32.store (local.get $o) (f32.load (local.get $src)))
          (local.set $o (i32.add (local.get $o) (i32.const 4)))
          (local.set $src (i32.add (local.get $src) (local.get $row)))
          (local.set $c (i32.add (local.get $c) (i32.const 1)))
          (br $cl)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $kl)))
      (local.set $j (i32.add (local.get $j) (i32.const 8)))
      (br $jl))))

  ;; The filter gradient of a 3x3 depthwise conv (channel multiplier 1, dilation 1, any stride and padding,
  ;; C % 4 == 0) with the 9 taps' sums of a vector of channels in registers over a whole image: the same
  ;; float32 sums in the same order as dw_wgrad, without its per-tap call and loop (see dw3x3Wgrad)
${dw3x3Wgrad()}
  ;; The input gradient of a 3x3 depthwise conv (channel multiplier 1, dilation 1, any stride and padding,
  ;; C % 4 == 0; compress uses it at strides above 1, where it is no flipped forward conv): each dy vector
  ;; times the 9 filter taps (in registers) added into dx (zeroed by the caller), see dw3x3Dgrad
${dw3x3Dgrad()}
  ;; col2im for the input gradient (dilation 1 across, any down): dx [N,H,W,Ci] (zeroed by the caller) +=
  ;; cols [N*oH*oW, KH*KW*Ci] scattered back to the input positions each row was taken from.
  ;; For one output position and kernel row, the in-bounds taps form one contiguous run of dx.
  (func (export "col2im_add") (param $dx i32) (param $cols i32) (param $N i32) (param $H i32) (param $W i32)
    (param $Ci i32) (param $oH i32) (param $oW i32) (param $KH i32) (param $KW i32)
    (param $sh i32) (param $sw i32) (param $dh i32) (param $top i32) (param $left i32)
    (local $n i32) (local $oh i32) (local $ow i32) (local $kh i32) (local $ih i32) (local $iw0 i32)
    (local $lo i32) (local $hi i32) (local $p i32) (local $rowBytes i32)
    (local.set $rowBytes (i32.shl (i32.mul (i32.mul (local.get $KH) (local.get $KW)) (local.get $Ci)) (i32.const 2)))
    (local.set $p (local.get $cols))
    (local.set $n (i32.const 0))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_s (local.get $n) (local.get $N)))
      (local.set $oh (i32.const 0))
      (block $hd (loop $hl
        (br_if $hd (i32.ge_s (local.get $oh) (local.get $oH)))
        (local.set $ow (i32.const 0))
        (block $wd (loop $wl
          (br_if $wd (i32.ge_s (local.get $ow) (local.get $oW)))
          (local.set $iw0 (i32.sub (i32.mul (local.get $ow) (local.get $sw)) (local.get $left)))
          ;; taps kw in [lo, hi) land inside the row: 0 <= iw0 + kw < W
          (local.set $lo (select (i32.sub (i32.const 0) (local.get $iw0)) (i32.const 0) (i32.lt_s (local.get $iw0) (i32.const 0))))
          (local.set $hi (i32.sub (local.get $W) (local.get $iw0)))
          (if (i32.gt_s (local.get $hi) (local.get $KW)) (then (local.set $hi (local.get $KW))))
          (if (i32.lt_s (local.get $lo) (local.get $hi))
            (then
              (local.set $kh (i32.const 0))
              (block $kd (loop $kl
                (br_if $kd (i32.ge_s (local.get $kh) (local.get $KH)))
                (local.set $ih (i32.add (i32.sub (i32.mul (local.get $oh) (local.get $sh)) (local.get $top)) (i32.mul (local.get $kh) (local.get $dh))))
                (if (i32.and (i32.ge_s (local.get $ih) (i32.const 0)) (i32.lt_s (local.get $ih) (local.get $H)))
                  (then
                    (call $add_run
                      (i32.add (local.get $dx) (i32.shl (i32.mul
                        (i32.add (i32.mul (i32.add (i32.mul (local.get $n) (local.get $H)) (local.get $ih)) (local.get $W))
                                 (i32.add (local.get $iw0) (local.get $lo)))
                        (local.get $Ci)) (i32.const 2)))
                      (i32.add (local.get $p) (i32.shl (i32.mul
                        (i32.add (i32.mul (local.get $kh) (local.get $KW)) (local.get $lo))
                        (local.get $Ci)) (i32.const 2)))
                      (i32.shl (i32.mul (i32.sub (local.get $hi) (local.get $lo)) (local.get $Ci)) (i32.const 2)))))
                (local.set $kh (i32.add (local.get $kh) (i32.const 1)))
                (br $kl)))))
          (local.set $p (i32.add (local.get $p) (local.get $rowBytes)))
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $wl)))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $hl)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $nl))))

  ;; Max-pool gradient for 2x2 windows, stride 2, no padding, C >= 4 channels: each output gradient
  ;; goes to the first maximum of its window in row-major order (strict >, from -Infinity; a window
  ;; of NaNs gets nothing), the cpu backend's rule. Every covered dx element is written once; the
  ;; caller zeroes dx first when H or W is odd.
  (func (export "maxpool_grad_2x2") (param $dx i32) (param $x i32) (param $g i32)
    (param $N i32) (param $H i32) (param $W i32) (param $C i32)
    (local $rs i32) (local $cs i32) (local $row i32) (local $oh i32) (local $ow i32) (local $oH i32) (local $oW i32)
    (local $base i32) (local $a i32) (local $c i32) (local $last i32) (local $gp i32)
    (local $v v128) (local $best v128) (local $pos v128) (local $m v128) (local $gv v128)
    (local.set $cs (i32.shl (local.get $C) (i32.const 2)))
    (local.set $rs (i32.mul (local.get $W) (local.get $cs)))
    (local.set $oH (i32.shr_u (local.get $H) (i32.const 1)))
    (local.set $oW (i32.shr_u (local.get $W) (i32.const 1)))
    (local.set $last (i32.sub (local.get $cs) (i32.const 16)))
    (local.set $row (i32.const 0))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_u (local.get $row) (i32.mul (local.get $N) (local.get $oH))))
      ;; top-left of this window row: image n = row / oH, input row 2 * (row % oH)
      (local.set $base (i32.mul (local.get $rs)
        (i32.add (i32.mul (i32.div_u (local.get $row) (local.get $oH)) (local.get $H))
                 (i32.shl (i32.rem_u (local.get $row) (local.get $oH)) (i32.const 1)))))
      (local.set $ow (i32.const 0))
      (block $wd (loop $wl
        (br_if $wd (i32.ge_u (local.get $ow) (local.get $oW)))
        (local.set $a (i32.add (local.get $base) (i32.mul (local.get $ow) (i32.shl (local.get $cs) (i32.const 1)))))
        (local.set $c (i32.const 0))
        (loop $cl
          (if (i32.gt_u (local.get $c) (local.get $last)) (then (local.set $c (local.get $last))))
          (local.set $v (v128.load (i32.add (local.get $x) (i32.add (local.get $a) (local.get $c)))))
          (local.set $m (f32x4.gt (local.get $v) (v128.const f32x4 -inf -inf -inf -inf)))
          (local.set $best (v128.bitselect (local.get $v) (v128.const f32x4 -inf -inf -inf -inf) (local.get $m)))
          (local.set $pos (v128.bitselect (v128.const i32x4 0 0 0 0) (v128.const i32x4 -1 -1 -1 -1) (local.get $m)))
          (local.set $v (v128.load (i32.add (local.get $x) (i32.add (i32.add (local.get $a) (local.get $cs)) (local.get $c)))))
          (local.set $m (f32x4.gt (local.get $v) (local.get $best)))
          (local.set $best (v128.bitselect (local.get $v) (local.get $best) (local.get $m)))
          (local.set $pos (v128.bitselect (v128.const i32x4 1 1 1 1) (local.get $pos) (local.get $m)))
          (local.set $v (v128.load (i32.add (local.get $x) (i32.add (i32.add (local.get $a) (local.get $rs)) (local.get $c)))))
          (local.set $m (f32x4.gt (local.get $v) (local.get $best)))
          (local.set $best (v128.bitselect (local.get $v) (local.get $best) (local.get $m)))
          (local.set $pos (v128.bitselect (v128.const i32x4 2 2 2 2) (local.get $pos) (local.get $m)))
          (local.set $v (v128.load (i32.add (local.get $x)
            (i32.add (i32.add (local.get $a) (i32.add (local.get $rs) (local.get $cs))) (local.get $c)))))
          (local.set $m (f32x4.gt (local.get $v) (local.get $best)))
          (local.set $pos (v128.bitselect (v128.const i32x4 3 3 3 3) (local.get $pos) (local.get $m)))
          (local.set $gv (v128.load (i32.add (local.get $g) (i32.add (local.get $gp) (local.get $c)))))
          (v128.store (i32.add (local.get $dx) (i32.add (local.get $a) (local.get $c)))
            (v128.and (local.get $gv) (i32x4.eq (local.get $pos) (v128.const i32x4 0 0 0 0))))
          (v128.store (i32.add (local.get $dx) (i32.add (i32.add (local.get $a) (local.get $cs)) (local.get $c)))
            (v128.and (local.get $gv) (i32x4.eq (local.get $pos) (v128.const i32x4 1 1 1 1))))
          (v128.store (i32.add (local.get $dx) (i32.add (i32.add (local.get $a) (local.get $rs)) (local.get $c)))
            (v128.and (local.get $gv) (i32x4.eq (local.get $pos) (v128.const i32x4 2 2 2 2))))
          (v128.store (i32.add (local.get $dx) (i32.add (i32.add (local.get $a) (i32.add (local.get $rs) (local.get $cs))) (local.get $c)))
            (v128.and (local.get $gv) (i32x4.eq (local.get $pos) (v128.const i32x4 3 3 3 3))))
          (local.set $c (i32.add (local.get $c) (i32.const 16)))
          (br_if $cl (i32.lt_u (local.get $c) (i32.add (local.get $last) (i32.const 16)))))
        (local.set $gp (i32.add (local.get $gp) (local.get $cs)))
        (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
        (br $wl)))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br $nl))))
  ;; d[0..bytes) = s[0..bytes); returns d + bytes (vectors, then a scalar tail)
  (func $copy_run (param $d i32) (param $s i32) (param $bytes i32) (result i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $d) (local.get $bytes)))
${copyLoops('$d', '$s', '$end', 'c')}
    (local.get $d))

  ;; d[0..bytes) = 0; returns d + bytes
  (func $zero_run (param $d i32) (param $bytes i32) (result i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $d) (local.get $bytes)))
    (block $sd (loop $t
      (br_if $sd (i32.ge_u (local.get $d) (local.get $end)))
      (f32.store (local.get $d) (f32.const 0))
      (local.set $d (i32.add (local.get $d) (i32.const 4)))
      (br $t)))
    (local.get $d))

  ;; dst [rows, Cp] = src [rows, C] with zero columns [C, Cp) (Cp >= C)
  (func (export "pad_columns") (param $src i32) (param $dst i32) (param $rows i32) (param $C i32) (param $Cp i32)
    (local $r i32)
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $dst (call $copy_run (local.get $dst) (local.get $src) (i32.shl (local.get $C) (i32.const 2))))
      (local.set $dst (call $zero_run (local.get $dst) (i32.shl (i32.sub (local.get $Cp) (local.get $C)) (i32.const 2))))
      (local.set $src (i32.add (local.get $src) (i32.shl (local.get $C) (i32.const 2))))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $l))))

  ;; cols [pb, KKp] = the patches (kh, kw, ci order; zeros at padding and in lanes [KK, KKp)) of
  ;; output positions [p0, p0+pb), position p = (n*oH + oh)*oW + ow
  (func $gather (param $x i32) (param $cols i32) (param $p0 i32) (param $pb i32)
    (param $H i32) (param $W i32) (param $Ci i32) (param $oH i32) (param $oW i32) (param $KH i32) (param $KW i32)
    (param $sh i32) (param $sw i32) (param $dh i32) (param $dw i32) (param $top i32) (param $left i32)
    (local $KK i32) (local $KKp i32) (local $p i32) (local $n i32) (local $r i32) (local $oh i32) (local $ow i32)
    (local $kh i32) (local $kw i32) (local $ih i32) (local $iw i32) (local $d i32) (local $s i32) (local $e i32) (local $t i32)
    (local.set $KK (i32.mul (i32.mul (local.get $KH) (local.get $KW)) (local.get $Ci)))
    (local.set $KKp (i32.and (i32.add (local.get $KK) (i32.const 3)) (i32.const -4)))
  (local.set $d (local.get $cols))
  (local.set $p (local.get $p0))
  ;; (n, oh, ow) of p0; advanced by counting, not dividing, per position
  (local.set $n (i32.div_u (local.get $p0) (i32.mul (local.get $oH) (local.get $oW))))
  (local.set $r (i32.rem_u (local.get $p0) (i32.mul (local.get $oH) (local.get $oW))))
  (local.set $oh (i32.div_u (local.get $r) (local.get $oW)))
  (local.set $ow (i32.rem_u (local.get $r) (local.get $oW)))
  (block $gd (loop $gl
    (br_if $gd (i32.ge_u (local.get $p) (i32.add (local.get $p0) (local.get $pb))))
    (local.set $kh (i32.const 0))
    (local.set $iw (i32.sub (i32.mul (local.get $ow) (local.get $sw)) (local.get $left)))
    (local.set $ih (i32.sub (i32.mul (local.get $oh) (local.get $sh)) (local.get $top)))
    ;; the common case, a patch wholly inside x (dilation 1 across): KH runs of KW*Ci floats
    (if (i32.and
          (i32.and (i32.eq (local.get $dw) (i32.const 1))
            (i32.and (i32.ge_s (local.get $ih) (i32.const 0))
              (i32.lt_s (i32.add (local.get $ih) (i32.mul (i32.sub (local.get $KH) (i32.const 1)) (local.get $dh))) (local.get $H))))
          (i32.and (i32.ge_s (local.get $iw) (i32.const 0))
            (i32.le_s (i32.add (local.get $iw) (local.get $KW)) (local.get $W))))
      (then
        (local.set $s (i32.add (local.get $x) (i32.shl (i32.mul
          (i32.add (i32.mul (i32.add (i32.mul (local.get $n) (local.get $H)) (local.get $ih)) (local.get $W)) (local.get $iw))
          (local.get $Ci)) (i32.const 2))))
        (local.set $r (i32.shl (i32.mul (local.get $KW) (local.get $Ci)) (i32.const 2)))
        (loop $fr
          (local.set $e (i32.add (local.get $d) (local.get $r)))
          (local.set $t (local.get $s))
          ;; $copy_run's loops inlined: calling it here made conv1's filter gradient 2.2 -> 2.5 ms
${copyLoops('$d', '$t', '$e', 'f')}
          (local.set $s (i32.add (local.get $s) (i32.shl (i32.mul (i32.mul (local.get $dh) (local.get $W)) (local.get $Ci)) (i32.const 2))))
          (local.set $kh (i32.add (local.get $kh) (i32.const 1)))
          (br_if $fr (i32.lt_s (local.get $kh) (local.get $KH))))))
    (block $khd (loop $khl
      (br_if $khd (i32.ge_s (local.get $kh) (local.get $KH)))
      (local.set $ih (i32.add (i32.sub (i32.mul (local.get $oh) (local.get $sh)) (local.get $top)) (i32.mul (local.get $kh) (local.get $dh))))
      (if (i32.or (i32.lt_s (local.get $ih) (i32.const 0)) (i32.ge_s (local.get $ih) (local.get $H)))
        (then (local.set $d (call $zero_run (local.get $d) (i32.shl (i32.mul (local.get $KW) (local.get $Ci)) (i32.const 2)))))
        (else
          ;; s: x at (n, ih, 0); taps kw whose column iw + kw*dw lies in [0, W) are copied
          (local.set $s (i32.add (local.get $x) (i32.shl (i32.mul
            (i32.mul (i32.add (i32.mul (local.get $n) (local.get $H)) (local.get $ih)) (local.get $W))
            (local.get $Ci)) (i32.const 2))))
          (if (i32.eq (local.get $dw) (i32.const 1))
            (then
              ;; one contiguous run [lo, hi) of taps, zeros either side
              (local.set $kw (select (i32.sub (i32.const 0) (local.get $iw)) (i32.const 0) (i32.lt_s (local.get $iw) (i32.const 0))))
              (if (i32.gt_s (local.get $kw) (local.get $KW)) (then (local.set $kw (local.get $KW))))
              (local.set $e (i32.sub (local.get $W) (local.get $iw)))
              (if (i32.gt_s (local.get $e) (local.get $KW)) (then (local.set $e (local.get $KW))))
              (if (i32.lt_s (local.get $e) (local.get $kw)) (then (local.set $e (local.get $kw))))
              (local.set $d (call $zero_run (local.get $d) (i32.shl (i32.mul (local.get $kw) (local.get $Ci)) (i32.const 2))))
              (local.set $d (call $copy_run (local.get $d)
                (i32.add (local.get $s) (i32.shl (i32.mul (i32.add (local.get $iw) (local.get $kw)) (local.get $Ci)) (i32.const 2)))
                (i32.shl (i32.mul (i32.sub (local.get $e) (local.get $kw)) (local.get $Ci)) (i32.const 2))))
              (local.set $d (call $zero_run (local.get $d) (i32.shl (i32.mul (i32.sub (local.get $KW) (local.get $e)) (local.get $Ci)) (i32.const 2)))))
            (else
              (local.set $kw (i32.const 0))
              (block $kwd (loop $kwl
                (br_if $kwd (i32.ge_s (local.get $kw) (local.get $KW)))
                (local.set $r (i32.add (local.get $iw) (i32.mul (local.get $kw) (local.get $dw))))
                (if (i32.and (i32.ge_s (local.get $r) (i32.const 0)) (i32.lt_s (local.get $r) (local.get $W)))
                  (then (local.set $d (call $copy_run (local.get $d)
                    (i32.add (local.get $s) (i32.shl (i32.mul (local.get $r) (local.get $Ci)) (i32.const 2)))
                    (i32.shl (local.get $Ci) (i32.const 2)))))
                  (else (local.set $d (call $zero_run (local.get $d) (i32.shl (local.get $Ci) (i32.const 2))))))
                (local.set $kw (i32.add (local.get $kw) (i32.const 1)))
                (br $kwl)))))))
      (local.set $kh (i32.add (local.get $kh) (i32.const 1)))
      (br $khl)))
    ;; zero lanes up to KKp (a call to memory.fill costs more than these few stores)
    (local.set $e (i32.add (local.get $d) (i32.shl (i32.sub (local.get $KKp) (local.get $KK)) (i32.const 2))))
    (block $zd (loop $zl
      (br_if $zd (i32.ge_u (local.get $d) (local.get $e)))
      (f32.store (local.get $d) (f32.const 0))
      (local.set $d (i32.add (local.get $d) (i32.const 4)))
      (br $zl)))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
    (if (i32.eq (local.get $ow) (local.get $oW))
      (then
        (local.set $ow (i32.const 0))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (if (i32.eq (local.get $oh) (local.get $oH))
          (then
            (local.set $oh (i32.const 0))
            (local.set $n (i32.add (local.get $n) (i32.const 1)))))))
    (br $gl))))

  ;; Filter gradient of a conv: out [KK, Co] = sum over output positions p of patch(p) (x) dy[p, :]
  ;; (KK = KH*KW*Ci, Co a multiple of 4): per block of positions, the patches gathered into cols
  ;; [pb, KKp], then out += cols^T . dy[block] by gemm_tn's register tiles.
${patchBlockKernel('conv_wgrad', 'i32.mul (local.get $KK) (local.get $Co)', `(call $gemm_tn (local.get $cols) (i32.shl (local.get $KKp) (i32.const 2))
        (i32.add (local.get $b) (i32.shl (i32.mul (local.get $p0) (local.get $Co)) (i32.const 2))) (i32.shl (local.get $Co) (i32.const 2))
        (local.get $pb) (local.get $o) (local.get $KK) (local.get $Co))`)}

  ;; out rows 0..min(rows,4) (row stride Co*4 = dyStride) += sum over pb positions of
  ;; a[p, 0..4) (x) b[p, 0..8); a advances by aStride, b by dyStride bytes a position.
  (func $wgrad_tile8 (param $a i32) (param $b i32) (param $pb i32) (param $aStride i32) (param $bStride i32)
    (param $o i32) (param $rows i32)
    (local $end i32) (local $b0 v128) (local $b1 v128) (local $v v128)
    (local $c0 v128) (local $c1 v128) (local $c2 v128) (local $c3 v128)
    (local $c4 v128) (local $c5 v128) (local $c6 v128) (local $c7 v128)
    (local.set $end (i32.add (local.get $b) (i32.mul (local.get $pb) (local.get $bStride))))
    (loop $l
      (local.set $b0 (v128.load (local.get $b)))
      (local.set $b1 (v128.load offset=16 (local.get $b)))
      (local.set $v (v128.load32_splat (local.get $a)))
      (local.set $c0 (f32x4.add (local.get $c0) (f32x4.mul (local.get $v) (local.get $b0))))
      (local.set $c1 (f32x4.add (local.get $c1) (f32x4.mul (local.get $v) (local.get $b1))))
      (local.set $v (v128.load32_splat offset=4 (local.get $a)))
      (local.set $c2 (f32x4.add (local.get $c2) (f32x4.mul (local.get $v) (local.get $b0))))
      (local.set $c3 (f32x4.add (local.get $c3) (f32x4.mul (local.get $v) (local.get $b1))))
      (local.set $v (v128.load32_splat offset=8 (local.get $a)))
      (local.set $c4 (f32x4.add (local.get $c4) (f32x4.mul (local.get $v) (local.get $b0))))
      (local.set $c5 (f32x4.add (local.get $c5) (f32x4.mul (local.get $v) (local.get $b1))))
      (local.set $v (v128.load32_splat offset=12 (local.get $a)))
      (local.set $c6 (f32x4.add (local.get $c6) (f32x4.mul (local.get $v) (local.get $b0))))
      (local.set $c7 (f32x4.add (local.get $c7) (f32x4.mul (local.get $v) (local.get $b1))))
      (local.set $a (i32.add (local.get $a) (local.get $aStride)))
      (local.set $b (i32.add (local.get $b) (local.get $bStride)))
      (br_if $l (i32.lt_u (local.get $b) (local.get $end))))
    (v128.store (local.get $o) (f32x4.add (v128.load (local.get $o)) (local.get $c0)))
    (v128.store offset=16 (local.get $o) (f32x4.add (v128.load offset=16 (local.get $o)) (local.get $c1)))
    (br_if 0 (i32.lt_u (local.get $rows) (i32.const 2)))
    (local.set $o (i32.add (local.get $o) (local.get $bStride)))
    (v128.store (local.get $o) (f32x4.add (v128.load (local.get $o)) (local.get $c2)))
    (v128.store offset=16 (local.get $o) (f32x4.add (v128.load offset=16 (local.get $o)) (local.get $c3)))
    (br_if 0 (i32.lt_u (local.get $rows) (i32.const 3)))
    (local.set $o (i32.add (local.get $o) (local.get $bStride)))
    (v128.store (local.get $o) (f32x4.add (v128.load (local.get $o)) (local.get $c4)))
    (v128.store offset=16 (local.get $o) (f32x4.add (v128.load offset=16 (local.get $o)) (local.get $c5)))
    (br_if 0 (i32.lt_u (local.get $rows) (i32.const 4)))
    (local.set $o (i32.add (local.get $o) (local.get $bStride)))
    (v128.store (local.get $o) (f32x4.add (v128.load (local.get $o)) (local.get $c6)))
    (v128.store offset=16 (local.get $o) (f32x4.add (v128.load offset=16 (local.get $o)) (local.get $c7))))

  ;; as $wgrad_tile8 for a last tile of 4 columns
  (func $wgrad_tile4 (param $a i32) (param $b i32) (param $pb i32) (param $aStride i32) (param $bStride i32)
    (param $o i32) (param $rows i32)
    (local $end i32) (local $b0 v128)
    (local $c0 v128) (local $c1 v128) (local $c2 v128) (local $c3 v128)
    (local.set $end (i32.add (local.get $b) (i32.mul (local.get $pb) (local.get $bStride))))
    (loop $l
      (local.set $b0 (v128.load (local.get $b)))
      (local.set $c0 (f32x4.add (local.get $c0) (f32x4.mul (v128.load32_splat (local.get $a)) (local.get $b0))))
      (local.set $c1 (f32x4.add (local.get $c1) (f32x4.mul (v128.load32_splat offset=4 (local.get $a)) (local.get $b0))))
      (local.set $c2 (f32x4.add (local.get $c2) (f32x4.mul (v128.load32_splat offset=8 (local.get $a)) (local.get $b0))))
      (local.set $c3 (f32x4.add (local.get $c3) (f32x4.mul (v128.load32_splat offset=12 (local.get $a)) (local.get $b0))))
      (local.set $a (i32.add (local.get $a) (local.get $aStride)))
      (local.set $b (i32.add (local.get $b) (local.get $bStride)))
      (br_if $l (i32.lt_u (local.get $b) (local.get $end))))
    (v128.store (local.get $o) (f32x4.add (v128.load (local.get $o)) (local.get $c0)))
    (br_if 0 (i32.lt_u (local.get $rows) (i32.const 2)))
    (local.set $o (i32.add (local.get $o) (local.get $bStride)))
    (v128.store (local.get $o) (f32x4.add (v128.load (local.get $o)) (local.get $c1)))
    (br_if 0 (i32.lt_u (local.get $rows) (i32.const 3)))
    (local.set $o (i32.add (local.get $o) (local.get $bStride)))
    (v128.store (local.get $o) (f32x4.add (v128.load (local.get $o)) (local.get $c2)))
    (br_if 0 (i32.lt_u (local.get $rows) (i32.const 4)))
    (local.set $o (i32.add (local.get $o) (local.get $bStride)))
    (v128.store (local.get $o) (f32x4.add (v128.load (local.get $o)) (local.get $c3))))
  ;; Adam over n floats, float32 arithmetic as tf.train.adam's ops (bias corrections as products):
  ;; m = m*b1 + g*c1; v = v*b2 + g*g*c2; out = (m*inv1) / (sqrt(v*inv2) + eps) * nlr + p
  (func (export "adam") (param $out i32) (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $n i32)
    (param $b1 f32) (param $b2 f32) (param $c1 f32) (param $c2 f32) (param $inv1 f32) (param $inv2 f32)
    (param $eps f32) (param $nlr f32)
    (local $i i32) (local $vend i32) (local $end i32)
    (local $gv v128) (local $mv v128) (local $vv v128)
    (local $B1 v128) (local $B2 v128) (local $C1 v128) (local $C2 v128) (local $I1 v128) (local $I2 v128)
    (local $E v128) (local $L v128)
    (local $gs f32) (local $ms f32) (local $vs f32)
    (local.set $B1 (f32x4.splat (local.get $b1))) (local.set $B2 (f32x4.splat (local.get $b2)))
    (local.set $C1 (f32x4.splat (local.get $c1))) (local.set $C2 (f32x4.splat (local.get $c2)))
    (local.set $I1 (f32x4.splat (local.get $inv1))) (local.set $I2 (f32x4.splat (local.get $inv2)))
    (local.set $E (f32x4.splat (local.get $eps))) (local.set $L (f32x4.splat (local.get $nlr)))
    (local.set $end (i32.shl (local.get $n) (i32.const 2)))
    (local.set $vend (i32.and (local.get $end) (i32.const -16)))
    (block $vd (loop $vl
      (br_if $vd (i32.ge_u (local.get $i) (local.get $vend)))
${adamUpdate(true)}
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $vl)))
    (block $sd (loop $sl
      (br_if $sd (i32.ge_u (local.get $i) (local.get $end)))
${adamUpdate(false)}
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $sl))))

  ;; Input gradient of a stride-1, dilation-1, 'valid' conv without col2im: for each output row
  ;; (n, oh) and kernel row kh, the taps (kw, ci) of a position form one run of KW*Ci floats of dx
  ;; row ih = oh + kh, and the next position's run starts Ci floats later. So a tile of 4 positions x
  ;; 8 taps, summed over Co in registers (dy[p, co] splatted times wT[co, taps]), is added straight
  ;; into dx: no [P, KH*KW*Ci] intermediate (LeNet-5 conv2: 8 MB written and read back). Requires
  ;; KW*Ci % 4 == 0; wT is the filter as [Co, KH*KW*Ci]; dx is zeroed by the caller.
  (func (export "conv_dgrad") (param $dx i32) (param $dy i32) (param $wT i32)
    (param $N i32) (param $H i32) (param $W i32) (param $Ci i32) (param $oH i32) (param $oW i32) (param $Co i32)
    (param $KH i32) (param $KW i32)
    (local $row i32) (local $n i32) (local $oh i32) (local $kh i32) (local $ow i32) (local $kk i32)
    (local $seg i32) (local $KKb i32) (local $dyRow i32) (local $dxRow i32) (local $a i32) (local $b i32) (local $o i32)
    (local $pS i32) (local $oS i32)
    (local.set $seg (i32.mul (local.get $KW) (local.get $Ci)))
    (local.set $KKb (i32.shl (i32.mul (local.get $KH) (local.get $seg)) (i32.const 2)))
    (local.set $pS (i32.shl (local.get $Co) (i32.const 2)))
    (local.set $oS (i32.shl (local.get $Ci) (i32.const 2)))
    (block $rd (loop $rl
      (br_if $rd (i32.ge_u (local.get $row) (i32.mul (local.get $N) (local.get $oH))))
      (local.set $n (i32.div_u (local.get $row) (local.get $oH)))
      (local.set $oh (i32.rem_u (local.get $row) (local.get $oH)))
      (local.set $dyRow (i32.add (local.get $dy) (i32.mul (i32.mul (local.get $row) (local.get $oW)) (local.get $pS))))
      (local.set $kh (i32.const 0))
      (block $khd (loop $khl
        (br_if $khd (i32.ge_u (local.get $kh) (local.get $KH)))
        (local.set $dxRow (i32.add (local.get $dx) (i32.mul (i32.mul
          (i32.add (i32.mul (local.get $n) (local.get $H)) (i32.add (local.get $oh) (local.get $kh)))
          (local.get $W)) (local.get $oS))))
        (local.set $ow (i32.const 0))
        (block $owd (loop $owl
          (br_if $owd (i32.ge_u (local.get $ow) (local.get $oW)))
          (local.set $a (i32.add (local.get $dyRow) (i32.mul (local.get $ow) (local.get $pS))))
          (local.set $kk (i32.const 0))
          (block $kd (loop $kl
            (br_if $kd (i32.ge_u (local.get $kk) (local.get $seg)))
            (local.set $b (i32.add (local.get $wT) (i32.shl (i32.add (i32.mul (local.get $kh) (local.get $seg)) (local.get $kk)) (i32.const 2))))
            (local.set $o (i32.add (local.get $dxRow) (i32.add (i32.mul (local.get $ow) (local.get $oS)) (i32.shl (local.get $kk) (i32.const 2)))))
            (if (i32.le_u (i32.add (local.get $ow) (i32.const 4)) (local.get $oW))
              (then
                (if (i32.le_u (i32.add (local.get $kk) (i32.const 8)) (local.get $seg))
                  (then (call $tile_4x8 (local.get $a) (local.get $pS) (local.get $b) (local.get $KKb) (local.get $Co) (local.get $o) (local.get $oS)))
                  (else (call $tile_4x4 (local.get $a) (local.get $pS) (local.get $b) (local.get $KKb) (local.get $Co) (local.get $o) (local.get $oS)))))
              (else
                (if (i32.le_u (i32.add (local.get $kk) (i32.const 8)) (local.get $seg))
                  (then (call $tile_1x8 (local.get $a) (local.get $pS) (local.get $b) (local.get $KKb) (local.get $Co) (local.get $o) (local.get $oS)))
                  (else (call $tile_1x4 (local.get $a) (local.get $pS) (local.get $b) (local.get $KKb) (local.get $Co) (local.get $o) (local.get $oS))))))
            (local.set $kk (i32.add (local.get $kk)
              (select (i32.const 8) (i32.const 4) (i32.le_u (i32.add (local.get $kk) (i32.const 8)) (local.get $seg)))))
            (br $kl)))
          (local.set $ow (i32.add (local.get $ow)
            (select (i32.const 4) (i32.const 1) (i32.le_u (i32.add (local.get $ow) (i32.const 4)) (local.get $oW)))))
          (br $owl)))
        (local.set $kh (i32.add (local.get $kh) (i32.const 1)))
        (br $khl)))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br $rl))))

  ;; o[M, N] += a[M, K] . b[K, N], N a multiple of 4; row strides aS, bS, oS in bytes. Column strips
  ;; of 8 (a last one of 4) outermost, so a strip of b stays in cache while every row tile passes.
  (func $gemm_acc (export "gemm_acc") (param $a i32) (param $aS i32) (param $b i32) (param $bS i32) (param $K i32)
    (param $o i32) (param $oS i32) (param $M i32) (param $N i32)
    (local $i i32) (local $j i32) (local $ai i32) (local $oi i32) (local $bj i32)
    (block $jd (loop $jl
      (br_if $jd (i32.ge_u (local.get $j) (local.get $N)))
      (local.set $bj (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2))))
      (local.set $i (i32.const 0))
      (block $id (loop $il
        (br_if $id (i32.ge_u (local.get $i) (local.get $M)))
        (local.set $ai (i32.add (local.get $a) (i32.mul (local.get $i) (local.get $aS))))
        (local.set $oi (i32.add (local.get $o) (i32.add (i32.mul (local.get $i) (local.get $oS)) (i32.shl (local.get $j) (i32.const 2)))))
        (if (i32.le_u (i32.add (local.get $i) (i32.const 4)) (local.get $M))
          (then
            (if (i32.le_u (i32.add (local.get $j) (i32.const 8)) (local.get $N))
              (then (call $tile_4x8 (local.get $ai) (local.get $aS) (local.get $bj) (local.get $bS) (local.get $K) (local.get $oi) (local.get $oS)))
              (else (call $tile_4x4 (local.get $ai) (local.get $aS) (local.get $bj) (local.get $bS) (local.get $K) (local.get $oi) (local.get $oS))))
            (local.set $i (i32.add (local.get $i) (i32.const 4))))
          (else
            (if (i32.le_u (i32.add (local.get $j) (i32.const 8)) (local.get $N))
              (then (call $tile_1x8 (local.get $ai) (local.get $aS) (local.get $bj) (local.get $bS) (local.get $K) (local.get $oi) (local.get $oS)))
              (else (call $tile_1x4 (local.get $ai) (local.get $aS) (local.get $bj) (local.get $bS) (local.get $K) (local.get $oi) (local.get $oS))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))))
        (br $il)))
      (local.set $j (i32.add (local.get $j)
        (select (i32.const 8) (i32.const 4) (i32.le_u (i32.add (local.get $j) (i32.const 8)) (local.get $N)))))
      (br $jl))))

  ;; o[M, N] += a^T . b for a [K, M], b [K, N] (a weight gradient x^T . dy), N a multiple of 4, the
  ;; rows of a readable up to M rounded up to 4 (only M rows of o are written); aS, bS row strides in
  ;; bytes, o's row stride is bS. Tiles: 4 values of a row of a splatted against 8 (or 4) of the same
  ;; row of b; 4 columns of a at a time against every strip of b (for conv2's filter gradient 0.5 ms
  ;; faster than strips of b outermost).
  (func $gemm_tn (export "gemm_tn") (param $a i32) (param $aS i32) (param $b i32) (param $bS i32) (param $K i32)
    (param $o i32) (param $M i32) (param $N i32)
    (local $i i32) (local $j i32) (local $ai i32) (local $oi i32)
    (block $id (loop $il
      (br_if $id (i32.ge_u (local.get $i) (local.get $M)))
      (local.set $ai (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 2))))
      (local.set $oi (i32.add (local.get $o) (i32.mul (local.get $i) (local.get $bS))))
      (local.set $j (i32.const 0))
      (block $jd (loop $jl
        (br_if $jd (i32.ge_u (local.get $j) (local.get $N)))
        (if (i32.le_u (i32.add (local.get $j) (i32.const 8)) (local.get $N))
          (then
            (call $wgrad_tile8 (local.get $ai) (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2))) (local.get $K)
              (local.get $aS) (local.get $bS) (i32.add (local.get $oi) (i32.shl (local.get $j) (i32.const 2))) (i32.sub (local.get $M) (local.get $i)))
            (local.set $j (i32.add (local.get $j) (i32.const 8))))
          (else
            (call $wgrad_tile4 (local.get $ai) (i32.add (local.get $b) (i32.shl (local.get $j) (i32.const 2))) (local.get $K)
              (local.get $aS) (local.get $bS) (i32.add (local.get $oi) (i32.shl (local.get $j) (i32.const 2))) (i32.sub (local.get $M) (local.get $i)))
            (local.set $j (i32.add (local.get $j) (i32.const 4)))))
        (br $jl)))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $il))))

  ;; Forward conv of few input channels, y [P, Co] = patches [P, KK] . w [KK, Co], Co a multiple
  ;; of 4: per block of positions, the patches gathered as for conv_wgrad, then one gemm_acc.
${patchBlockKernel('conv_fwd', 'i32.mul (local.get $P) (local.get $Co)', `(call $gemm_acc (local.get $cols) (i32.shl (local.get $KKp) (i32.const 2)) (local.get $b) (i32.shl (local.get $Co) (i32.const 2))
        (local.get $KK) (i32.add (local.get $o) (i32.shl (i32.mul (local.get $p0) (local.get $Co)) (i32.const 2)))
        (i32.shl (local.get $Co) (i32.const 2)) (local.get $pb) (local.get $Co))`)}
${registerTile(4, 2)}${registerTile(4, 1)}${registerTile(1, 2)}${registerTile(1, 1)})
`;

/**
 * A register tile of a matrix product, P rows x 4V columns summed over K:
 * acc[i][j] += splat(a_i[k]) * b[k, 4j..4j+3], then added to o + i*oS (+16j). Row i of a starts
 * i*aS bytes after a; b advances bS bytes a step of k. Generated, so the four tile shapes that
 * conv_dgrad and gemm_acc use come from one text.
 */
function registerTile(P: number, V: number): string {
  const acc = (i: number, j: number) => `$c${i}_${j}`;
  const lines: string[] = [];
  lines.push(`  (func $tile_${P}x${4 * V} (param $a i32) (param $aS i32) (param $b i32) (param $bS i32) (param $K i32) (param $o i32) (param $oS i32)`);
  const locals = ['(local $k i32) (local $s v128)'];
  for (let i = 1; i < P; i++) locals.push(`(local $a${i} i32)`);
  for (let j = 0; j < V; j++) locals.push(`(local $b${j} v128)`);
  for (let i = 0; i < P; i++) for (let j = 0; j < V; j++) locals.push(`(local ${acc(i, j)} v128)`);
  lines.push('    ' + locals.join(' '));
  for (let i = 1; i < P; i++) lines.push(`    (local.set $a${i} (i32.add (local.get $a) (i32.mul (local.get $aS) (i32.const ${i}))))`);
  lines.push('    (loop $l');
  for (let j = 0; j < V; j++) lines.push(`      (local.set $b${j} (v128.load offset=${16 * j} (local.get $b)))`);
  for (let i = 0; i < P; i++) {
    lines.push(`      (local.set $s (v128.load32_splat (local.get ${i === 0 ? '$a' : `$a${i}`})))`);
    for (let j = 0; j < V; j++) lines.push(`      (local.set ${acc(i, j)} (f32x4.add (local.get ${acc(i, j)}) (f32x4.mul (local.get $s) (local.get $b${j}))))`);
  }
  for (let i = 0; i < P; i++) lines.push(`      (local.set ${i === 0 ? '$a' : `$a${i}`} (i32.add (local.get ${i === 0 ? '$a' : `$a${i}`}) (i32.const 4)))`);
  lines.push('      (local.set $b (i32.add (local.get $b) (local.get $bS)))');
  lines.push('      (local.set $k (i32.add (local.get $k) (i32.const 1)))');
  lines.push('      (br_if $l (i32.lt_u (local.get $k) (local.get $K))))');
  for (let i = 0; i < P; i++) {
    for (let j = 0; j < V; j++)
      lines.push(`    (v128.store offset=${16 * j} (local.get $o) (f32x4.add (v128.load offset=${16 * j} (local.get $o)) (local.get ${acc(i, j)})))`);
    if (i < P - 1) lines.push('    (local.set $o (i32.add (local.get $o) (local.get $oS)))');
  }
  lines.push('  )\n');
  return lines.join('\n') + '\n';
}

/**
 * One Adam update at byte offset $i, on 4 lanes (the vector loop) or 1 (its tail); both widths
 * from one text so that they cannot drift apart.
 */
function adamUpdate(vector: boolean): string {
  const T = vector ? 'f32x4' : 'f32', ld = vector ? 'v128.load' : 'f32.load', st = vector ? 'v128.store' : 'f32.store';
  const [b1, b2, c1, c2, i1, i2, eps, nlr] = vector
    ? ['$B1', '$B2', '$C1', '$C2', '$I1', '$I2', '$E', '$L']
    : ['$b1', '$b2', '$c1', '$c2', '$inv1', '$inv2', '$eps', '$nlr'];
  const [g, m, v] = vector ? ['$gv', '$mv', '$vv'] : ['$gs', '$ms', '$vs'];
  const at = (base: string) => `(i32.add (local.get ${base}) (local.get $i))`;
  return `      (local.set ${g} (${ld} ${at('$g')}))
      (local.set ${m} (${T}.add (${T}.mul (${ld} ${at('$m')}) (local.get ${b1})) (${T}.mul (local.get ${g}) (local.get ${c1}))))
      (local.set ${v} (${T}.add (${T}.mul (${ld} ${at('$v')}) (local.get ${b2}))
        (${T}.mul (${T}.mul (local.get ${g}) (local.get ${g})) (local.get ${c2}))))
      (${st} ${at('$m')} (local.get ${m}))
      (${st} ${at('$v')} (local.get ${v}))
      (${st} ${at('$out')}
        (${T}.add
          (${T}.mul
            (${T}.div (${T}.mul (local.get ${m}) (local.get ${i1}))
              (${T}.add (${T}.sqrt (${T}.mul (local.get ${v}) (local.get ${i2}))) (local.get ${eps})))
            (local.get ${nlr}))
          (${ld} ${at('$p')})))`;
}

/**
 * A conv kernel over blocks of output positions (x, b, o, cols, PB, then the conv's geometry): o
 * (outFloats floats) zeroed, then per block [p0, p0+pb) the patches gathered into cols [pb, KKp]
 * and `perBlock` run (it sees $b, $o, $cols, $p0, $pb, $KK, $KKp, $Co).
 */
function patchBlockKernel(name: string, outFloats: string, perBlock: string): string {
  return `  (func (export "${name}") (param $x i32) (param $b i32) (param $o i32) (param $cols i32) (param $PB i32)
    (param $N i32) (param $H i32) (param $W i32) (param $Ci i32) (param $oH i32) (param $oW i32) (param $Co i32)
    (param $KH i32) (param $KW i32) (param $sh i32) (param $sw i32) (param $dh i32) (param $dw i32)
    (param $top i32) (param $left i32)
    (local $KK i32) (local $KKp i32) (local $P i32) (local $p0 i32) (local $pb i32)
    (local.set $KK (i32.mul (i32.mul (local.get $KH) (local.get $KW)) (local.get $Ci)))
    (local.set $KKp (i32.and (i32.add (local.get $KK) (i32.const 3)) (i32.const -4)))
    (local.set $P (i32.mul (local.get $N) (i32.mul (local.get $oH) (local.get $oW))))
    (memory.fill (local.get $o) (i32.const 0) (i32.shl (${outFloats}) (i32.const 2)))
    (block $done (loop $blocks
      (br_if $done (i32.ge_u (local.get $p0) (local.get $P)))
      (local.set $pb (i32.sub (local.get $P) (local.get $p0)))
      (if (i32.gt_u (local.get $pb) (local.get $PB)) (then (local.set $pb (local.get $PB))))
      (call $gather (local.get $x) (local.get $cols) (local.get $p0) (local.get $pb)
        (local.get $H) (local.get $W) (local.get $Ci) (local.get $oH) (local.get $oW) (local.get $KH) (local.get $KW)
        (local.get $sh) (local.get $sw) (local.get $dh) (local.get $dw) (local.get $top) (local.get $left))
      ${perBlock}
      (local.set $p0 (i32.add (local.get $p0) (local.get $pb)))
      (br $blocks))))`;
}

/** o[r, c] = x[r, c] <op> b[c] over rows of C >= 4 floats; the last vector of a row may overlap. */
function channelOp(name: string, op: string): string {
  return `  (func (export "${name}") (param $x i32) (param $b i32) (param $o i32) (param $rows i32) (param $C i32)
    (local $c i32) (local $last i32) (local $end i32) (local $row i32)
    (local.set $last (i32.shl (i32.sub (local.get $C) (i32.const 4)) (i32.const 2)))
    (local.set $row (i32.shl (local.get $C) (i32.const 2)))
    (local.set $end (i32.add (local.get $x) (i32.mul (local.get $rows) (local.get $row))))
    (block $done
      (loop $rl
        (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
        (local.set $c (i32.const 0))
        (loop $cl
          (if (i32.gt_u (local.get $c) (local.get $last)) (then (local.set $c (local.get $last))))
          (v128.store (i32.add (local.get $o) (local.get $c))
            (${op} (v128.load (i32.add (local.get $x) (local.get $c))) (v128.load (i32.add (local.get $b) (local.get $c)))))
          (local.set $c (i32.add (local.get $c) (i32.const 16)))
          (br_if $cl (i32.lt_u (local.get $c) (i32.add (local.get $last) (i32.const 16)))))
        (local.set $x (i32.add (local.get $x) (local.get $row)))
        (local.set $o (i32.add (local.get $o) (local.get $row)))
        (br $rl))))
`;
}

/**
 * Depthwise conv gradients, channel multiplier 1, any strides, dilations and padding: for every
 * output position and in-bounds tap, one multiply-add run over the C channels (`madd`, reading
 * the tap's input row at $x + $xo, the filter tap at $w + $wo, dy at $gp, $cb bytes). dw_dgrad:
 * x is dx (zeroed by the caller) and w the filter. dw_wgrad: x is the input, w a float32 scratch
 * of KH*KW*C re-zeroed per image, and `perImage` folds it into float64 totals at $acc.
 */
function depthwiseKernel(name: string, madd: string, perImage: string): string {
  return `  (func (export "${name}") (param $x i32) (param $dy i32) (param $w i32) (param $acc i32)
    (param $N i32) (param $H i32) (param $W i32) (param $C i32) (param $oH i32) (param $oW i32)
    (param $KH i32) (param $KW i32) (param $sh i32) (param $sw i32) (param $dh i32) (param $dw i32)
    (param $top i32) (param $left i32)
    (local $n i32) (local $oh i32) (local $ow i32) (local $kh i32) (local $kw i32) (local $ih i32) (local $iw i32)
    (local $cb i32) (local $gp i32) (local $xo i32) (local $wo i32) (local $wb i32) (local $k i32)
    (local.set $cb (i32.shl (local.get $C) (i32.const 2)))
    (local.set $wb (i32.mul (i32.mul (local.get $KH) (local.get $KW)) (local.get $cb)))
    (local.set $gp (local.get $dy))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_u (local.get $n) (local.get $N)))
      ${perImage ? '(memory.fill (local.get $w) (i32.const 0) (local.get $wb))' : ''}
      (local.set $oh (i32.const 0))
      (block $hd (loop $hl
        (br_if $hd (i32.ge_u (local.get $oh) (local.get $oH)))
        (local.set $ow (i32.const 0))
        (block $wd (loop $wl
          (br_if $wd (i32.ge_u (local.get $ow) (local.get $oW)))
          (local.set $kh (i32.const 0))
          (block $khd (loop $khl
            (br_if $khd (i32.ge_u (local.get $kh) (local.get $KH)))
            (local.set $ih (i32.add (i32.sub (i32.mul (local.get $oh) (local.get $sh)) (local.get $top)) (i32.mul (local.get $kh) (local.get $dh))))
            (if (i32.and (i32.ge_s (local.get $ih) (i32.const 0)) (i32.lt_s (local.get $ih) (local.get $H)))
              (then
                (local.set $kw (i32.const 0))
                (block $kwd (loop $kwl
                  (br_if $kwd (i32.ge_u (local.get $kw) (local.get $KW)))
                  (local.set $iw (i32.add (i32.sub (i32.mul (local.get $ow) (local.get $sw)) (local.get $left)) (i32.mul (local.get $kw) (local.get $dw))))
                  (if (i32.and (i32.ge_s (local.get $iw) (i32.const 0)) (i32.lt_s (local.get $iw) (local.get $W)))
                    (then
                      (local.set $xo (i32.mul (i32.add (i32.mul (i32.add (i32.mul (local.get $n) (local.get $H)) (local.get $ih)) (local.get $W)) (local.get $iw)) (local.get $cb)))
                      (local.set $wo (i32.mul (i32.add (i32.mul (local.get $kh) (local.get $KW)) (local.get $kw)) (local.get $cb)))
                      ${madd}))
                  (local.set $kw (i32.add (local.get $kw) (i32.const 1)))
                  (br $kwl)))))
            (local.set $kh (i32.add (local.get $kh) (i32.const 1)))
            (br $khl)))
          (local.set $gp (i32.add (local.get $gp) (local.get $cb)))
          (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
          (br $wl)))
        (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
        (br $hl)))${perImage}
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $nl))))
`;
}

/** d[..end) = s[..]: 16 bytes at a time, then 4; d and s advance (shared by $copy_run and its inlined use). */
function copyLoops(d: string, src: string, end: string, tag: string): string {
  return `    (block $${tag}vd (loop $${tag}v
      (br_if $${tag}vd (i32.gt_u (i32.add (local.get ${d}) (i32.const 16)) (local.get ${end})))
      (v128.store (local.get ${d}) (v128.load (local.get ${src})))
      (local.set ${d} (i32.add (local.get ${d}) (i32.const 16)))
      (local.set ${src} (i32.add (local.get ${src}) (i32.const 16)))
      (br $${tag}v)))
    (block $${tag}sd (loop $${tag}s
      (br_if $${tag}sd (i32.ge_u (local.get ${d}) (local.get ${end})))
      (f32.store (local.get ${d}) (f32.load (local.get ${src})))
      (local.set ${d} (i32.add (local.get ${d}) (i32.const 4)))
      (local.set ${src} (i32.add (local.get ${src}) (i32.const 4)))
      (br $${tag}s)))`;
}

/**
 * The fused activation's gradient mask of batch-norm output z = (x - mean) * a + off (as batch_norm_act
 * computes it; d = x - mean, a and the offset vectors at $a and `off`, channel byte offset $c): 0 < z <= hi.
 */
function actMask(d: string, off: string): string {
  return `(local.set $z (f32x4.add (f32x4.mul ${d} (v128.load (i32.add (local.get $a) (local.get $c)))) (v128.load (i32.add (local.get ${off}) (local.get $c)))))
            (v128.and (f32x4.gt (local.get $z) (v128.const i32x4 0 0 0 0)) (f32x4.le (local.get $z) (local.get $hiv)))`;
}

/** Batch norm's forward over rows x C: o = (x - mean) * a + off, clamped to [lo, hi] when `clamp`. */
function batchNormKernel(name: string, clamp: boolean): string {
  const v = `(f32x4.add
            (f32x4.mul
              (f32x4.sub (v128.load (i32.add (local.get $x) (local.get $c))) (v128.load (i32.add (local.get $mean) (local.get $c))))
              (v128.load (i32.add (local.get $a) (local.get $c))))
            (v128.load (i32.add (local.get $off) (local.get $c))))`;
  return `  (func (export "${name}") (param $x i32) (param $mean i32) (param $a i32) (param $off i32) (param $o i32)
    (param $rows i32) (param $C i32)${clamp ? ' (param $lo f32) (param $hi f32)' : ''}
    (local $c i32) (local $last i32) (local $end i32) (local $row i32) (local $lov v128) (local $hiv v128)
    ${clamp ? '(local.set $lov (f32x4.splat (local.get $lo))) (local.set $hiv (f32x4.splat (local.get $hi)))' : ''}
    (local.set $last (i32.shl (i32.sub (local.get $C) (i32.const 4)) (i32.const 2)))
    (local.set $row (i32.shl (local.get $C) (i32.const 2)))
    (local.set $end (i32.add (local.get $x) (i32.mul (local.get $rows) (local.get $row))))
    (block $done (loop $rl
      (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
      (local.set $c (i32.const 0))
      (loop $cl
        (if (i32.gt_u (local.get $c) (local.get $last)) (then (local.set $c (local.get $last))))
        (v128.store (i32.add (local.get $o) (local.get $c))
          ${clamp ? `(f32x4.min (f32x4.max ${v} (local.get $lov)) (local.get $hiv))` : v})
        (local.set $c (i32.add (local.get $c) (i32.const 16)))
        (br_if $cl (i32.lt_u (local.get $c) (i32.add (local.get $last) (i32.const 16)))))
      (local.set $x (i32.add (local.get $x) (local.get $row)))
      (local.set $o (i32.add (local.get $o) (local.get $row)))
      (br $rl))))
`;
}

/** Batch-norm gradient pass 1 (see its comment in KERNELS_WAT); `masked`: dy through the fused activation's mask. */
function bnGradSums(name: string, masked: boolean): string {
  // One row's terms into accumulators (sg, sx), its byte offset `off`; temporaries suffixed `t`. Two rows
  // per iteration into two pairs of accumulators (added at the block's end): the float32 adds of one
  // chain are latency-bound (a cache-resident layer ran at ~11 GB/s against a bias add's ~25).
  const row = (off: string, sg: string, sx: string, t: string) => {
    const dyv = `(v128.load (i32.add (local.get $dy) ${off}))`;
    const g = masked
      ? `(v128.and ${dyv} (v128.and (f32x4.gt (local.tee $z${t} (f32x4.add (f32x4.mul (local.get $d${t}) (local.get $av)) (local.get $ov))) (v128.const i32x4 0 0 0 0)) (f32x4.le (local.get $z${t}) (local.get $hiv))))`
      : dyv;
    return `(local.set $d${t} (f32x4.sub (v128.load (i32.add (local.get $x) ${off})) (local.get $m)))
            (local.set $g${t} ${g})
            (local.set ${sg} (f32x4.add (local.get ${sg}) (local.get $g${t})))
            (local.set ${sx} (f32x4.add (local.get ${sx}) (f32x4.mul (local.get $g${t}) (f32x4.mul (local.get $d${t}) (local.get $is)))))`;
  };
  const store = (v: string) => `(v128.store (local.get $a2) (f64x2.add (v128.load (local.get $a2)) (f64x2.promote_low_f32x4 (local.get ${v}))))
          (v128.store offset=16 (local.get $a2) (f64x2.add (v128.load offset=16 (local.get $a2))
            (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get ${v}) (local.get ${v})))))`;
  return `  (func (export "${name}") (param $dy i32) (param $x i32) (param $mean i32) (param $invstd i32)${masked ? ' (param $a i32) (param $off0 i32) (param $hi f32)' : ''} (param $acc i32)
    (param $rows i32) (param $C i32)
    (local $r0 i32) (local $r i32) (local $rend i32) (local $c i32) (local $stride i32) (local $off i32) (local $a2 i32)
    (local $sg v128) (local $sx v128) (local $sg2 v128) (local $sx2 v128) (local $m v128) (local $is v128) (local $av v128) (local $ov v128) (local $hiv v128)
    (local $d1 v128) (local $g1 v128) (local $z1 v128) (local $d2 v128) (local $g2 v128) (local $z2 v128)
    ${masked ? '(local.set $hiv (f32x4.splat (local.get $hi)))' : ''}
    (local.set $stride (i32.shl (local.get $C) (i32.const 2)))
    (memory.fill (local.get $acc) (i32.const 0) (i32.shl (local.get $C) (i32.const 4)))
    (block $done
      (loop $blk
        (br_if $done (i32.ge_u (local.get $r0) (local.get $rows)))
        (local.set $rend (i32.add (local.get $r0) (i32.const 64)))
        (if (i32.gt_u (local.get $rend) (local.get $rows)) (then (local.set $rend (local.get $rows))))
        (local.set $c (i32.const 0))
        (loop $cols
          (local.set $m (v128.load (i32.add (local.get $mean) (local.get $c))))
          (local.set $is (v128.load (i32.add (local.get $invstd) (local.get $c))))
          ${masked ? '(local.set $av (v128.load (i32.add (local.get $a) (local.get $c)))) (local.set $ov (v128.load (i32.add (local.get $off0) (local.get $c))))' : ''}
          (local.set $sg (v128.const i32x4 0 0 0 0))
          (local.set $sx (v128.const i32x4 0 0 0 0))
          (local.set $sg2 (v128.const i32x4 0 0 0 0))
          (local.set $sx2 (v128.const i32x4 0 0 0 0))
          (local.set $off (i32.add (i32.mul (local.get $r0) (local.get $stride)) (local.get $c)))
          (local.set $r (local.get $r0))
          (block $pd (loop $pl
            (br_if $pd (i32.gt_u (i32.add (local.get $r) (i32.const 2)) (local.get $rend)))
            ${row('(local.get $off)', '$sg', '$sx', '1')}
            ${row('(i32.add (local.get $off) (local.get $stride))', '$sg2', '$sx2', '2')}
            (local.set $off (i32.add (local.get $off) (i32.shl (local.get $stride) (i32.const 1))))
            (local.set $r (i32.add (local.get $r) (i32.const 2)))
            (br $pl)))
          (if (i32.lt_u (local.get $r) (local.get $rend))
            (then
            ${row('(local.get $off)', '$sg', '$sx', '1')}))
          (local.set $sg (f32x4.add (local.get $sg) (local.get $sg2)))
          (local.set $sx (f32x4.add (local.get $sx) (local.get $sx2)))
          (local.set $a2 (i32.add (local.get $acc) (i32.shl (local.get $c) (i32.const 1))))
          ${store('$sg')}
          (local.set $a2 (i32.add (local.get $a2) (i32.shl (local.get $C) (i32.const 3))))
          ${store('$sx')}
          (local.set $c (i32.add (local.get $c) (i32.const 16)))
          (br_if $cols (i32.lt_u (local.get $c) (local.get $stride))))
        (local.set $r0 (local.get $rend))
        (br $blk))))
`;
}

/** Batch-norm gradient pass 2 (see its comment in KERNELS_WAT); `masked`: dy through the fused activation's mask. */
function bnGradDx(name: string, masked: boolean): string {
  const at = (p: string) => `(i32.add (local.get ${p}) (i32.add (local.get $row) (local.get $c)))`;
  const g = masked
    ? `(v128.and (v128.load ${at('$dy')})
            ${actMask('(local.get $d)', '$off')})`
    : `(v128.load ${at('$dy')})`;
  return `  (func (export "${name}") (param $dy i32) (param $x i32) (param $mean i32) (param $p i32) (param $q i32) (param $k i32)${masked ? ' (param $a i32) (param $off i32) (param $hi f32)' : ''} (param $o i32)
    (param $rows i32) (param $C i32)
    (local $c i32) (local $stride i32) (local $end i32) (local $row i32) (local $d v128) (local $z v128) (local $hiv v128)
    ${masked ? '(local.set $hiv (f32x4.splat (local.get $hi)))' : ''}
    (local.set $stride (i32.shl (local.get $C) (i32.const 2)))
    (local.set $end (i32.mul (local.get $rows) (local.get $stride)))
    (block $done
      (loop $rl
        (br_if $done (i32.ge_u (local.get $row) (local.get $end)))
        (local.set $c (i32.const 0))
        (loop $cl
          (local.set $d (f32x4.sub (v128.load ${at('$x')}) (v128.load (i32.add (local.get $mean) (local.get $c)))))
          (v128.store ${at('$o')}
            (f32x4.add
              (f32x4.add
                (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $c))) ${g})
                (f32x4.mul (v128.load (i32.add (local.get $q) (local.get $c))) (local.get $d)))
              (v128.load (i32.add (local.get $k) (local.get $c)))))
          (local.set $c (i32.add (local.get $c) (i32.const 16)))
          (br_if $cl (i32.lt_u (local.get $c) (local.get $stride))))
        (local.set $row (i32.add (local.get $row) (local.get $stride)))
        (br $rl))))
`;
}

/**
 * dw3x3_wgrad(x, dy, acc, N, H, W, C, oH, oW, sh, sw, top, left): acc (9*C float64, zeroed by the caller)
 * += per image, the float32 sum over its output positions (in order) of x[tap] * dy, per tap and channel.
 * Interior positions read their 9 taps unchecked; border ones check each tap against the image.
 */
function dw3x3Wgrad(): string {
  const taps: Array<[number, number]> = [];
  for (let kh = 0; kh < 3; kh++) for (let kw = 0; kw < 3; kw++) taps.push([kh, kw]);
  const addr = (kh: number, kw: number) =>
    `(i32.add (local.get $p0) (i32.add (i32.mul (local.get $rs) (i32.const ${kh})) (i32.mul (local.get $cs) (i32.const ${kw}))))`;
  const madd = (kh: number, kw: number) =>
    `(local.set $a${kh}${kw} (f32x4.add (local.get $a${kh}${kw}) (f32x4.mul (v128.load ${addr(kh, kw)}) (local.get $g))))`;
  const checked = (kh: number, kw: number) =>
    `(if (i32.and (i32.lt_u (i32.add (local.get $ih) (i32.const ${kh})) (local.get $H)) (i32.lt_u (i32.add (local.get $iw) (i32.const ${kw})) (local.get $W))) (then ${madd(kh, kw)}))`;
  const fold = taps
    .map(([kh, kw]) => {
      const at = `(i32.add (local.get $acc) (i32.add (i32.mul (local.get $C) (i32.const ${(kh * 3 + kw) * 8})) (i32.shl (local.get $c) (i32.const 1))))`;
      return `(local.set $t ${at})
        (v128.store (local.get $t) (f64x2.add (v128.load (local.get $t)) (f64x2.promote_low_f32x4 (local.get $a${kh}${kw}))))
        (v128.store offset=16 (local.get $t) (f64x2.add (v128.load offset=16 (local.get $t))
          (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $a${kh}${kw}) (local.get $a${kh}${kw})))))`;
    })
    .join('\n        ');
  return `  (func (export "dw3x3_wgrad") (param $x i32) (param $dy i32) (param $acc i32)
    (param $N i32) (param $H i32) (param $W i32) (param $C i32) (param $oH i32) (param $oW i32)
    (param $sh i32) (param $sw i32) (param $top i32) (param $left i32)
    (local $n i32) (local $c i32) (local $oh i32) (local $ow i32) (local $ih i32) (local $iw i32) (local $t i32)
    (local $cs i32) (local $rs i32) (local $xn i32) (local $gn i32) (local $gp i32) (local $p0 i32) (local $step i32) (local $rowsIn i32)
    (local $g v128) ${taps.map(([kh, kw]) => `(local $a${kh}${kw} v128)`).join(' ')}
    (local.set $cs (i32.shl (local.get $C) (i32.const 2)))
    (local.set $rs (i32.mul (local.get $W) (local.get $cs)))
    (local.set $step (i32.mul (local.get $sw) (local.get $cs)))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_u (local.get $n) (local.get $N)))
      (local.set $xn (i32.add (local.get $x) (i32.mul (i32.mul (local.get $n) (local.get $H)) (local.get $rs))))
      (local.set $gn (i32.add (local.get $dy) (i32.mul (i32.mul (i32.mul (local.get $n) (local.get $oH)) (local.get $oW)) (local.get $cs))))
      (local.set $c (i32.const 0))
      (block $cd (loop $cl
        (br_if $cd (i32.ge_u (local.get $c) (local.get $cs)))
        ${taps.map(([kh, kw]) => `(local.set $a${kh}${kw} (v128.const i32x4 0 0 0 0))`).join(' ')}
        (local.set $gp (i32.add (local.get $gn) (local.get $c)))
        (local.set $oh (i32.const 0))
        (block $hd (loop $hl
          (br_if $hd (i32.ge_u (local.get $oh) (local.get $oH)))
          (local.set $ih (i32.sub (i32.mul (local.get $oh) (local.get $sh)) (local.get $top)))
          (local.set $rowsIn (i32.and (i32.ge_s (local.get $ih) (i32.const 0)) (i32.le_s (i32.add (local.get $ih) (i32.const 3)) (local.get $H))))
          (local.set $iw (i32.sub (i32.const 0) (local.get $left)))
          (local.set $p0 (i32.add (i32.add (local.get $xn) (local.get $c))
            (i32.add (i32.mul (local.get $ih) (local.get $rs)) (i32.mul (local.get $iw) (local.get $cs)))))
          (local.set $ow (i32.const 0))
          (block $wd (loop $wl
            (br_if $wd (i32.ge_u (local.get $ow) (local.get $oW)))
            (local.set $g (v128.load (local.get $gp)))
            (if (i32.and (local.get $rowsIn) (i32.and (i32.ge_s (local.get $iw) (i32.const 0)) (i32.le_s (i32.add (local.get $iw) (i32.const 3)) (local.get $W))))
              (then
            ${taps.map(([kh, kw]) => madd(kh, kw)).join('\n            ')})
              (else
            ${taps.map(([kh, kw]) => checked(kh, kw)).join('\n            ')}))
            (local.set $gp (i32.add (local.get $gp) (local.get $cs)))
            (local.set $p0 (i32.add (local.get $p0) (local.get $step)))
            (local.set $iw (i32.add (local.get $iw) (local.get $sw)))
            (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
            (br $wl)))
          (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
          (br $hl)))
        ${fold}
        (local.set $c (i32.add (local.get $c) (i32.const 16)))
        (br $cl)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $nl))))
`;
}

/**
 * dw3x3_dgrad(dx, dy, w, N, H, W, C, oH, oW, sh, sw, top, left): dx[n, oh*sh - top + kh, ow*sw - left + kw, c]
 * += dy[n, oh, ow, c] * w[kh, kw, c] for every in-bounds tap, positions in order (dw_dgrad's sums, its order);
 * a vector of channels at a time with its 9 taps in registers. Interior positions unchecked.
 */
function dw3x3Dgrad(): string {
  const taps: Array<[number, number]> = [];
  for (let kh = 0; kh < 3; kh++) for (let kw = 0; kw < 3; kw++) taps.push([kh, kw]);
  const addr = (kh: number, kw: number) =>
    `(i32.add (local.get $p0) (i32.add (i32.mul (local.get $rs) (i32.const ${kh})) (i32.mul (local.get $cs) (i32.const ${kw}))))`;
  const madd = (kh: number, kw: number) =>
    `(v128.store ${addr(kh, kw)} (f32x4.add (v128.load ${addr(kh, kw)}) (f32x4.mul (local.get $g) (local.get $w${kh}${kw}))))`;
  const checked = (kh: number, kw: number) =>
    `(if (i32.and (i32.lt_u (i32.add (local.get $ih) (i32.const ${kh})) (local.get $H)) (i32.lt_u (i32.add (local.get $iw) (i32.const ${kw})) (local.get $W))) (then ${madd(kh, kw)}))`;
  return `  (func (export "dw3x3_dgrad") (param $dx i32) (param $dy i32) (param $wt i32)
    (param $N i32) (param $H i32) (param $W i32) (param $C i32) (param $oH i32) (param $oW i32)
    (param $sh i32) (param $sw i32) (param $top i32) (param $left i32)
    (local $n i32) (local $c i32) (local $oh i32) (local $ow i32) (local $ih i32) (local $iw i32)
    (local $cs i32) (local $rs i32) (local $xn i32) (local $gn i32) (local $gp i32) (local $p0 i32) (local $step i32) (local $rowsIn i32)
    (local $g v128) ${taps.map(([kh, kw]) => `(local $w${kh}${kw} v128)`).join(' ')}
    (local.set $cs (i32.shl (local.get $C) (i32.const 2)))
    (local.set $rs (i32.mul (local.get $W) (local.get $cs)))
    (local.set $step (i32.mul (local.get $sw) (local.get $cs)))
    (block $nd (loop $nl
      (br_if $nd (i32.ge_u (local.get $n) (local.get $N)))
      (local.set $xn (i32.add (local.get $dx) (i32.mul (i32.mul (local.get $n) (local.get $H)) (local.get $rs))))
      (local.set $gn (i32.add (local.get $dy) (i32.mul (i32.mul (i32.mul (local.get $n) (local.get $oH)) (local.get $oW)) (local.get $cs))))
      (local.set $c (i32.const 0))
      (block $cd (loop $cl
        (br_if $cd (i32.ge_u (local.get $c) (local.get $cs)))
        ${taps.map(([kh, kw]) => `(local.set $w${kh}${kw} (v128.load (i32.add (local.get $wt) (i32.add (local.get $c) (i32.mul (local.get $cs) (i32.const ${kh * 3 + kw}))))))`).join('\n        ')}
        (local.set $gp (i32.add (local.get $gn) (local.get $c)))
        (local.set $oh (i32.const 0))
        (block $hd (loop $hl
          (br_if $hd (i32.ge_u (local.get $oh) (local.get $oH)))
          (local.set $ih (i32.sub (i32.mul (local.get $oh) (local.get $sh)) (local.get $top)))
          (local.set $rowsIn (i32.and (i32.ge_s (local.get $ih) (i32.const 0)) (i32.le_s (i32.add (local.get $ih) (i32.const 3)) (local.get $H))))
          (local.set $iw (i32.sub (i32.const 0) (local.get $left)))
          (local.set $p0 (i32.add (i32.add (local.get $xn) (local.get $c))
            (i32.add (i32.mul (local.get $ih) (local.get $rs)) (i32.mul (local.get $iw) (local.get $cs)))))
          (local.set $ow (i32.const 0))
          (block $wd (loop $wl
            (br_if $wd (i32.ge_u (local.get $ow) (local.get $oW)))
            (local.set $g (v128.load (local.get $gp)))
            (if (i32.and (local.get $rowsIn) (i32.and (i32.ge_s (local.get $iw) (i32.const 0)) (i32.le_s (i32.add (local.get $iw) (i32.const 3)) (local.get $W))))
              (then
            ${taps.map(([kh, kw]) => madd(kh, kw)).join('\n            ')})
              (else
            ${taps.map(([kh, kw]) => checked(kh, kw)).join('\n            ')}))
            (local.set $gp (i32.add (local.get $gp) (local.get $cs)))
            (local.set $p0 (i32.add (local.get $p0) (local.get $step)))
            (local.set $iw (i32.add (local.get $iw) (local.get $sw)))
            (local.set $ow (i32.add (local.get $ow) (i32.const 1)))
            (br $wl)))
          (local.set $oh (i32.add (local.get $oh) (i32.const 1)))
          (br $hl)))
        (local.set $c (i32.add (local.get $c) (i32.const 16)))
        (br $cl)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $nl))))
`;
}
