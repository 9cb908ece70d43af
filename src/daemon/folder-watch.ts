/**
 * Watching the entries of a folder with one `fs.watch` of the folder
 * (inotify on Linux), for the daemon's non-recursive folders (watch.ts).
 *
 * A folder watch reports every write, creation, rename and deletion of the
 * folder's entries, with the entry's name and a raw kind: `change` (its
 * contents or attributes changed) or `rename` (the name appeared or went:
 * a create, a delete, a rename from or to it, a symbolic link swapped). The
 * kernel does not say which of the two a rename was, so nothing is decided
 * at event time: the watcher only notes the path, and once the burst is
 * over {@link FlatWatcher.resolve} looks at each noted path (`stat`) and
 * says `add`, `change` or `unlink`. The cost is one watch per folder however
 * many files it holds (chokidar kept an `fs.watch` and an `fs.Stats` per
 * file: ~3.4 KB of RSS each, 340 MB at 100,000 certificates).
 *
 * Besides the folder itself:
 *
 * - **Its parent** is watched (one watch per distinct parent), for the
 *   folder's own name: a folder removed and created again, renamed away, or
 *   a folder that is a symbolic link re-pointed elsewhere (the watch of the
 *   folder stays with the old inode then). After such an event the folder is
 *   compared with the one watched (device and inode); when it differs, the
 *   old watch is closed, the new folder watched and each of its entries
 *   reported as `add`; when it is gone, the folder itself is reported as
 *   `unlink` and it is watched again as soon as it reappears. A folder that
 *   is missing at start is picked up the same way.
 * - **Symbolic links to files outside the folder** (certbot's `live/<name>/cert.pem
 *   -> ../../archive/<name>/certN.pem`): the folder's watch sees a link being
 *   swapped (a renewal) but not the target file being rewritten in place
 *   elsewhere. For these the target's folder is watched too (one watch per
 *   distinct target folder, shared by all links into it) and a change of a
 *   target is reported as a change of the link. Links are followed again
 *   whenever their name is reported, so a swapped link is followed to its
 *   new target.
 *
 * When the system's limits stop a watch (`ENOSPC`: fs.inotify.max_user_watches;
 * `EMFILE`/`ENFILE`: open files), one warning is given and that folder is
 * left to the daemon's periodic sweep; nothing throws. Permission errors and
 * missing folders are silent (the sweep and discovery report what matters).
 */
import { watch, type FSWatcher } from 'node:fs';
import { lstat, opendir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';

/** A change decided after a burst (the shape of watch.ts's `FileEvent`). */
export interface EntryEvent {
  path: string;
  kind: 'add' | 'change' | 'unlink';
}

/** What a watch reported for a path before the burst is resolved: the name (re)appeared or went, or was written. */
export type RawKind = 'rename' | 'change';

/** The callbacks of a {@link FlatWatcher}. */
export interface FlatWatcherHooks {
  /** A path was reported; the caller collects them until the burst is over, then calls {@link FlatWatcher.resolve}. */
  note(path: string, raw: RawKind): void;
  /** A watched folder needs a look at the end of the burst (nothing to note yet). */
  wake(): void;
  /** Files never reported (the daemon's own). */
  ignored(path: string): boolean;
  /** A problem worth one log line; the watching goes on. */
  warn(e: Error): void;
}

interface Root {
  /** The folder as configured. */
  dir: string;
  watcher: FSWatcher | undefined;
  /** `dev:ino` of the folder watched (after following a symbolic link), or undefined when not watched. */
  id: string | undefined;
  /** The folder's real path, to tell a link's target outside it from one inside. */
  real: string | undefined;
  /** Links of this folder that point at files outside it: link path → target's real path. */
  links: Map<string, string>;
}

interface Shared {
  watcher: FSWatcher;
  /** Parent watches: the roots below by name. Target watches: the link paths by target name. */
  names: Map<string, Set<string>>;
}

const LIMIT_CODES = new Set(['ENOSPC', 'EMFILE', 'ENFILE']);
const SILENT_CODES = new Set(['ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'ELOOP']);
const GONE_CODES = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

function codeOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function idOf(s: { dev: number; ino: number }): string {
  return `${s.dev}:${s.ino}`;
}

/**
 * One watch per non-recursive folder (plus its parent, plus the folders of
 * link targets outside it). Contract: {@link start} resolves once every
 * folder that exists is watched; the hooks are called only between
 * {@link start} and {@link close}; nothing here throws after {@link start}
 * (failures go to `warn` or are silent, see the module comment).
 */
export class FlatWatcher {
  private readonly roots = new Map<string, Root>();
  private readonly parents = new Map<string, Shared>();
  private readonly targets = new Map<string, Shared>();
  /** Roots to compare with what is watched at the next {@link resolve}. */
  private readonly suspects = new Set<Root>();
  private warnedLimit = false;
  private closed = false;

  constructor(
    dirs: readonly string[],
    private readonly hooks: FlatWatcherHooks,
  ) {
    for (const dir of dirs) {
      if (!this.roots.has(dir))
        this.roots.set(dir, { dir, watcher: undefined, id: undefined, real: undefined, links: new Map() });
    }
  }

  /** Watches every folder (and the parents, and link targets' folders). */
  async start(): Promise<void> {
    for (const root of this.roots.values()) {
      this.watchParent(root);
      await this.open(root, undefined);
    }
  }

  /** True when some watched folder awaits a look at the next {@link resolve}. */
  get hasSuspects(): boolean {
    return this.suspects.size > 0;
  }

  /**
   * Decides the events of a burst: `raw` holds the paths noted (their last
   * raw kind, `rename` winning over `change`). Folders that may have been
   * replaced are looked at first.
   */
  async resolve(raw: ReadonlyMap<string, RawKind>): Promise<EntryEvent[]> {
    const events = new Map<string, EntryEvent['kind']>();
    const suspects = [...this.suspects];
    this.suspects.clear();
    for (const root of suspects) await this.check(root, events);
    for (const [p, kind] of raw) {
      if (this.closed) return [];
      if (events.has(p)) continue;
      const decided = await this.decide(p, kind);
      if (decided) events.set(p, decided);
    }
    return [...events].map(([p, kind]) => ({ path: p, kind }));
  }

  /** Closes every watch; safe to call twice. */
  close(): void {
    this.closed = true;
    for (const root of this.roots.values()) {
      root.watcher?.close();
      root.watcher = undefined;
      root.links.clear();
    }
    for (const s of [...this.parents.values(), ...this.targets.values()]) s.watcher.close();
    this.parents.clear();
    this.targets.clear();
    this.suspects.clear();
  }

  // -------------------------------------------------------------------------

  /** `fs.watch` of `dir`, or undefined (reported per {@link failed}). */
  private watchDir(dir: string, listener: (kind: string, name: string | null) => void): FSWatcher | undefined {
    let w: FSWatcher;
    try {
      w = watch(dir, { persistent: true, encoding: 'utf8' }, (kind, name) => {
        if (!this.closed) listener(kind, name);
      });
    } catch (e) {
      this.failed(dir, e);
      return undefined;
    }
    return w;
  }

  private failed(dir: string, e: unknown): void {
    if (this.closed) return;
    const code = codeOf(e);
    if (code !== undefined && SILENT_CODES.has(code)) return;
    if (code !== undefined && LIMIT_CODES.has(code)) {
      if (this.warnedLimit) return;
      this.warnedLimit = true;
      this.hooks.warn(
        new Error(
          `cannot watch ${dir}: the system's limit of ${code === 'ENOSPC' ? 'inotify watches (fs.inotify.max_user_watches)' : 'open files'} is reached (${code}); ` +
            'changes in the folders not watched are picked up by the periodic sweep',
        ),
      );
      return;
    }
    this.hooks.warn(new Error(`cannot watch ${dir}: ${e instanceof Error ? e.message : String(e)}`));
  }

  private watchParent(root: Root): void {
    const parent = path.dirname(root.dir);
    if (parent === root.dir) return;
    const name = path.basename(root.dir);
    let shared = this.parents.get(parent);
    if (!shared) {
      const w = this.watchDir(parent, (_kind, entry) => this.onParentEvent(parent, entry));
      if (!w) return;
      w.on('error', (e) => {
        this.failed(parent, e);
        w.close();
        this.parents.delete(parent);
      });
      shared = { watcher: w, names: new Map() };
      this.parents.set(parent, shared);
    }
    const set = shared.names.get(name) ?? new Set<string>();
    set.add(root.dir);
    shared.names.set(name, set);
  }

  private onParentEvent(parent: string, entry: string | null): void {
    const names = this.parents.get(parent)?.names;
    if (!names) return;
    const dirs = entry === null ? [...names.values()].flatMap((s) => [...s]) : [...(names.get(entry) ?? [])];
    for (const dir of dirs) this.suspect(this.roots.get(dir));
  }

  private suspect(root: Root | undefined): void {
    if (!root || this.closed) return;
    this.suspects.add(root);
    this.hooks.wake();
  }

  /**
   * Watches `root` and follows its links. With `events`, every entry found is
   * reported as `add` (a folder that appeared or was replaced).
   */
  private async open(root: Root, events: Map<string, EntryEvent['kind']> | undefined): Promise<void> {
    const w = this.watchDir(root.dir, (kind, entry) => this.onRootEvent(root, kind, entry));
    if (!w) return;
    w.on('error', (e) => {
      // left to the parent's next event about the folder, and to the sweep
      this.failed(root.dir, e);
      if (root.watcher === w) this.drop(root);
    });
    root.watcher = w;
    try {
      root.id = idOf(await stat(root.dir));
      root.real = await realpath(root.dir);
      const entries = await opendir(root.dir);
      for await (const entry of entries) {
        if (this.closed || root.watcher !== w) return;
        const p = path.join(root.dir, entry.name);
        if (this.hooks.ignored(p) || entry.isDirectory()) continue;
        if (entry.isSymbolicLink()) await this.follow(root, p);
        events?.set(p, 'add');
      }
    } catch (e) {
      // gone (or unreadable) between the watch and the listing: looked at again after the parent's next
      // event about it (never retried on a timer: an idle daemon does no work)
      if (root.watcher === w) this.drop(root);
      this.failed(root.dir, e);
    }
  }

  private onRootEvent(root: Root, kind: string, entry: string | null): void {
    if (entry === null) {
      this.suspect(root);
      return;
    }
    // events of the folder itself (deleted, moved) carry its own name
    if (entry === path.basename(root.dir)) this.suspect(root);
    const p = path.join(root.dir, entry);
    if (!this.hooks.ignored(p)) this.hooks.note(p, kind === 'change' ? 'change' : 'rename');
  }

  /** Stops watching `root` (and the targets of its links). */
  private drop(root: Root): void {
    root.watcher?.close();
    root.watcher = undefined;
    root.id = undefined;
    root.real = undefined;
    for (const [link, target] of root.links) this.unmap(target, link);
    root.links.clear();
  }

  /** After an event that may concern `root` itself: is the folder watched still the one at its path? */
  private async check(root: Root, events: Map<string, EntryEvent['kind']>): Promise<void> {
    let id: string | undefined;
    try {
      const s = await stat(root.dir);
      id = s.isDirectory() ? idOf(s) : undefined;
    } catch {
      id = undefined;
    }
    if (this.closed || (root.watcher && id !== undefined && id === root.id)) return;
    if (root.watcher || root.id !== undefined) {
      this.drop(root);
      if (id === undefined) events.set(root.dir, 'unlink');
    }
    // the parent watch may be missing (the parent did not exist before): try again
    if (!this.parents.get(path.dirname(root.dir))?.names.get(path.basename(root.dir))?.has(root.dir)) {
      this.watchParent(root);
    }
    if (id !== undefined) await this.open(root, events);
  }

  /** The kind of a noted path, from what is there now; undefined for a folder (not reported, as before). */
  private async decide(p: string, raw: RawKind): Promise<EntryEvent['kind'] | undefined> {
    const root = this.roots.get(path.dirname(p));
    try {
      const s = await stat(p);
      if (root?.watcher && (root.links.has(p) || (await lstat(p)).isSymbolicLink())) await this.follow(root, p);
      if (s.isDirectory()) return undefined;
      return raw === 'rename' ? 'add' : 'change';
    } catch (e) {
      const code = codeOf(e);
      if (code !== undefined && GONE_CODES.has(code)) {
        const target = root?.links.get(p);
        if (root && target !== undefined) {
          root.links.delete(p);
          this.unmap(target, p);
        }
        return 'unlink';
      }
      return raw === 'rename' ? 'add' : 'change';
    }
  }

  /**
   * (Re)follows the link `link` of `root`: when it points at a file outside
   * the folder, that file's folder is watched for it.
   */
  private async follow(root: Root, link: string): Promise<void> {
    const old = root.links.get(link);
    let target: string | undefined;
    try {
      target = await realpath(link);
      if (path.dirname(target) === root.real || target === link || !(await stat(target)).isFile()) target = undefined;
    } catch {
      target = undefined;
    }
    if (this.closed || target === old) return;
    if (old !== undefined) {
      root.links.delete(link);
      this.unmap(old, link);
    }
    if (target !== undefined && this.map(target, link)) root.links.set(link, target);
  }

  private map(target: string, link: string): boolean {
    const dir = path.dirname(target);
    let shared = this.targets.get(dir);
    if (!shared) {
      const w = this.watchDir(dir, (kind, entry) => this.onTargetEvent(dir, kind, entry));
      if (!w) return false;
      w.on('error', (e) => {
        this.failed(dir, e);
        w.close();
        if (this.targets.get(dir)?.watcher === w) this.targets.delete(dir);
      });
      shared = { watcher: w, names: new Map() };
      this.targets.set(dir, shared);
    }
    const name = path.basename(target);
    const set = shared.names.get(name) ?? new Set<string>();
    set.add(link);
    shared.names.set(name, set);
    return true;
  }

  private unmap(target: string, link: string): void {
    const dir = path.dirname(target);
    const shared = this.targets.get(dir);
    if (!shared) return;
    const name = path.basename(target);
    const set = shared.names.get(name);
    set?.delete(link);
    if (set?.size === 0) shared.names.delete(name);
    if (shared.names.size === 0) {
      shared.watcher.close();
      this.targets.delete(dir);
    }
  }

  private onTargetEvent(dir: string, kind: string, entry: string | null): void {
    const names = this.targets.get(dir)?.names;
    if (!names) return;
    // the target folder itself went (its own name) or an unknown entry: every link into it is looked at
    const all = entry === null || entry === path.basename(dir);
    const links = all ? [...names.values()].flatMap((s) => [...s]) : [...(names.get(entry) ?? [])];
    for (const link of links) this.hooks.note(link, kind === 'change' && !all ? 'change' : 'rename');
  }
}
