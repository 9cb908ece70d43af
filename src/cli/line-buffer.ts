/**
 * Standard output in blocks instead of one write per line, for a run that
 * prints a line per certificate (`run` without `-q`, the `ocspbot` drop-in):
 * 10,000 lines were 10,000 `write` calls through Node's stream machinery,
 * ~0.1 s of CPU in a warm check of 10,000 (docs/PERFORMANCE.md, "The
 * doors"). ocspbot itself (Python) block-buffers its output when it is not a
 * terminal.
 *
 * What is written, and in which order, does not change:
 * - every write to standard error first writes out what standard output
 *   holds, so two streams that end in one file (`2>&1`, a cron mail) get
 *   their lines in the order they were produced;
 * - what is held is written at the next turn of the event loop at the
 *   latest (a run waiting for a responder shows its lines so far), when it
 *   reaches 64 KiB, at {@link BufferedIo.flush} (the end of the run), and
 *   when the process exits;
 * - a terminal is written to line by line, as before.
 */
import type { CliIo } from './io.js';

/** Held output is written once it reaches this many characters. */
const BLOCK = 64 * 1024;

/**
 * A {@link CliIo} whose standard output is written in blocks;
 * {@link BufferedIo.flush} writes what is held, and every later write goes
 * straight through.
 */
export interface BufferedIo extends CliIo {
  flush(): void;
}

/** `io` with its standard output in blocks (see the module comment); `io` itself when stdout is a terminal. */
export function bufferStdout(io: CliIo): BufferedIo {
  if (io.isTTY) return { ...io, flush: () => undefined };
  let held = '';
  let scheduled = false;
  let closed = false;
  const flush = (): void => {
    if (held.length === 0) return;
    const text = held;
    held = '';
    io.stdout.write(text);
  };
  const onExit = (): void => flush();
  process.once('exit', onExit);
  return {
    ...io,
    stdout: {
      write(s: string): unknown {
        if (closed) return io.stdout.write(s);
        held += s;
        if (held.length >= BLOCK) flush();
        else if (!scheduled) {
          scheduled = true;
          setImmediate(() => {
            scheduled = false;
            flush();
          }).unref();
        }
        return true;
      },
    },
    stderr: {
      write(s: string): unknown {
        flush();
        return io.stderr.write(s);
      },
    },
    flush(): void {
      flush();
      // from now on, writes go straight through
      closed = true;
      process.removeListener('exit', onExit);
    },
  };
}
