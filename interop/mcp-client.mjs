// An MCP host for the interop tier: the official TypeScript SDK's client
// (@modelcontextprotocol/sdk, pinned in package.json) starts `latchkey mcp` over
// stdio, as an agent host does, and the tests drive it line by line.
//
// Usage: node interop/mcp-client.mjs TRANSCRIPT COMMAND [ARG...]
//   (the server's environment: MCP_SERVER_ENV, a JSON object, merged over the
//   SDK's default set of HOME, LOGNAME, PATH, SHELL, TERM and USER)
//
// stdout, one JSON line each: {"kind": "initialized", "server": {...}}, then one
// {"kind": "tool", "name", "schema_ok", "error", "input_schema"} per listed tool
// (each input schema compiled by Ajv as JSON Schema 2020-12), then for every line
// read on stdin ({"name": TOOL, "arguments": {...}}) one {"kind": "result",
// "is_error", "text"} or {"kind": "rpc_error", "code", "message"}. At EOF of stdin
// the client closes and prints {"kind": "closed", "exit": {...}}.
//
// TRANSCRIPT receives every byte both ways (and the server's stderr), one JSON
// line per chunk, for the tests' leak check. The server's stdout is read from the
// SDK's child process, a private field: the SDK is pinned exactly, and a version
// without it fails here loudly rather than record nothing.

import { createInterface } from 'node:readline';
import { writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import Ajv2020 from 'ajv/dist/2020.js';

const [transcriptPath, command, ...args] = process.argv.slice(2);
if (!transcriptPath || !command) {
  process.stderr.write('usage: node mcp-client.mjs TRANSCRIPT COMMAND [ARG...]\n');
  process.exit(2);
}
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const transcript = [];
const record = (dir, data) => transcript.push({ dir, data: String(data) });

const transport = new StdioClientTransport({
  command,
  args,
  env: JSON.parse(process.env.MCP_SERVER_ENV ?? '{}'),
  stderr: 'pipe',
});
transport.stderr.on('data', (b) => record('stderr', b));
const send = transport.send.bind(transport);
transport.send = (message, options) => {
  record('to_server', serializeMessage(message));
  return send(message, options);
};
let exit = null;
const start = transport.start.bind(transport);
transport.start = async () => {
  await start();
  const child = transport._process;
  if (!child?.stdout) {
    throw new Error('the SDK no longer exposes its child process: the transcript cannot be recorded');
  }
  child.stdout.on('data', (b) => record('from_server', b));
  child.on('exit', (code, signal) => {
    exit = { code, signal };
  });
};

const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: true });
const client = new Client({ name: 'latchkey-interop', version: '0.0.0' }, { capabilities: {} });
let failed = false;
try {
  await client.connect(transport);
  out({ kind: 'initialized', server: client.getServerVersion() });
  const { tools } = await client.listTools();
  for (const tool of tools) {
    let schemaOk = ajv.validateSchema(tool.inputSchema);
    let error = schemaOk ? null : ajv.errorsText(ajv.errors);
    if (schemaOk) {
      try {
        ajv.compile(tool.inputSchema);
      } catch (e) {
        schemaOk = false;
        error = String(e.message);
      }
    }
    failed ||= !schemaOk;
    out({ kind: 'tool', name: tool.name, schema_ok: schemaOk, error, input_schema: tool.inputSchema });
  }
  out({ kind: 'tools_listed' });
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) {
      continue;
    }
    const call = JSON.parse(line);
    try {
      const r = await client.callTool({ name: call.name, arguments: call.arguments ?? {} }, undefined, {
        timeout: 60000,
      });
      out({
        kind: 'result',
        is_error: r.isError === true,
        text: (r.content ?? []).filter((c) => c.type === 'text').map((c) => c.text),
      });
    } catch (e) {
      out({ kind: 'rpc_error', code: e.code ?? null, message: String(e.message) });
    }
  }
} catch (e) {
  failed = true;
  out({ kind: 'fatal', message: String(e?.stack ?? e) });
} finally {
  await client.close();
  await new Promise((r) => setTimeout(r, 100));
  writeFileSync(transcriptPath, transcript.map((x) => JSON.stringify(x)).join('\n') + '\n');
  out({ kind: 'closed', exit });
  if (failed) {
    process.exitCode = 1;
  }
}
