// The --ingress flags: defaults, values, and the errors that name a bad one.
import t from 'tap';
import { helpText, parseOptions } from '../../src/cli/options.js';

t.test('defaults and values', async (t) => {
  t.match(parseOptions([]).ingress, {
    enabled: false, className: 'kubenft', httpAddress: '0.0.0.0:80', httpsAddress: '0.0.0.0:443', defaultCertificate: undefined,
    maxBodyBytes: 100 * 1024 * 1024, maxHeaderBytes: 16 * 1024, clientTimeoutMs: 60_000, backendTimeoutMs: 60_000, connectTimeoutMs: 5_000, workers: 0, statusAddresses: [],
    dataplane: undefined, haproxyDir: '/run/kubenft/ingress-haproxy',
  });
  const options = parseOptions([
    '--ingress', '--ingress-class', 'public', '--ingress-http-address', '127.0.0.1:8080', '--ingress-https-address', '', '--ingress-default-certificate', 'kube-system/default-tls',
    '--ingress-max-body-size', '1000', '--ingress-max-header-size', '8192', '--ingress-client-timeout', '5s', '--ingress-backend-timeout', '1m30s', '--ingress-connect-timeout', '2s', '--ingress-workers', '3',
    '--ingress-status-address', '203.0.113.7,2001:db8::7', '--ingress-dataplane', 'haproxy', '--ingress-haproxy-dir', '/tmp/h',
  ]);
  t.same(options.ingress, {
    enabled: true, className: 'public', httpAddress: '127.0.0.1:8080', httpsAddress: undefined, defaultCertificate: 'kube-system/default-tls',
    maxBodyBytes: 1000, maxHeaderBytes: 8192, clientTimeoutMs: 5000, backendTimeoutMs: 90_000, connectTimeoutMs: 2_000, workers: 3, statusAddresses: ['203.0.113.7', '2001:db8::7'],
    dataplane: 'haproxy', haproxyDir: '/tmp/h',
  });
  t.equal(parseOptions(['--ingress-http-address', '10.0.0.1']).ingress.httpAddress, '10.0.0.1:80', 'an address alone gets the default port');
  t.match(helpText(), /--ingress-backend-timeout DURATION/);
});

t.test('bad values are errors naming the flag', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--ingress-class', ''], /--ingress-class "": must not be empty/],
    [['--ingress-http-address', 'localhost:80'], /--ingress-http-address "localhost:80": is not IP or IP:port/],
    [['--ingress-default-certificate', 'no-namespace'], /--ingress-default-certificate "no-namespace": is not NAMESPACE\/NAME/],
    [['--ingress-max-header-size', '10'], /--ingress-max-header-size 10: must be an integer from 1024 to 1048576/],
    [['--ingress-client-timeout', '0s'], /--ingress-client-timeout "0s": must be greater than 0/],
    [['--ingress-workers', '-1'], /--ingress-workers -1: must be an integer from 0 to 256/],
    [['--ingress-status-address', 'example.com'], /--ingress-status-address "example.com": is not an IP address/],
    [['--ingress-dataplane', 'envoy'], /--ingress-dataplane "envoy": must be haproxy or builtin/],
    [['--ingress-haproxy-dir', ''], /--ingress-haproxy-dir "": must not be empty/],
  ];
  for (const [argv, error] of cases) t.throws(() => parseOptions(argv), error, argv.join(' '));
});
