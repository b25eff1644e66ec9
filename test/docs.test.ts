/**
 * The README and docs/ stay a guide people can follow: the README is short and opens with the two
 * commands a newcomer needs, every relative link (and #anchor) resolves, and every command the CLI
 * lists has its reference page. No database: these read files and the in-process `--help`.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import GithubSlugger from 'github-slugger';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, runMain } from './helpers/cli.js';

const README = path.join(REPO_ROOT, 'README.md');
const DOCS = path.join(REPO_ROOT, 'docs');

function markdownFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return markdownFiles(full);
    return name.endsWith('.md') ? [full] : [];
  });
}

/** The text outside fenced code blocks: links and headings inside examples are not Markdown. */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '');
}

/** The anchors GitHub gives a file's headings (duplicates numbered as GitHub numbers them). */
function anchorsOf(file: string): Set<string> {
  const slugger = new GithubSlugger();
  const anchors = new Set<string>();
  for (const match of prose(readFileSync(file, 'utf8')).matchAll(/^#{1,6}\s+(.+)$/gm)) {
    anchors.add(slugger.slug(match[1].trim()));
  }
  return anchors;
}

/** Every broken relative link of one file, as "file: link (why)". */
function brokenLinks(file: string): string[] {
  const broken: string[] = [];
  for (const match of prose(readFileSync(file, 'utf8')).matchAll(/\]\(([^)\s]+)\)/g)) {
    const link = match[1];
    if (/^[a-z][a-z+.-]*:/i.test(link)) continue; // https:, mailto: — not checked offline
    const [target, anchor] = link.split('#', 2);
    const resolved = target ? path.resolve(path.dirname(file), target) : file;
    const where = `${path.relative(REPO_ROOT, file)}: ${link}`;
    if (!existsSync(resolved)) broken.push(`${where} (no such file)`);
    else if (anchor !== undefined && !(resolved.endsWith('.md') && anchorsOf(resolved).has(anchor))) {
      broken.push(`${where} (no such heading)`);
    }
  }
  return broken;
}

describe('README', () => {
  const text = readFileSync(README, 'utf8');

  it('is at most 300 lines', () => {
    expect(text.trimEnd().split('\n').length).toBeLessThanOrEqual(300);
  });

  it('opens with the command that runs the main job on the embedded database and the one that runs the tests', () => {
    const firstBlock = /^# carepipe\n\n```sh\n([\s\S]*?)\n```/.exec(text);
    expect(firstBlock, 'the README must start with a sh block right under its title').not.toBeNull();
    const commands = firstBlock![1].split('\n').map((line) => line.replace(/\s+#.*$/, ''));
    expect(commands).toEqual(['npm install && npx carepipe ingest-fhir fixtures/fhir/sample', 'npm test']);
  });
});

describe('docs', () => {
  it('has no broken relative link or anchor in README.md and docs/', () => {
    const broken = [README, ...markdownFiles(DOCS)].flatMap(brokenLinks);
    expect(broken).toEqual([]);
  });

  it('notices a link to a missing heading', () => {
    // The check above passes vacuously if anchors are never compared: a known-bad anchor must fail.
    expect(anchorsOf(README).has('configuration')).toBe(true);
    expect(anchorsOf(README).has('no-such-section')).toBe(false);
  });

  it('has a reference page for every command carepipe --help lists', async () => {
    const help = await runMain(['--help']);
    expect(help.code).toBe(0);
    const commandsSection = help.stdout.split(/^Commands:$/m)[1] ?? '';
    const names = [...commandsSection.matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]).filter((name) => name !== 'help');
    expect(names.length).toBeGreaterThanOrEqual(11);
    const missing = names.filter((name) => !existsSync(path.join(DOCS, 'commands', `${name}.md`)));
    expect(missing).toEqual([]);
  });
});

describe('reject reasons', () => {
  it('docs/commands/runs.md lists every code of the closed list, and no other', async () => {
    const { RejectReasons } = await import('../src/pipeline/reasons.js');
    const page = readFileSync(path.join(REPO_ROOT, 'docs/commands/runs.md'), 'utf8');
    const listed = [...page.slice(page.indexOf('## Reject reasons')).matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
    expect(listed).toEqual(Object.keys(RejectReasons));
  });
});
