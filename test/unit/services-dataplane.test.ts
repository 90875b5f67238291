// The services' dataplane suite (test/lib/services-dataplane-suite.ts) on nftables in memory: no
// root, no namespace. test/kernel/services-dataplane.test.ts runs the same suite on the kernel.
import t from 'tap';
import { MemoryNftables } from '../../src/kernel/memory-nftables.js';
import { native } from '../../src/kernel/native.js';
import { servicesDataplaneSuite } from '../lib/services-dataplane-suite.js';

servicesDataplaneSuite(t, { fresh: async () => new MemoryNftables(native().attributes) });
