// test/kernel/ingress-request-target.test.ts with HAProxy as the dataplane (test/lib/ingress-dataplane.ts).
process.env.KUBENFT_TEST_INGRESS_DATAPLANE = 'haproxy';
await import('./ingress-request-target.test.js');
