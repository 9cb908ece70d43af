/** The streams and environment a CLI invocation runs with (in-memory in tests). */
export interface CliIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** True when stdout is a terminal (progress line and colour). */
  isTTY: boolean;
}
