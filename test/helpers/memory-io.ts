/** In-memory streams for driving `cli()` in tests (the undici/yaml habit). */
import type { CliIo } from '../../src/cli/io.js';

export interface MemoryIo extends CliIo {
  out(): string;
  err(): string;
}

export function memoryIo(cwd: string, env: NodeJS.ProcessEnv = process.env): MemoryIo {
  let out = '';
  let err = '';
  return {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    env,
    cwd,
    isTTY: false,
    out: () => out,
    err: () => err,
  };
}
