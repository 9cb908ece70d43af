/**
 * Watching the daemon's folders (watch.ts) with one `fs.watch` per folder
 * (inotify on Linux), whatever number of files it holds.
 *
 * A folder's watch reports every write, creation, rename and deletion of
 * its entries, with the entry's name and a raw kind: `change` (its contents
 * or attributes changed) or `rename` (the name appeared or went: a create, a
 * delete, a rename from or to it, a symbolic link swapped). The kernel does
 * not say which of the two a rename was, so nothing is decided at event
 * time: the watcher only notes the path, and once the burst is over
 * {@link DirWatcher.resolve} looks at each noted path (`stat`, following
 * links) and says `add`, `change` or `unlink`. chokidar, used before, kept an
 * `fs.watch` and an `fs.Stats` per file: ~3.4 KB of RSS each, 340 MB at
 * 100,000 certificates.
 *
 * Besides the folder itself:
 *
 * - **Subfolders**, for a recursive folder (a `scan_keys` scan): each is
 *   watched, links to folders followed, each real folder once (as
 *   config/scan.ts visits them, so a link loop cannot multiply watches). A
 *   subfolder that appears is watched and each file in it reported as
 *   `add`; one that goes is reported as `unlink` (its files as well, when
 *   they were deleted one by one, as `rm -r` does).
 * - **The parent of a configured folder** is watched (one watch per
 *   distinct parent), for the folder's own name: a folder removed and
 *   created again, renamed away, or a folder that is a symbolic link
 *   re-pointed elsewhere (the watch stays with the old inode then). After
 *   such an event the folder is compared with the one watched (device and
 *   inode); when it differs, the old watches are closed, the new folder
 *   watched and each of its files reported as `add`; when it is gone, the
 *   folder itself is reported as `unlink` and it is watched again as soon as
 *   it reappears. A folder missing at start is picked up the same way.
 * - **Symbolic links to files outside their folder** (certbot's
 *   `live/<name>/cert.pem -> ../../archive/<name>/certN.pem`): the folder's
 *   watch sees a link being swapped (a renewal) but not the target being
 *   rewritten in place elsewhere. For these the target's folder is watched
 *   too (one watch per distinct target folder, shared by all links into it)
 *   and a change of a target is reported as a change of the link. A link is
 *   followed again whenever its name is reported, so a swapped link is
 *   followed to its new target.
 *
 * When the system's limits stop a watch (`ENOSPC`: fs.inotify.max_user_watches;
 * `EMFILE`/`ENFILE`: open files), one warning is given and that folder is
 * left to the daemon's periodic sweep; nothing throws. Permission errors and
 * missing folders are silent (discovery and the sweep report what matters).
 * Nothing is retried on a timer: an idle daemon does no work.
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

/** The callbacks of a {@link DirWatcher}. */
export interface DirWatcherHooks {
  /** A path was reported; the caller collects them until the burst is over, then calls {@link DirWatcher.resolve}. */
  note(path: string, raw: RawKind): void;
  /** A watched folder needs a look at the end of the burst (nothing to note yet). */
  wake(): void;
  /** Files never reported (the daemon's own). */
  ignored(path: string): boolean;
  /** A problem worth one log line; the watching goes on. */
  warn(e: Error): void;
}

/** A watched folder: a configured one (a top) or, below a recursive top, one of its subfolders. */
interface Node {
  /** The folder's path as reported (under the configured path). */
  dir: string;
  /** Subfolders are watched too. */
  recursive: boolean;
  /** The configured folder this one belongs to (itself for a top). */
  top: Node;
  watcher: FSWatcher | undefined;
  /** `dev:ino` of the folder watched (after following a symbolic link), or undefined when not watched. */
  id: string | undefined;
  /** The folder's real path, to tell a link's target outside it from one inside. */
  real: string | undefined;
  /** Links of this folder that point at files outside it: link path → target's real path. */
  links: Map<string, string>;
  /** Of a top: the real paths of the folders watched in its tree (each real folder once, as a scan visits them). */
  visited: Set<string>;
}

interface Shared {
  watcher: FSWatcher;
  /** Parent watches: the tops below by name. Target watches: the link paths by target name. */
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

/** True when `child` lies below `parent` (not equal). */
function below(child: string, parent: string): boolean {
  return child.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep);
}

type Decided = Map<string, EntryEvent['kind']>;

/**
 * One watch per folder (plus the parent of each configured folder, plus the
 * folders of link targets outside a folder). Contract: {@link start}
 * resolves once every folder that exists is watched; the hooks are called
 * only between {@link start} and {@link close}; nothing here throws after
 * {@link start} (failures go to `warn` or are silent, see the module
 * comment).
 */
export class DirWatcher {
  /** Every watched folder by its reported path: the tops and the subfolders of recursive tops. */
  private readonly nodes = new Map<string, Node>();
  /** Every watched subfolder (the tops are in {@link tops}). */
  private readonly subs = new Set<Node>();
  private readonly tops: Node[] = [];
  private readonly topsByDir = new Map<string, Node[]>();
  private readonly parents = new Map<string, Shared>();
  private readonly targets = new Map<string, Shared>();
  /** Tops to compare with what is watched at the next {@link resolve}. */
  private readonly suspects = new Set<Node>();
  private warnedLimit = false;
  private closed = false;

  constructor(
    dirs: ReadonlyArray<{ path: string; recursive: boolean }>,
    private readonly hooks: DirWatcherHooks,
  ) {
    const seen = new Set<string>();
    for (const d of dirs) {
      const key = `${d.recursive ? 'r' : 'f'}${d.path}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const top = this.node(d.path, d.recursive, undefined);
      this.tops.push(top);
      this.topsByDir.set(d.path, [...(this.topsByDir.get(d.path) ?? []), top]);
    }
  }

  /** Watches every folder (and the parents, and link targets' folders). */
  async start(): Promise<void> {
    for (const top of this.tops) {
      this.watchParent(top);
      await this.open(top, undefined);
    }
  }

  /** True when some configured folder awaits a look at the next {@link resolve}. */
  get hasSuspects(): boolean {
    return this.suspects.size > 0;
  }

  /**
   * Decides the events of a burst: `raw` holds the paths noted (their last
   * raw kind, `rename` winning over `change`). Configured folders that may
   * have been replaced are looked at first.
   */
  async resolve(raw: ReadonlyMap<string, RawKind>): Promise<EntryEvent[]> {
    const events: Decided = new Map();
    const suspects = [...this.suspects];
    this.suspects.clear();
    for (const top of suspects) await this.check(top, events);
    for (const [p, kind] of raw) {
      if (this.closed) return [];
      if (events.has(p)) continue;
      const decided = await this.decide(p, kind, events);
      if (decided) events.set(p, decided);
    }
    return [...events].map(([p, kind]) => ({ path: p, kind }));
  }

  /** Closes every watch; safe to call twice. */
  close(): void {
    this.closed = true;
    for (const n of [...this.tops, ...this.subs]) n.watcher?.close();
    this.subs.clear();
    for (const s of [...this.parents.values(), ...this.targets.values()]) s.watcher.close();
    this.nodes.clear();
    this.parents.clear();
    this.targets.clear();
    this.suspects.clear();
  }

  // -------------------------------------------------------------------------

  private node(dir: string, recursive: boolean, top: Node | undefined): Node {
    const n = {
      dir,
      recursive,
      watcher: undefined,
      id: undefined,
      real: undefined,
      links: new Map<string, string>(),
      visited: new Set<string>(),
    } as Omit<Node, 'top'> as Node;
    n.top = top ?? n;
    return n;
  }

  /** `fs.watch` of `dir`, or undefined (reported per {@link failed}). */
  private watchDir(dir: string, listener: (kind: string, name: string | null) => void): FSWatcher | undefined {
    try {
      return watch(dir, { persistent: true, encoding: 'utf8' }, (kind, name) => {
        if (!this.closed) listener(kind, name);
      });
    } catch (e) {
      this.failed(dir, e);
      return undefined;
    }
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

  private watchParent(top: Node): void {
    const parent = path.dirname(top.dir);
    if (parent === top.dir) return;
    const name = path.basename(top.dir);
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
    set.add(top.dir);
    shared.names.set(name, set);
  }

  private onParentEvent(parent: string, entry: string | null): void {
    const names = this.parents.get(parent)?.names;
    if (!names) return;
    const dirs = entry === null ? [...names.values()].flatMap((s) => [...s]) : [...(names.get(entry) ?? [])];
    for (const dir of dirs) for (const top of this.topsByDir.get(dir) ?? []) this.suspect(top);
  }

  private suspect(top: Node): void {
    if (this.closed) return;
    this.suspects.add(top);
    this.hooks.wake();
  }

  /**
   * Watches `n` (and, when recursive, its subfolders) and follows its links.
   * With `events`, every file found is reported as `add` (a folder that
   * appeared or was replaced).
   */
  private async open(n: Node, events: Decided | undefined): Promise<void> {
    const w = this.watchDir(n.dir, (kind, entry) => this.onEvent(n, kind, entry));
    if (!w) return;
    w.on('error', (e) => {
      // left to the next event about the folder, and to the sweep
      this.failed(n.dir, e);
      if (n.watcher === w) this.drop(n);
    });
    n.watcher = w;
    if (n.top !== n) this.subs.add(n);
    // two configured folders may share a subfolder: the first one's node answers for its path
    if (!this.nodes.has(n.dir) || n.top === n) this.nodes.set(n.dir, n);
    try {
      const id = idOf(await stat(n.dir));
      const real = await realpath(n.dir);
      if (n.top.visited.has(real)) {
        // a second way into a folder already watched (a link): watched once, as a scan visits it once
        this.drop(n);
        return;
      }
      n.id = id;
      n.real = real;
      n.top.visited.add(real);
      const subfolders: string[] = [];
      for await (const entry of await opendir(n.dir)) {
        if (this.closed || n.watcher !== w) return;
        const p = path.join(n.dir, entry.name);
        if (this.hooks.ignored(p)) continue;
        let isDir = entry.isDirectory();
        if (entry.isSymbolicLink()) {
          isDir =
            n.recursive &&
            (await stat(p).then(
              (s) => s.isDirectory(),
              () => false,
            ));
          if (!isDir) await this.follow(n, p);
        }
        if (isDir) {
          if (n.recursive) subfolders.push(p);
          continue;
        }
        events?.set(p, 'add');
      }
      for (const p of subfolders) {
        if (this.closed || n.watcher !== w) return;
        await this.open(this.node(p, true, n.top), events);
      }
    } catch (e) {
      // gone (or unreadable) between the watch and the listing: looked at again after the next event
      // about it (never retried on a timer: an idle daemon does no work)
      if (n.watcher === w) this.drop(n);
      this.failed(n.dir, e);
    }
  }

  private onEvent(n: Node, kind: string, entry: string | null): void {
    if (entry === null) {
      this.suspect(n.top);
      return;
    }
    // events of a configured folder itself (deleted, moved) carry its own name
    if (n.top === n && entry === path.basename(n.dir)) this.suspect(n);
    const p = path.join(n.dir, entry);
    if (!this.hooks.ignored(p)) this.hooks.note(p, kind === 'change' ? 'change' : 'rename');
  }

  /** Stops watching `n`, its subfolders, and the targets of their links. */
  private drop(n: Node): void {
    for (const m of [n, ...this.subs]) {
      if (m === n || (m.top === n.top && below(m.dir, n.dir))) {
        m.watcher?.close();
        m.watcher = undefined;
        m.id = undefined;
        if (m.real !== undefined) n.top.visited.delete(m.real);
        m.real = undefined;
        for (const [link, target] of m.links) this.unmap(target, link);
        m.links.clear();
        if (m.top !== m) {
          this.subs.delete(m);
          if (this.nodes.get(m.dir) === m) this.nodes.delete(m.dir);
        }
      }
    }
    if (n.top === n) n.visited.clear();
  }

  /** After an event that may concern the configured folder `top` itself: is the folder watched still the one at its path? */
  private async check(top: Node, events: Decided): Promise<void> {
    let id: string | undefined;
    try {
      const s = await stat(top.dir);
      id = s.isDirectory() ? idOf(s) : undefined;
    } catch {
      id = undefined;
    }
    if (this.closed || (top.watcher && id !== undefined && id === top.id)) return;
    if (top.watcher || top.id !== undefined) {
      this.drop(top);
      if (id === undefined) events.set(top.dir, 'unlink');
    }
    // the parent watch may be missing (the parent did not exist before): try again
    if (!this.parents.get(path.dirname(top.dir))?.names.get(path.basename(top.dir))?.has(top.dir)) {
      this.watchParent(top);
    }
    if (id !== undefined) await this.open(top, events);
  }

  /**
   * The kind of a noted path, from what is there now; undefined for a folder
   * (not reported, as before: a new subfolder of a recursive folder is
   * watched and its files reported as `add`).
   */
  private async decide(p: string, raw: RawKind, events: Decided): Promise<EntryEvent['kind'] | undefined> {
    const n = this.nodes.get(path.dirname(p));
    const sub = this.nodes.get(p);
    const own = sub && sub.top !== sub && n && sub.top === n.top ? sub : undefined;
    try {
      const s = await stat(p);
      if (n?.watcher && (n.links.has(p) || (await lstat(p)).isSymbolicLink())) await this.follow(n, p);
      if (s.isDirectory()) {
        if (n?.recursive && n.watcher && !(own?.watcher && own.id === idOf(s))) {
          if (own) this.drop(own);
          await this.open(this.node(p, true, n.top), events);
        }
        return undefined;
      }
      if (own) this.drop(own); // a subfolder replaced by a file
      return raw === 'rename' ? 'add' : 'change';
    } catch (e) {
      const code = codeOf(e);
      if (code !== undefined && GONE_CODES.has(code)) {
        if (own) this.drop(own);
        const target = n?.links.get(p);
        if (n && target !== undefined) {
          n.links.delete(p);
          this.unmap(target, p);
        }
        return 'unlink';
      }
      return raw === 'rename' ? 'add' : 'change';
    }
  }

  /**
   * (Re)follows the link `link` of `n`: when it points at a file outside
   * the folder, that file's folder is watched for it.
   */
  private async follow(n: Node, link: string): Promise<void> {
    const old = n.links.get(link);
    let target: string | undefined;
    try {
      target = await realpath(link);
      if (path.dirname(target) === n.real || target === link || !(await stat(target)).isFile()) target = undefined;
    } catch {
      target = undefined;
    }
    if (this.closed || target === old) return;
    if (old !== undefined) {
      n.links.delete(link);
      this.unmap(old, link);
    }
    if (target !== undefined && this.map(target, link)) n.links.set(link, target);
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
