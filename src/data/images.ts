import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative } from 'node:path';
import { InputError, describeError } from '../errors/input-error.js';
import { confinedPath } from '../util/paths.js';
import type { Dataset } from './dataset.js';
import { channelAffine, normalizeInto, normalizeKeys, normalizeProblem, type NormalizeOptions } from './normalize.js';
import { dataRootSchema } from './paths.js';
import { resizeBilinear } from './resize.js';
import { jpegLayout, libjpegColor } from './jpeg-color.js';
import { pairLimitSchema, splitKeys, validationKeys } from './split.js';

/**
 * Image folders: one subfolder per class (`cats/`, `dogs/`), classes indexed in sorted folder order
 * like Keras' `image_dataset_from_directory` and torchvision's `ImageFolder`. PNG and JPEG files
 * (recognised by content) are decoded by pure-JS decoders (pngjs, jpeg-js), converted to RGB or
 * grayscale, resized bilinearly to `size`, and normalised like every source (see normalize.ts).
 */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'];
/** Image files that are not decoded: an error says to convert them, rather than leaving them out unseen. */
const UNSUPPORTED_EXTENSIONS = ['.bmp', '.gif', '.webp', '.tif', '.tiff', '.heic', '.avif'];
/** Like jpeg-js' own default: larger images are refused before their pixels are allocated. */
const MAX_MEGAPIXELS = 100;

export const imagesDataSchema = {
  type: 'object',
  properties: {
    source: { const: 'images', description: 'PNG/JPEG images in one folder per class (classes in sorted folder order)' },
    root: dataRootSchema,
    dir: { type: 'string', minLength: 1, description: 'folder of class folders, split by `split` fractions' },
    train: { type: 'string', minLength: 1, description: 'folder of class folders: the training set (its `validation` share becomes the validation split)' },
    test: { type: 'string', minLength: 1, description: 'folder of class folders: the test split (its classes must be among train\'s)' },
    ...validationKeys,
    split: splitKeys.split,
    limit: pairLimitSchema,
    seed: splitKeys.seed,
    size: {
      type: 'array',
      items: { type: 'integer', minimum: 1, maximum: 4096 },
      minItems: 2,
      maxItems: 2,
      description: '[height, width] every image is resized to (bilinear); default: the images\' own size, which must then be the same for all',
    },
    color: { enum: ['rgb', 'grayscale'], default: 'rgb', description: 'rgb: 3 channels (alpha dropped); grayscale: 1 channel (BT.601 luma)' },
    classes: {
      type: 'array',
      items: { type: 'string', minLength: 1 },
      minItems: 2,
      uniqueItems: true,
      description: "the class folder names in the model's output order (as Keras' class_names; default: the folders, sorted); folders may be fewer, each must be listed",
    },
    ...normalizeKeys,
  },
  required: ['source'],
  additionalProperties: false,
} as const;

export interface ImageFile {
  /** Full path. */
  file: string;
  /** Class folder name. */
  label: string;
}

export interface ImageTree {
  /** Class folder names, sorted. */
  classes: string[];
  /** Every image, in class order then sorted path order. */
  files: ImageFile[];
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The class folders under `dir` and the images in each (searched recursively). Hidden entries and
 * files that are not images are skipped; image formats that are not decoded are an error. Every entry
 * is confined to `dir` (a symbolic link leading out of it is refused).
 */
export function listImageTree(dir: string): ImageTree {
  const entries = readDir(dir);
  const classes = entries.filter((e) => !e.startsWith('.') && isDir(dir, e)).sort(byName);
  if (classes.length < 2) {
    throw new InputError(`found ${classes.length} class folder${classes.length === 1 ? '' : 's'}${classes.length ? ` (${classes[0]})` : ''}; an image dataset needs one folder per class, at least 2`, {
      file: dir,
      hint: 'lay images out as <dir>/<class>/<image>.png, e.g. data/train/cat/1.png and data/train/dog/2.jpg',
    });
  }
  const files: ImageFile[] = [];
  for (const label of classes) {
    const found = walk(dir, label);
    if (!found.length) throw new InputError(`class folder '${label}' holds no PNG or JPEG images`, { file: join(dir, label) });
    files.push(...found.map((file) => ({ file, label })));
  }
  return { classes, files };
}

function readDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (e) {
    throw new InputError(`cannot read the image folder: ${describeError(e)}`, { file: dir });
  }
}

/** Whether `name` in `dir` is a directory, following a symbolic link only when it stays inside `dir`. */
function isDir(dir: string, name: string): boolean {
  const full = confinedPath(dir, name, 'image folder entry', `the image folder '${dir}'`);
  return statSync(full).isDirectory();
}

function walk(root: string, rel: string): string[] {
  const out: string[] = [];
  const dir = join(root, rel);
  for (const name of readDir(dir).sort(byName)) {
    if (name.startsWith('.')) continue;
    const relPath = join(rel, name);
    if (isDir(root, relPath)) {
      out.push(...walk(root, relPath));
      continue;
    }
    const ext = extname(name).toLowerCase();
    if (UNSUPPORTED_EXTENSIONS.includes(ext)) {
      throw new InputError(`${ext.slice(1).toUpperCase()} images are not supported (PNG and JPEG are)`, { file: join(root, relPath), hint: 'convert the images to PNG' });
    }
    if (IMAGE_EXTENSIONS.includes(ext)) out.push(join(root, relPath));
  }
  return out;
}

/** A decoded image: RGBA bytes. */
interface Rgba {
  width: number;
  height: number;
  data: Uint8Array;
}

function tooLarge(file: string, width: number, height: number): InputError {
  return new InputError(`image is ${width}x${height} (${((width * height) / 1e6).toFixed(1)} megapixels), more than the ${MAX_MEGAPIXELS} compress decodes`, { file });
}

const DECODERS: Array<{ name: string; magic: number[]; decode(bytes: Buffer, file: string): Promise<Rgba> }> = [
  {
    name: 'PNG',
    magic: [0x89, 0x50, 0x4e, 0x47],
    async decode(bytes, file) {
      if (bytes.length >= 24) {
        const width = bytes.readUInt32BE(16);
        const height = bytes.readUInt32BE(20);
        if (width * height > MAX_MEGAPIXELS * 1e6) throw tooLarge(file, width, height);
      }
      const { PNG } = await import('pngjs');
      const png = PNG.sync.read(bytes);
      return { width: png.width, height: png.height, data: png.data };
    },
  },
  {
    name: 'JPEG',
    magic: [0xff, 0xd8],
    async decode(bytes) {
      const jpeg = await import('jpeg-js');
      // Not tolerant: a truncated or damaged file is an error, not a half-grey image.
      const opts = { useTArray: true, formatAsRGBA: true, tolerantDecoding: false, maxResolutionInMP: MAX_MEGAPIXELS } as const;
      // Colour JPEGs: jpeg-js gives the Y/Cb/Cr planes, rebuilt into RGB as libjpeg (PIL, TensorFlow) does.
      const layout = jpegLayout(bytes);
      if (layout?.sampling.length === 3) {
        const planes = jpeg.decode(bytes, { ...opts, colorTransform: false });
        const data = libjpegColor(planes.data, planes.width, planes.height, layout);
        if (data) return { width: planes.width, height: planes.height, data };
      }
      return jpeg.decode(bytes, opts);
    },
  },
];

/** Decodes a PNG or JPEG file (recognised by its first bytes) to RGBA; InputError naming the file otherwise. */
export async function decodeImage(file: string): Promise<Rgba> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new InputError(`cannot read: ${describeError(e)}`, { file });
  }
  const decoder = DECODERS.find((d) => d.magic.every((b, i) => bytes[i] === b));
  if (!decoder) throw new InputError('not a PNG or JPEG image (unrecognised content)', { file });
  let img: Rgba;
  try {
    img = await decoder.decode(bytes, file);
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`cannot decode this ${decoder.name} image: ${describeError(e)}`, { file, hint: 'the file is damaged or incomplete; re-export it' });
  }
  if (!img.width || !img.height) throw new InputError(`${decoder.name} image has no pixels (${img.width}x${img.height})`, { file });
  return img;
}

export type ColorMode = 'rgb' | 'grayscale';

/** RGBA bytes to `channels`-per-pixel values: RGB drops alpha; grayscale is BT.601 luma (as PIL's convert('L'), unrounded). */
export function toColor(img: Rgba, color: ColorMode): Float32Array {
  const px = img.width * img.height;
  const d = img.data;
  if (color === 'rgb') {
    const out = new Float32Array(px * 3);
    for (let i = 0; i < px; i++) {
      out[3 * i] = d[4 * i];
      out[3 * i + 1] = d[4 * i + 1];
      out[3 * i + 2] = d[4 * i + 2];
    }
    return out;
  }
  const out = new Float32Array(px);
  for (let i = 0; i < px; i++) {
    const r = d[4 * i];
    const g = d[4 * i + 1];
    const b = d[4 * i + 2];
    out[i] = r === g && g === b ? r : 0.299 * r + 0.587 * g + 0.114 * b;
  }
  return out;
}

export interface ImageOptions extends NormalizeOptions {
  size?: number[];
  color?: ColorMode;
}

/**
 * Decodes `files` into one dataset labelled by `classes` (each file's folder, by name), every image
 * converted to `color`, resized to `size` (or checked to share the first image's size) and normalised.
 */
export async function loadImages(files: ImageFile[], classes: string[], opts: ImageOptions, where: string): Promise<Dataset> {
  const color = opts.color ?? 'rgb';
  const c = color === 'rgb' ? 3 : 1;
  const bad = normalizeProblem(opts, c);
  if (bad) throw new InputError(`${bad} (color: ${color})`, { file: where });
  const affine = channelAffine(opts, c, 1 / 255);
  let shape = opts.size ? [opts.size[0], opts.size[1]] : undefined;
  let first = '';
  let x = new Float32Array(0);
  const y = new Int32Array(files.length);
  for (let i = 0; i < files.length; i++) {
    const { file, label } = files[i];
    const img = await decodeImage(file);
    if (!shape) {
      shape = [img.height, img.width];
      first = file;
    }
    const [h, w] = shape;
    if (x.length === 0) x = new Float32Array(files.length * h * w * c);
    let values = toColor(img, color);
    if (img.height !== h || img.width !== w) {
      if (!opts.size) {
        throw new InputError(`image is ${img.width}x${img.height} but '${first}' is ${w}x${h}; images of different sizes need a common size`, { file, hint: `set size: [height, width] on the dataset (e.g. size: [${h}, ${w}])` });
      }
      values = resizeBilinear(values, img.height, img.width, c, h, w);
    }
    normalizeInto(values, x, i * h * w * c, affine);
    y[i] = classes.indexOf(label);
  }
  return { x, y, n: files.length, sampleShape: [...shape!, c], numClasses: classes.length, source: where, classNames: classes.slice(), image: true, colorOption: true };
}

/** Relative names of a tree's images (`class/file.png`): the class names are part of what the data means. */
export function treeNames(dir: string, tree: ImageTree): string[] {
  return tree.files.map((f) => relative(dir, f.file).split('\\').join('/'));
}
