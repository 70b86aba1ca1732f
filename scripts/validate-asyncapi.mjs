// Validates an AsyncAPI document with the official parser (@asyncapi/parser).
//
// Usage: node scripts/validate-asyncapi.mjs <tools-dir> <asyncapi.json>
//
// <tools-dir> is the npm prefix the parser was installed into (`npm install --prefix
// <tools-dir> @asyncapi/parser@3`). The document is parsed from its file path, so relative
// `$ref`s (the payload schemas `./<routing-key>.json`) are resolved from the files beside it,
// without network access. Prints every diagnostic and exits 1 when one has severity error or
// the document does not parse.

import { createRequire } from 'node:module';
import path from 'node:path';

const [toolsDir, documentPath] = process.argv.slice(2);
if (!toolsDir || !documentPath) {
  console.error('usage: validate-asyncapi.mjs <tools-dir> <asyncapi.json>');
  process.exit(2);
}

const require = createRequire(path.resolve(toolsDir, 'package.json'));
const { Parser, fromFile, DiagnosticSeverity } = require('@asyncapi/parser');
const parserVersion = require('@asyncapi/parser/package.json').version;

const SEVERITY = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

const file = path.resolve(documentPath);
const { document, diagnostics } = await fromFile(new Parser(), file).parse();

const counts = { error: 0, warning: 0, info: 0, hint: 0 };
for (const d of diagnostics) {
  const severity = SEVERITY[d.severity] ?? `severity ${d.severity}`;
  counts[severity] = (counts[severity] ?? 0) + 1;
  const where = (d.path ?? []).join('/') || '(root)';
  console.log(`${documentPath}: ${severity} ${d.code}: ${d.message} at ${where}`);
}

let unresolved = 0;
if (document) {
  for (const message of document.allMessages()) {
    const payload = message.payload();
    if (!payload || JSON.stringify(payload.json()).includes('"$ref"')) {
      unresolved += 1;
      console.log(`${documentPath}: error: payload of message ${message.id()} is not resolved`);
    }
  }
}

const failed = !document || counts.error > 0 || unresolved > 0;
const shape = document
  ? `AsyncAPI ${document.version()}, ${document.allChannels().length} channels, ` +
    `${document.allOperations().length} operations, ${document.allMessages().length} messages`
  : 'not parsed';
console.log(
  `asyncapi: ${documentPath} ${failed ? 'INVALID' : 'valid'} (${shape}; @asyncapi/parser ` +
    `${parserVersion}): ${counts.error + unresolved} errors, ${counts.warning} warnings, ` +
    `${counts.info} infos`,
);
process.exit(failed ? 1 : 0);
