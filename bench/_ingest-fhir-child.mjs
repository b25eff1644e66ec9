// One measured ingest-fhir run in a process of its own, so its peak RSS is its own:
// node bench/_ingest-fhir-child.mjs ARGS… → prints {"seconds", "cpu_s", "peak_rss_mb", "summary"} as its last line
// (cpu_s: the Node process's user + system CPU).
import { PassThrough } from 'node:stream';
import { main } from '../dist/src/cli/main.js';

const stdout = new PassThrough();
let out = '';
stdout.setEncoding('utf8').on('data', (d) => (out += d));
const started = process.hrtime.bigint();
const code = await main([...process.argv.slice(2), '--json', '--quiet'], {
  stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  cwd: process.cwd(),
  isTTY: false,
  stdoutIsTTY: false,
});
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
await new Promise((r) => setImmediate(r));
const cpu = process.cpuUsage();
process.stdout.write(`${JSON.stringify({ code, seconds, cpu_seconds: (cpu.user + cpu.system) / 1e6, cpu_s: (cpu.user + cpu.system) / 1e6, peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024), summary: JSON.parse(out.trim().split('\n').pop() || '{}') })}\n`);
process.exit(0);
