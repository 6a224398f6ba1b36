/**
 * Errors a user can act on. Exit codes follow the CLI contract: 2 for bad input or unsupported
 * models, 1 for a numerical mismatch, 3 for a failure of edgec itself or of a toolchain.
 */
export class EdgecError extends Error {
  constructor(message: string, readonly exitCode = 2, readonly details: string[] = []) {
    super(message);
    this.name = "EdgecError";
  }
}

export interface Where {
  file?: string;
  node?: string;
  op?: string;
  opset?: number;
}

/** "model.onnx: node 'conv1' (Conv, opset 13): message" */
export function located(w: Where, message: string): string {
  const parts: string[] = [];
  if (w.file) parts.push(w.file);
  if (w.node !== undefined || w.op) {
    const what = [w.op, w.opset !== undefined ? `opset ${w.opset}` : undefined].filter(Boolean).join(", ");
    parts.push(`node '${w.node ?? "?"}'${what ? ` (${what})` : ""}`);
  }
  return parts.length ? `${parts.join(": ")}: ${message}` : message;
}

export function fail(w: Where, message: string, exitCode = 2): never {
  throw new EdgecError(located(w, message), exitCode);
}
