import type * as tfType from '@tensorflow/tfjs';

/**
 * tf.variableGrads whose backward pass frees as it goes. tfjs's backpropagateGradients keeps the gradient of
 * every intermediate tensor, and every tensor the ops saved for their gradients, until the whole backward pass
 * ends: at its end a training step held all the forward pass's saved activations plus a gradient the size of
 * each (MobileNetV2 1.4 at 224x224: ~112 MB an image, 1.5x the sum of all its layers' outputs). Here a
 * node's output gradients and its saved tensors are disposed as soon as the node's own backward step is done
 * (no other node reads them: each op saves its own clones), so the pass holds what is still ahead of it.
 * Same arithmetic, same order as tfjs's (tape walked backwards, gradients summed as they arrive); tested
 * against tf.variableGrads. Falls back to tf.variableGrads inside another gradient (higher order) or where the
 * engine lacks the internals this reads.
 */
export function leanVariableGrads(
  tf: typeof tfType,
  f: () => tfType.Scalar,
  vars: tfType.Variable[],
): { value: tfType.Scalar; grads: Record<string, tfType.Tensor> } {
  const engine = tf.engine() as unknown as EngineInternals;
  const usable = typeof engine.startTape === 'function' && typeof engine.scopedRun === 'function' && engine.state?.gradientDepth === 0;
  const trainable = vars.filter((v) => v.trainable);
  if (!usable || !trainable.length) return tf.variableGrads(f, vars) as { value: tfType.Scalar; grads: Record<string, tfType.Tensor> };
  const y = engine.scopedRun(() => engine.startTape(), () => engine.endTape(), () => engine.tidy('forward', f));
  const tape = engine.state.activeTape!;
  const path = nodesFromXToY(tape, trainable, y);
  const out = engine.tidy('backward', () => {
    const grads = backward(tf, engine, path, y, new Set(trainable.map((v) => v.id)));
    for (const node of tape) for (const t of node.saved ?? []) t.dispose();
    engine.state.activeTape = null;
    return { value: y, grads: trainable.map((v) => grads.get(v.id)) };
  });
  if (!out.grads.some((g) => g != null)) {
    throw new Error('Cannot find a connection between any variable and the result of the loss function y=f(x). Please make sure the operations that use variables are inside the function f passed to minimize().');
  }
  const named: Record<string, tfType.Tensor> = {};
  trainable.forEach((v, i) => {
    const g = out.grads[i];
    if (g != null) named[v.name] = g;
  });
  return { value: out.value as tfType.Scalar, grads: named };
}

/** The tape nodes on a path from one of `xs` to `y`, their inputs pruned to those that depend on `xs` (tfjs's getFilteredNodesXToY). */
function nodesFromXToY(tape: TapeNode[], xs: tfType.Tensor[], y: tfType.Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      for (const o of node.outputs) fromX.add(o.id);
      nodesFromX.add(node.id);
    }
  }
  const toY = new Set([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => toY.has(o.id))) {
      for (const t of Object.values(node.inputs)) toY.add(t.id);
      nodesToY.add(node.id);
    }
  }
  return tape
    .filter((n) => nodesFromX.has(n.id) && nodesToY.has(n.id))
    .map((n) => ({ ...n, inputs: Object.fromEntries(Object.entries(n.inputs).filter(([, t]) => fromX.has(t.id))) }));
}

/** Walks `path` backwards from dy = 1 at `y`; returns the gradients of `keep` (tensor id -> gradient). */
function backward(tf: typeof tfType, engine: EngineInternals, path: TapeNode[], y: tfType.Tensor, keep: Set<number>): Map<number, tfType.Tensor> {
  const acc = new Map<number, tfType.Tensor>([[y.id, tf.onesLike(y)]]);
  for (let i = path.length - 1; i >= 0; i--) {
    const node = path[i];
    const dys = node.outputs.map((o) => acc.get(o.id) ?? null);
    if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
    const inputGradients = node.gradient(dys);
    const summed: tfType.Tensor[] = [];
    for (const [name, x] of Object.entries(node.inputs)) {
      if (!(name in inputGradients)) throw new Error(`Cannot backprop through input ${name}. Available gradients found: ${Object.keys(inputGradients)}.`);
      let dx = engine.tidy(() => inputGradients[name]());
      if (dx.dtype !== 'float32') throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`);
      if (!tf.util.arraysEqual(dx.shape, x.shape)) throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`);
      // A gradient function may hand dy (or a saved tensor, or one gradient for two inputs) on as is: a clone (no copy)
      // outlives their disposal below.
      if (dys.includes(dx) || node.saved?.includes(dx) || [...acc.values()].includes(dx)) dx = dx.clone();
      const cur = acc.get(x.id);
      if (cur == null) acc.set(x.id, dx);
      else {
        acc.set(x.id, tf.add(cur, dx));
        cur.dispose();
        summed.push(dx);
      }
    }
    // Summed into another gradient, and not also some input's own (a gradient function may return one tensor twice).
    const held = new Set(acc.values());
    for (const dx of summed) if (!held.has(dx)) dx.dispose();
    // Nothing earlier on the tape reads this node's output gradients or its saved tensors.
    for (const o of node.outputs) {
      if (keep.has(o.id)) continue;
      acc.get(o.id)?.dispose();
      acc.delete(o.id);
    }
    for (const t of node.saved ?? []) t.dispose();
  }
  return acc;
}

interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tfType.Tensor>;
  outputs: tfType.Tensor[];
  saved?: tfType.Tensor[];
  gradient?: (dys: Array<tfType.Tensor | null>) => Record<string, () => tfType.Tensor>;
}

/** The parts of tfjs-core's Engine (4.x) the lean backward pass uses. */
interface EngineInternals {
  state: { gradientDepth: number; activeTape: TapeNode[] | null };
  startTape(): void;
  endTape(): void;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  tidy<T>(name: string | (() => T), f?: () => T): T;
}
