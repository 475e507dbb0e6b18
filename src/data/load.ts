import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { FromSchema } from 'json-schema-to-ts';
import { InputError } from '../errors/input-error.js';
import { transposeImages, type Dataset, type Splits } from './dataset.js';
import { channelAffine, normalizeInto, normalizeProblem } from './normalize.js';
import { loadIdxPair, idxDataSchema } from './idx.js';
import { imagesDataSchema, listImageTree, loadImages, treeNames, type ImageTree } from './images.js';
import { loadMnist, mnistDataSchema, mnistFiles } from './mnist.js';
import { dataPath, dataPathProblem, type DataPathRef } from './paths.js';
import { DEFAULT_SPLIT, DEFAULT_VALIDATION, pairFormProblems, pairOrders, seededOrder, splitDataset, splitOrdered, splitPairOrdered, splitTrainTest, type SpecProblem } from './split.js';
import { filesDataSchema, loadUserData } from './validate.js';

/** A data file a spec names, and where in the spec it is named (for positioned errors). */
export interface NamedPath {
  at: Array<string | number>;
  ref: DataPathRef;
  /** A folder (image folders), not a file. */
  folder?: true;
}

/**
 * One kind of dataset (`source:` in a recipe's `data:`): its schema (the spec's type derives from
 * it), the files it names, checks the schema cannot express, and how it loads into splits.
 */
interface DataSource<S> {
  schema: object;
  /** Every data file (or folder) the spec names: `validate` checks them, `run` resolves them. */
  paths(spec: S): NamedPath[];
  /** Rules beyond the schema, checked by `validate` (positioned under the dataset). */
  check?(spec: S): SpecProblem[];
  /** The files whose contents the dataset depends on: their digests go into cache keys. */
  files(spec: S, recipeDir: string): string[];
  /** Names that carry meaning beyond file contents (image folders name classes): part of the cache key too. */
  fileNames?(spec: S, recipeDir: string): string[];
  /** Reads the data and splits it with `seed`. */
  load(spec: S, recipeDir: string, seed: number): Promise<Splits>;
  /** Bumped when the same files load into different samples (a decoder change): part of the cache key. */
  version?: string;
}

type SpecOf<D> = D extends DataSource<infer S> ? S : never;
type MnistSpec = FromSchema<typeof mnistDataSchema>;
type FilesSpec = FromSchema<typeof filesDataSchema>;
type IdxSpec = FromSchema<typeof idxDataSchema>;
type ImagesSpec = FromSchema<typeof imagesDataSchema>;

/** The paths a spec names, resolved and confined (PathEscapeError for one that leaves where it may be). */
function resolved(def: { paths(spec: never): NamedPath[] }, spec: unknown, recipeDir: string): string[] {
  return def.paths(spec as never).map((p) => dataPath(recipeDir, p.ref));
}

const idxPaths = (spec: IdxSpec): NamedPath[] => {
  const ref = (at: string[], file: string | undefined, what: string) => (file === undefined ? [] : [{ at, ref: { file, root: spec.root, what: `data ${what} path` } }]);
  return [
    ...ref(['images'], spec.images, 'images'),
    ...ref(['labels'], spec.labels, 'labels'),
    ...ref(['train', 'images'], spec.train?.images, 'train images'),
    ...ref(['train', 'labels'], spec.train?.labels, 'train labels'),
    ...ref(['test', 'images'], spec.test?.images, 'test images'),
    ...ref(['test', 'labels'], spec.test?.labels, 'test labels'),
  ];
};

const imageFolders = (spec: ImagesSpec): NamedPath[] =>
  (['dir', 'train', 'test'] as const).flatMap((k) => (spec[k] === undefined ? [] : [{ at: [k], ref: { file: spec[k]!, root: spec.root, what: `data ${k === 'dir' ? 'image' : k} folder` }, folder: true as const }]));

/** Each image folder a spec names, with its class tree. */
function imageTrees(spec: ImagesSpec, recipeDir: string): Array<{ key: string; dir: string; tree: ImageTree }> {
  return imageFolders(spec).map((p) => {
    const dir = dataPath(recipeDir, p.ref);
    return { key: String(p.at[0]), dir, tree: listImageTree(dir) };
  });
}

/** The data sources, by `source:` value. A new source is one entry here. */
export const DATA_SOURCES = {
  mnist: {
    schema: mnistDataSchema,
    paths: () => [],
    files: () => mnistFiles(),
    load: async (spec, _dir, seed) => splitDataset(loadMnist(), spec.split ?? DEFAULT_SPLIT, seed, spec.limit),
  } satisfies DataSource<MnistSpec> as DataSource<MnistSpec>,
  files: {
    schema: filesDataSchema,
    paths: (spec) => [
      { at: ['features'], ref: { file: spec.features, what: 'data features path' } },
      ...(spec.labels === undefined ? [] : [{ at: ['labels'], ref: { file: spec.labels, what: 'data labels path' } }]),
    ],
    files(spec, dir) {
      return resolved(this, spec, dir);
    },
    async load(spec, dir, seed) {
      const [features, labels] = resolved(this, spec, dir);
      const all = loadUserData(
        { features, labels, format: spec.format, labelColumn: spec.labelColumn, numClasses: spec.numClasses, sampleShape: spec.sampleShape },
        dir,
      );
      return splitDataset(normalized(spec.layout === 'nchw' ? channelsLast(all, features) : all, spec, features), spec.split ?? DEFAULT_SPLIT, seed, spec.limit);
    },
  } satisfies DataSource<FilesSpec> as DataSource<FilesSpec>,
  idx: {
    schema: idxDataSchema,
    paths: idxPaths,
    check(spec) {
      const problems = pairFormProblems(spec, ['images', 'labels']);
      if (spec.classes && spec.numClasses !== undefined && spec.classes.length !== spec.numClasses) {
        problems.push({ path: ['classes'], message: `${spec.classes.length} class names for numClasses ${spec.numClasses}` });
      }
      return problems;
    },
    files(spec, dir) {
      return resolved(this, spec, dir);
    },
    async load(spec, dir, seed) {
      const file = (f: string, what: string) => dataPath(dir, { file: f, root: spec.root, what: `data ${what} path` });
      const opts = { scale: spec.scale, offset: spec.offset, mean: spec.mean, std: spec.std, numClasses: spec.numClasses, classes: spec.classes };
      if (spec.train && spec.test) {
        const [train, test] = await Promise.all([
          loadIdxPair({ images: file(spec.train.images, 'train images'), labels: file(spec.train.labels, 'train labels') }, opts),
          loadIdxPair({ images: file(spec.test.images, 'test images'), labels: file(spec.test.labels, 'test labels') }, opts),
        ]);
        return splitTrainTest(train, test, spec.validation ?? DEFAULT_VALIDATION, seed, spec.limit);
      }
      const all = await loadIdxPair({ images: file(spec.images!, 'images'), labels: file(spec.labels!, 'labels') }, opts);
      return splitDataset(all, spec.split ?? DEFAULT_SPLIT, seed, typeof spec.limit === 'number' ? spec.limit : undefined);
    },
  } satisfies DataSource<IdxSpec> as DataSource<IdxSpec>,
  images: {
    schema: imagesDataSchema,
    // 2: colour JPEGs rebuilt as libjpeg does (jpeg-color.ts).
    version: '2',
    paths: imageFolders,
    check(spec) {
      const problems = pairFormProblems(spec, ['dir']);
      const channels = spec.color === 'grayscale' ? 1 : 3;
      for (const k of ['mean', 'std'] as const) {
        const bad = normalizeProblem({ [k]: spec[k] }, channels);
        if (bad) problems.push({ path: [k], message: `${bad} (color: ${spec.color ?? 'rgb'})` });
      }
      return problems;
    },
    files: (spec, dir) => imageTrees(spec, dir).flatMap((t) => t.tree.files.map((f) => f.file)),
    fileNames: (spec, dir) => imageTrees(spec, dir).flatMap((t) => treeNames(t.dir, t.tree).map((f) => `${t.key}:${f}`)),
    async load(spec, dir, seed) {
      const opts = { size: spec.size, color: spec.color, scale: spec.scale, offset: spec.offset, mean: spec.mean, std: spec.std };
      const trees = imageTrees(spec, dir);
      const classes = spec.classes ?? trees[0].tree.classes;
      if (spec.classes) for (const t of trees) unlistedFolders(t.tree.classes, spec.classes, t.dir);
      // Only the images the splits take are decoded: the seeded order picks them first.
      const decode = (t: (typeof trees)[number], order: Uint32Array) => loadImages(Array.from(order, (i) => t.tree.files[i]), classes, opts, t.dir);
      const inOrder = (n: number) => Uint32Array.from({ length: n }, (_, i) => i);
      if (spec.train && spec.test) {
        const [train, test] = trees;
        const extra = test.tree.classes.filter((c) => !classes.includes(c));
        if (extra.length) {
          throw new InputError(`test class folder${extra.length === 1 ? '' : 's'} ${extra.map((c) => `'${c}'`).join(', ')} not among the train classes (${classes.join(', ')})`, { file: test.dir });
        }
        const orders = pairOrders(train.tree.files.length, test.tree.files.length, seed, spec.limit);
        const trainSet = await decode(train, orders.train);
        const testSet = await decode(test, orders.test);
        if (testSet.sampleShape.join() !== trainSet.sampleShape.join()) {
          const [h, w] = trainSet.sampleShape;
          throw new InputError(`test images are ${testSet.sampleShape[1]}x${testSet.sampleShape[0]} but the train images are ${w}x${h}`, { file: test.dir, hint: `set size: [height, width] on the dataset (e.g. size: [${h}, ${w}])` });
        }
        return splitPairOrdered(trainSet, inOrder(trainSet.n), testSet, inOrder(testSet.n), spec.validation ?? DEFAULT_VALIDATION);
      }
      const all = await decode(trees[0], seededOrder(trees[0].tree.files.length, seed, typeof spec.limit === 'number' ? spec.limit : undefined));
      return splitOrdered(all, inOrder(all.n), spec.split ?? DEFAULT_SPLIT);
    },
  } satisfies DataSource<ImagesSpec> as DataSource<ImagesSpec>,
};

type Sources = typeof DATA_SOURCES;
export type DataSourceName = keyof Sources;
/** A recipe's dataset spec: the union of every source's schema type. */
export type DataSpec = { [K in DataSourceName]: SpecOf<Sources[K]> }[DataSourceName];

function sourceOf(spec: DataSpec): DataSource<DataSpec> {
  return DATA_SOURCES[spec.source] as unknown as DataSource<DataSpec>;
}

/** The `data:` entry schema: `source` picks which source's schema applies. */
export function dataSchemaFor() {
  const names = Object.keys(DATA_SOURCES) as DataSourceName[];
  return {
    type: 'object',
    required: ['source'],
    properties: { source: { enum: names } },
    allOf: names.map((n) => ({ if: { properties: { source: { const: n } } }, then: DATA_SOURCES[n].schema })),
  };
}

/**
 * What `validate` can know about a dataset spec before anything runs: the checks beyond its schema,
 * and data paths that leave the recipe's directory (or the dataset's root). Paths are relative to
 * the dataset (`['data', name, ...path]` positions them).
 */
export function dataSpecProblems(spec: DataSpec): SpecProblem[] {
  const def = sourceOf(spec);
  const problems = def.check?.(spec) ?? [];
  let rootReported = false;
  for (const p of def.paths(spec)) {
    const why = dataPathProblem(p.ref);
    if (why?.at === 'file') problems.push({ path: p.at, message: why.message });
    else if (why && !rootReported) problems.push({ path: ['root'], message: why.message });
    rootReported ||= why?.at === 'root';
  }
  return problems;
}

/**
 * Data files and folders a spec names that are not there (or whose root is not), judged on the real
 * filesystem: `validate` and the start of `run` report them at their recipe position instead of the
 * first stage failing on a bare ENOENT. A path that leaves where it may be is reported by `run` (dataPath).
 */
export function missingDataFiles(spec: DataSpec, recipeDir: string): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const named = sourceOf(spec).paths(spec);
  const root = named[0]?.ref.root;
  if (root !== undefined && !dataPathProblem(named[0].ref)) {
    const full = resolve(recipeDir, root);
    if (!statSync(full, { throwIfNoEntry: false })?.isDirectory()) {
      return [{ path: ['root'], message: `data root '${root}' ${existsSync(full) ? 'is not a directory' : 'does not exist'} (${full})` }];
    }
  }
  for (const p of named) {
    if (dataPathProblem(p.ref)) continue;
    let full: string;
    try {
      full = dataPath(recipeDir, p.ref);
    } catch {
      continue; // a symbolic link out: dataPath says so when the dataset is read
    }
    const st = statSync(full, { throwIfNoEntry: false });
    if (!st) problems.push({ path: p.at, message: `${p.ref.what} '${p.ref.file}' not found (${full})` });
    else if (st.isDirectory() !== Boolean(p.folder)) problems.push({ path: p.at, message: `${p.ref.what} '${p.ref.file}' is ${p.folder ? 'a file, not a folder' : 'a directory, not a file'} (${full})` });
  }
  return problems;
}

/** Loads a recipe dataset and splits it with its seed (the recipe seed unless the dataset sets one). */
export async function loadSplits(spec: DataSpec, recipeDir: string, recipeSeed: number): Promise<Splits> {
  return sourceOf(spec).load(spec, recipeDir, spec.seed ?? recipeSeed);
}

/**
 * What a loaded dataset depends on, as a string: its spec, seed, the recipe directory and each of its
 * files' path, size and modification time; undefined when a file cannot be stat'ed (loading will say why).
 * Within one process equal identities load equal splits, so stage workers share one copy.
 */
export function datasetIdentity(spec: DataSpec, recipeDir: string, recipeSeed: number): string | undefined {
  try {
    const files = dataFiles(spec, recipeDir).map((f) => {
      const st = statSync(f);
      return [f, st.size, st.mtimeMs];
    });
    return JSON.stringify([spec, spec.seed ?? recipeSeed, recipeDir, files]);
  } catch {
    return undefined;
  }
}

/** Files whose content the dataset depends on: their digests go into cache keys. */
export function dataFiles(spec: DataSpec, recipeDir: string): string[] {
  return sourceOf(spec).files(spec, recipeDir);
}

/** File names that are part of the dataset beyond their contents (see DataSource.fileNames), or undefined. */
export function dataFileNames(spec: DataSpec, recipeDir: string): string[] | undefined {
  return sourceOf(spec).fileNames?.(spec, recipeDir);
}

/** The version of the source's loading (see DataSource.version), if it has one. */
export function dataSourceVersion(spec: DataSpec): string | undefined {
  return sourceOf(spec).version;
}

/** Refuses class folders that `classes:` does not list (their images would have no label index). */
function unlistedFolders(folders: string[], classes: readonly string[], dir: string): void {
  const extra = folders.filter((c) => !classes.includes(c));
  if (!extra.length) return;
  throw new InputError(`class folder${extra.length === 1 ? '' : 's'} ${extra.map((c) => `'${c}'`).join(', ')} not in the dataset's classes (${classes.join(', ')})`, {
    file: dir,
    hint: "classes: lists every class in the model's output order; add the folder's name there, or move the folder out",
  });
}

/** `files` samples with the spec's scale / offset / mean / std applied (channels: the last axis, after `layout`); kept as stored by default. */
function normalized(d: Dataset, spec: FilesSpec, file: string): Dataset {
  if (spec.scale === undefined && spec.offset === undefined && spec.mean === undefined && spec.std === undefined) return d;
  const channels = d.sampleShape[d.sampleShape.length - 1];
  const bad = normalizeProblem(spec, channels);
  if (bad) throw new InputError(`${bad} (samples [${d.sampleShape.join(', ')}]: channels are the last axis)`, { file });
  const x = new Float32Array(d.x.length);
  normalizeInto(d.x, x, 0, channelAffine(spec, channels, 1));
  return { ...d, x };
}

/** `layout: nchw` data (PyTorch's [C, H, W] samples) as the channels-last images every model here takes. */
function channelsLast(d: Dataset, file: string): Dataset {
  if (d.sampleShape.length !== 3) {
    throw new InputError(`layout: nchw needs image samples [C, H, W], but the samples have shape [${d.sampleShape.join(', ')}]`, { file, hint: 'store the features as [N, C, H, W] or set sampleShape: [C, H, W]' });
  }
  return { ...transposeImages(d, 'nhwc'), storedShape: d.sampleShape.slice() };
}
