// Types for sea.mjs (hand-written; `.d.mts` because NodeNext types `./sea.mjs` from it).

/** The fuse Node's single-executable support looks for. */
export declare const SEA_FUSE: string;

/** dist/staplekeeper-<platform>-<arch>. */
export declare function defaultSeaPath(): string;

/** Builds the single executable at `out` (working files in `work`, default dist/sea/); throws on any failure. */
export declare function buildSea(opts?: { out?: string; work?: string }): Promise<{ path: string; bytes: number }>;
