#!/usr/bin/env node
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OptionsError } from '../capability.js';
import { enabledLists } from '../agent/capability-settings.js';
import { nodeNameOf } from '../agent/node-name.js';
import { EarlyLists } from '../cluster/api-lists.js';
import { projectRoot } from '../kernel/native.js';
import { apiSourceOptions } from './api-source.js';
import { helpText, kubeProxyConfigurationYAML, type AgentOptions, parseOptions } from './options.js';

// The process's start: every setting read and validated (bad flags refuse here, before anything
// runs), and for the agent reading the API its first lists asked for, before the rest of kubenft
// (commands.ts: the agent, the capabilities' dataplanes, prom-client; client-node later still) is
// loaded. So its first request waits only for the modules this file imports
// (test/unit/start-path.test.ts keeps them few), and the API server builds the lists while the rest
// compiles.

const CAP_NET_ADMIN = 12;

/** Programming the kernel needs CAP_NET_ADMIN; say so plainly instead of failing on the first netlink call. */
function requireNetAdmin(): void {
  const effective = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
  if ((BigInt(`0x${effective}`) >> BigInt(CAP_NET_ADMIN)) & 1n) return;
  throw new OptionsError('kubenft needs CAP_NET_ADMIN to program the kernel: run it as root or give it NET_ADMIN (see deploy/kubenft.yaml)');
}

/** The long-running agent with the API as its source: the one command whose first lists go out from here. */
const listsFromTheApi = (options: AgentOptions) =>
  options.command === 'run' && !options.once && !options.cleanup && !options.initOnly && !options.manifests;

export async function main(argv: string[]): Promise<number> {
  const options = parseOptions(argv);
  // A reader that stops early (`| head`) closes stdout: the command still finishes its work (a
  // --once sync, the agent's shutdown) and exits as it would; what it would still print goes nowhere.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
  if (options.command === 'help') {
    process.stdout.write(helpText());
    return 0;
  }
  if (options.command === 'version') {
    const { version } = JSON.parse(readFileSync(join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
    process.stdout.write(`kubenft ${version}\n`);
    return 0;
  }
  if (options.writeConfigTo) {
    writeFileSync(options.writeConfigTo, kubeProxyConfigurationYAML(options));
    return 0;
  }
  // The capability first: without it, the manifests' own permission error would hide the cause.
  if (options.command !== 'render') requireNetAdmin();
  const earlyLists = listsFromTheApi(options) ? EarlyLists.start(apiSourceOptions(options, nodeNameOf(options), enabledLists(options))) : undefined;
  const { runCommand } = await import('./commands.js');
  return runCommand(options, earlyLists);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`kubenft: ${error.message}\n`);
    process.exit(error instanceof OptionsError ? 2 : 1);
  },
);
