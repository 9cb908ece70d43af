// Types for bundle.mjs (hand-written; `.d.mts` because NodeNext types `./bundle.mjs` from it).

export interface BundleOptions {
  /** 'esm' (the one file, default) or 'cjs' (the single executable's script). */
  format?: 'esm' | 'cjs';
  /** Default dist/staplekeeper.mjs (esm) or dist/staplekeeper.cjs (cjs). */
  outfile?: string;
}

/** Builds the bundle with esbuild; resolves to its path, size and input files (relative to the repository). */
export declare function bundle(opts?: BundleOptions): Promise<{ path: string; bytes: number; inputs: string[] }>;
