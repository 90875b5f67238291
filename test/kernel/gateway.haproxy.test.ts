// test/kernel/gateway.test.ts with HAProxy serving the Gateway listeners (test/lib/ingress-dataplane.ts).
process.env.KUBENFT_TEST_INGRESS_DATAPLANE = 'haproxy';
await import('./gateway.test.js');
