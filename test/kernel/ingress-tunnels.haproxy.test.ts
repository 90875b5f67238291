// test/kernel/ingress-tunnels.test.ts with HAProxy as the dataplane (test/lib/ingress-dataplane.ts).
process.env.KUBENFT_TEST_INGRESS_DATAPLANE = 'haproxy';
await import('./ingress-tunnels.test.js');
