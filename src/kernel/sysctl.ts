import { accessSync, constants, readFileSync, writeFileSync } from 'node:fs';

// Kernel settings as files: sysctls under /proc/sys and module parameters under /sys/module. The
// net.* sysctls a process sees are those of the network namespace it runs in, so writing them
// changes that namespace only; a value the kernel keeps for the whole host (nf_conntrack_max, for
// one) is read-only in every namespace but the initial one. Module parameters are global.

export class SysctlError extends Error {
  override name = 'SysctlError';
}

/** net.netfilter.nf_conntrack_max → /proc/sys/net/netfilter/nf_conntrack_max */
export const sysctlPath = (name: string) => `/proc/sys/${name.replaceAll('.', '/')}`;

const moduleParameterPath = (module: string, parameter: string) => `/sys/module/${module}/parameters/${parameter}`;

function readInteger(path: string, what: string): number {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new SysctlError(`cannot read ${what} (${path}): ${(error as Error).message}`);
  }
  const value = Number(text.trim());
  if (!Number.isSafeInteger(value)) throw new SysctlError(`${what} (${path}) holds ${JSON.stringify(text.trim())}, not an integer`);
  return value;
}

function writeInteger(path: string, what: string, value: number): void {
  try {
    writeFileSync(path, `${value}\n`);
  } catch (error) {
    throw new SysctlError(`cannot set ${what} to ${value} (${path}): ${(error as Error).message}`);
  }
}

export const sysctlExists = (name: string): boolean => {
  try {
    accessSync(sysctlPath(name), constants.F_OK);
    return true;
  } catch {
    return false;
  }
};

export const readSysctl = (name: string): number => readInteger(sysctlPath(name), name);

export const writeSysctl = (name: string, value: number): void => writeInteger(sysctlPath(name), name, value);

/**
 * Whether this process may write the sysctl. The kernel makes the host-wide netfilter limits
 * read-only (mode 0444, which binds root too) outside the initial network namespace.
 */
export function sysctlWritable(name: string): boolean {
  try {
    accessSync(sysctlPath(name), constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export const readModuleParameter = (module: string, parameter: string): number =>
  readInteger(moduleParameterPath(module, parameter), `the ${module} module's ${parameter}`);

export const writeModuleParameter = (module: string, parameter: string, value: number): void =>
  writeInteger(moduleParameterPath(module, parameter), `the ${module} module's ${parameter}`, value);
