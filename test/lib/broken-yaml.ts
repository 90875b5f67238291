// YAML documents a manifest reader must refuse, as kubectl refuses them, one of each hazard, each
// with the reason its refusal must give. Shared by the kernel test of broken documents and the
// property test.

export const serviceHeader = (name: string) => `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n  namespace: default\n`;
export const serviceSpec = 'spec:\n  clusterIP: 10.0.29.1\n  ports:\n  - port: 80\n';

/** A billion laughs, cut down: six levels of ten aliases each, a million nodes from a few lines. */
const aliasBomb = ['a', 'b', 'c', 'd', 'e', 'f']
  .map((level, index, levels) => `    ${level}: &${level} [${Array(10).fill(index === 0 ? 'lol' : `*${levels[index - 1]}`).join(', ')}]`)
  .join('\n');

/** [what, the document's text, the reason its log line must give]: each one kubectl refuses too. */
export const HAZARDS: [string, string, RegExp][] = [
  ['an unclosed flow mapping', 'apiVersion: v1\nkind: Service\nmetadata: {name: flow, namespace: default\nspec:\n  clusterIP: 10.0.29.2\n', /flow collection/],
  ['an alias bomb', `${serviceHeader('bomb')}  labels:\n${aliasBomb}\n${serviceSpec}`, /aliases expand too far/],
  ['a cyclic alias', `${serviceHeader('cycle')}  labels: &labels {a: *labels}\n${serviceSpec}`, /an anchor holds an alias of itself/],
  ['an invalid !!binary value', `${serviceHeader('binary')}  annotations:\n    blob: !!binary "not base64"\n${serviceSpec}`, /cannot resolve .*binary/],
  ['an infinite number', `${serviceHeader('infinite')}${serviceSpec}    targetPort: .inf\n`, /\.inf has no JSON form/],
  ['a merge of a scalar', `${serviceHeader('merged')}  labels: {<<: 5}\n${serviceSpec}`, /merge key/],
  ['an alias with no anchor', `${serviceHeader('alias')}  labels: *nowhere\n${serviceSpec}`, /unidentified alias/],
  ['tab indentation', `apiVersion: v1\nkind: Service\nmetadata:\n\tname: tabbed\n${serviceSpec}`, /tab characters/],
  ['a top-level sequence', `- ${serviceHeader('listed').trimEnd().replaceAll('\n', '\n  ')}\n`, /top-level sequence/],
  ['a %YAML directive', '%YAML 1.2\n', /%YAML or %TAG directive/],
];
