/**
 * The layering rules of docs/ARCHITECTURE.md, checked by `npm run lint`
 * (dependency-cruiser sees static imports, `import()` and `require()`, and
 * type-only imports too). test/unit/lint-rules.test.ts runs these rules on
 * test/fixtures/lint/, where each rule is broken once on purpose.
 *
 * The paths are matched anywhere in the file name (`(^|/)src/core/`), so the
 * same rules apply to the fixtures' own little `src/` tree.
 */
/* global module */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'core-is-pure',
      comment:
        'src/core is pure: it imports only src/core and node:crypto/node:buffer (no fs, network, clock or other ' +
        'layers), and @peculiar/* only through core/asn1.ts. See docs/ARCHITECTURE.md "Layers".',
      severity: 'error',
      from: { path: '(^|/)src/core/' },
      to: {
        pathNot: ['(^|/)src/core/', '^node:(crypto|buffer)$', '^(crypto|buffer)$', '(^|/)node_modules/@peculiar/'],
      },
    },
    {
      name: 'asn1-only-in-core-asn1',
      comment:
        '@peculiar/* (ASN.1 schemas) is imported in one file only, src/core/asn1.ts, which wraps what the rest ' +
        'needs; import(), require() and createRequire included.',
      severity: 'error',
      from: { pathNot: '(^|/)src/core/asn1\\.ts$' },
      to: { path: '(^|/)node_modules/@peculiar/|^@peculiar/' },
    },
    {
      name: 'nothing-imports-cli',
      comment: 'The library never imports the command line: only src/cli imports src/cli.',
      severity: 'error',
      from: { path: '(^|/)src/', pathNot: '(^|/)src/cli/' },
      to: { path: '(^|/)src/cli/' },
    },
    {
      name: 'no-cycles',
      comment: 'No import cycles, type-only imports included (move shared types to the module that owns them).',
      severity: 'error',
      from: { path: '(^|/)src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)dist/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // `const require = createRequire(import.meta.url); require('x')` is seen through the name `require`
    exoticRequireStrings: ['createRequire(import.meta.url)'],
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.d.ts'],
    },
  },
};
