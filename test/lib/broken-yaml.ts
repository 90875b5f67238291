// YAML documents a manifest reader must refuse, one of each hazard, each with the reason its
// refusal must give. Shared by the kernel test of broken documents and the property test.

export const serviceHeader = (name: string) => `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n  namespace: default\n`;
export const serviceSpec = 'spec:\n  clusterIP: 10.0.29.1\n  ports:\n  - port: 80\n';

/** A billion laughs, cut down: six levels of ten aliases each, a million nodes from a few lines. */
const aliasBomb = ['a', 'b', 'c', 'd', 'e', 'f']
  .map((level, index, levels) => `    ${level}: &${level} [${Array(10).fill(index === 0 ? 'lol' : `*${levels[index - 1]}`).join(', ')}]`)
  .join('\n');

/** [what, the document's text, the reason its log line must give]. */
export const HAZARDS: [string, string, RegExp][] = [
  ['an unclosed flow mapping', 'apiVersion: v1\nkind: Service\nmetadata: {name: flow, namespace: default\nspec:\n  clusterIP: 10.0.29.2\n', /flow collection/],
  ['an alias bomb', `${serviceHeader('bomb')}  labels:\n${aliasBomb}\n${serviceSpec}`, /aliases expand beyond/],
  ['a custom tag', `apiVersion: v1\nkind: !svc Service\nmetadata:\n  name: tagged\n${serviceSpec}`, /unknown tag !<!svc>/],
  ['a !!binary value', `${serviceHeader('binary')}  annotations:\n    blob: !!binary aGVsbG8=\n${serviceSpec}`, /unknown tag .*binary/],
  ['a duplicate key', `${serviceHeader('twice')}  name: twice-again\n${serviceSpec}`, /duplicated mapping key/],
  ['tab indentation', `apiVersion: v1\nkind: Service\nmetadata:\n\tname: tabbed\n${serviceSpec}`, /tab characters/],
  ['a top-level sequence', `- ${serviceHeader('listed').trimEnd().replaceAll('\n', '\n  ')}\n`, /top-level sequence/],
  ['an empty document', '', /document is empty/],
  ['a comment-only document', '# a Service was here\n', /only comments/],
  ['a `...` marker', `${serviceHeader('ended')}${serviceSpec}...\n`, /`\.\.\.` document end marker/],
];
