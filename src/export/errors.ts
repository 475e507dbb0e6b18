/**
 * An export that cannot be written faithfully. The message always names the layer (when one is
 * at fault), the target and what to change; exporters never fall back to a different model.
 */
export class ExportError extends Error {
  readonly target: string;
  readonly layer: string | undefined;
  constructor(target: string, layer: string | undefined, message: string) {
    super(layer === undefined ? `export to ${target}: ${message}` : `export to ${target}: layer '${layer}': ${message}`);
    this.name = 'ExportError';
    this.target = target;
    this.layer = layer;
  }
}
