import { isMap, isScalar, isSeq, LineCounter, type Document, type Node, type Pair } from 'yaml';

export interface Located {
  line: number;
  col: number;
}

/** Finds the YAML node at a path (and the map pair holding it), as far down as the document goes. */
export function findNode(
  doc: Document,
  path: Array<string | number>,
): { node?: Node; pair?: Pair; depth: number } {
  let node: unknown = doc.contents;
  let pair: Pair | undefined;
  let depth = 0;
  for (const seg of path) {
    if (isMap(node)) {
      const p = node.items.find((it) => isScalar(it.key) && String(it.key.value) === String(seg));
      if (!p) break;
      pair = p as Pair;
      node = p.value;
    } else if (isSeq(node)) {
      const item = node.items[Number(seg)];
      if (item === undefined) break;
      pair = undefined;
      node = item;
    } else {
      break;
    }
    depth++;
  }
  return { node: (node ?? undefined) as Node | undefined, pair, depth };
}

export function positionOf(lc: LineCounter, offset: number | undefined): Located | undefined {
  if (offset === undefined) return undefined;
  const p = lc.linePos(offset);
  return { line: p.line, col: p.col };
}

/** Position of the value at `path`, or of its key when `atKey` (unknown-key errors point at the key). */
export function locate(doc: Document, lc: LineCounter, path: Array<string | number>, atKey = false): Located | undefined {
  const { node, pair, depth } = findNode(doc, path);
  if (atKey && depth === path.length && pair && (pair.key as Node | null)?.range) {
    return positionOf(lc, (pair.key as Node).range![0]);
  }
  if (node?.range) return positionOf(lc, node.range[0]);
  if (pair && (pair.key as Node | null)?.range) return positionOf(lc, (pair.key as Node).range![0]);
  // The document itself, when it has no source (an empty file given content by --set), starts at 1:1.
  if (path.length === 0) return { line: 1, col: 1 };
  return undefined;
}

export function pointerToPath(pointer: string): string[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

export function dotted(path: Array<string | number>): string {
  return path.map((p) => (typeof p === 'number' || /^\d+$/.test(String(p)) ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
}
