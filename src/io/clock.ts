/**
 * Time as a value: everything that needs "now" takes a {@link Clock}, so
 * tests can use fixed dates and the daemon can be tested with a fake clock.
 */

/** A source of the current time and of timers. */
export interface Clock {
  now(): Date;
  /**
   * Like setTimeout; returns a cancel function. With `unref`, a pending timer
   * does not keep the process alive (a library's background work: the
   * embedded stapler); a clock without real timers may ignore it.
   */
  setTimer(ms: number, fn: () => void, options?: ClockTimerOptions): () => void;
}

/** Options of {@link Clock.setTimer}. */
export interface ClockTimerOptions {
  unref?: boolean;
}

/** The real clock. Timers are unref'd only when asked, so a pending timer keeps a daemon alive. */
export const systemClock: Clock = {
  now: () => new Date(),
  setTimer(ms, fn, options) {
    // setTimeout's maximum is 2^31-1 ms (~24.8 days); longer waits are chained
    const max = 2 ** 31 - 1;
    let handle: NodeJS.Timeout;
    const arm = (left: number): void => {
      handle = setTimeout(() => (left > max ? arm(left - max) : fn()), Math.min(Math.max(0, left), max));
      if (options?.unref) handle.unref();
    };
    arm(ms);
    return () => clearTimeout(handle);
  },
};

/** A clock fixed at a given time (tests, `inspect --at`). */
export function fixedClock(at: Date | string): Clock {
  const t = new Date(at);
  return { now: () => new Date(t), setTimer: systemClock.setTimer };
}
